"""Development bearer tokens: an ES256 key pair the demo generates, and tokens signed with it.

Dev tokens use the same verification path as production tokens (an asymmetric signature checked
against a public key, with issuer, audience and expiry), so nothing about the demo teaches the
gateway to trust an unsigned header.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PRIVATE_KEY_FILE = "dev-signing-key.pem"
PUBLIC_KEY_FILE = "dev-signing-key.pub.pem"
DEV_TOKEN_TTL_S = 8 * 3600


def ensure_dev_keys(state_dir: Path) -> Path:
    """Create the dev key pair once (private key readable by the owner only); return its path."""
    private_path = state_dir / PRIVATE_KEY_FILE
    public_path = state_dir / PUBLIC_KEY_FILE
    if private_path.exists() and public_path.exists():
        return private_path
    state_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path


def issue_dev_token(
    private_key_pem: bytes,
    *,
    role: str,
    organisation: str,
    name: str,
    issuer: str,
    audience: str,
    ttl_s: int = DEV_TOKEN_TTL_S,
    now: float | None = None,
) -> str:
    """Sign a short-lived token carrying the claims the gateway needs to identify a practitioner."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": f"dev:{organisation}:{name}",
        "name": name,
        "role": role,
        "org": organisation,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private_key_pem, algorithm="ES256")
