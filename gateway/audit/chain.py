"""Tamper evidence for the audit log: a hash chain over every record, and MAC'd checkpoints.

Each record stores the hash of its own body chained to the previous record's hash, so editing,
deleting, inserting or reordering any record breaks the chain at that point - even for someone who
can bypass the append-only triggers (by editing the SQLite file, or as PostgreSQL's superuser).
Chaining alone cannot show that the newest records were cut off, so every so often a checkpoint
(sequence number and chain hash) is written with a MAC under a key the database does not hold;
verification then also proves the log reaches at least the last checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

GENESIS: Final = "0" * 64


def link_hash(previous: str, body: str) -> str:
    """The chain hash of a record: its body bound to everything before it."""
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def checkpoint_mac(key: bytes, seq: int, chain_hash: str) -> str:
    return hmac.new(key, f"checkpoint:{seq}:{chain_hash}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The verdict on a log: ok, or the first record (by sequence number) where it goes wrong."""

    ok: bool
    records: int
    checkpoints: int
    first_bad_seq: int | None = None
    first_bad_audit_id: str | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return (
                f"audit log intact: {self.records} records, {self.checkpoints} checkpoints verified"
            )
        where = f"record #{self.first_bad_seq}" if self.first_bad_seq is not None else "the log"
        audit_id = f" (audit id {self.first_bad_audit_id})" if self.first_bad_audit_id else ""
        return f"audit log TAMPERED at {where}{audit_id}: {self.problem}"


ChainRow = tuple[int, str, str, str, str]
"""A record as the chain sees it: (seq, audit_id, body, prev_hash, hash)."""
CheckpointRow = tuple[int, str, str]
"""A checkpoint: (seq, hash, mac)."""


def verify_chain(
    records: Iterable[ChainRow], checkpoints: Iterable[CheckpointRow], key: bytes
) -> ChainReport:
    """Walk the whole chain in sequence order, then check every checkpoint against it.

    Both come from whichever store holds the log, `records` in sequence order; they are read
    one at a time, so `records` may stream a log larger than memory. Read `checkpoints` in the
    same snapshot as `records`, or before them: a checkpoint written after the records were read
    would look like records cut off."""
    marks = sorted(checkpoints)
    marked = {seq for seq, _, _ in marks}
    expected_prev = GENESIS
    hashes: dict[int, str] = {}
    last_seq = 0
    count = 0
    for seq, audit_id, body, prev_hash, chain_hash in records:
        count += 1
        if prev_hash != expected_prev:
            problem = "the chain is broken here: a record before it was deleted, inserted or moved"
            return _bad(count, seq, audit_id, problem)
        if link_hash(prev_hash, body) != chain_hash:
            return _bad(count, seq, audit_id, "this record was edited after it was written")
        if seq in marked:
            hashes[seq] = chain_hash
        expected_prev = chain_hash
        last_seq = seq
    for seq, chain_hash, mac in marks:
        if not hmac.compare_digest(mac, checkpoint_mac(key, seq, chain_hash)):
            return _bad(count, seq, None, "a checkpoint's MAC is wrong: forged or edited")
        if seq > last_seq:
            return _bad(count, seq, None, "records after the last intact one were removed")
        if hashes.get(seq) != chain_hash:
            return _bad(count, seq, None, "the chain no longer matches a signed checkpoint")
    return ChainReport(True, count, len(marks))


def _bad(records: int, seq: int, audit_id: str | None, problem: str) -> ChainReport:
    return ChainReport(False, records, 0, seq, audit_id, problem)
