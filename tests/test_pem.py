"""Splitting multi-block PEM files (key sets, CRL files)."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.pem import pem_blocks


def _public_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_each_block_of_the_label_is_returned_whole_and_in_order_without_the_text_around():
    first, second = _public_pem(), _public_pem()
    other = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    data = b"# next key\n" + first + other + b"notes between\n" + second + b"# end\n"
    assert pem_blocks(data, "PUBLIC KEY") == [first.strip(), second.strip()]
    assert pem_blocks(data, "X509 CRL") == [other.strip()]
    assert pem_blocks(b"no blocks here", "PUBLIC KEY") == []
