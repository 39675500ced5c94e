"""PEM files holding several blocks one after another: a key set kept through a rotation, or a
revocation list from each CA. cryptography reads one block at a time, so they are split here."""

from __future__ import annotations


def pem_blocks(data: bytes, label: str) -> list[bytes]:
    """Each `-----BEGIN <label>-----` ... `-----END <label>-----` block in `data`, in order, from
    its BEGIN line to its END line; text around the blocks is left out."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    return [block[block.index(begin) :] + end for block in data.split(end) if begin in block]
