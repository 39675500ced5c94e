"""Signed checkpoints: the gateway's statement, every so often, of how far its audit log reaches.

A checkpoint says: after record `seq` the log held `records` records and its chain hash was
`head`, at time `at`; and the checkpoint before this one was `prev` (the SHA-256 of its statement).
The gateway signs that statement with an Ed25519 key whose private half it alone holds, outside
the database; anyone with the public key can check it. Because each checkpoint names the one
before, one cannot be deleted from the middle without breaking the next one's link, and because
a checkpoint is due whenever the log crosses a multiple of the checkpoint interval, deleting the
newest ones while their records stay is noticed too. What signatures cannot show is a log cut
back together with every checkpoint after the cut: that needs someone else (a witness) to have
kept a later checkpoint, which is why the statement is a small, self-contained text a witness can
store and compare.

Statement (UTF-8, one `name=value` per line, in this order):

    childlookup audit checkpoint v2
    seq=<sequence number of the last record covered>
    records=<records in the log up to and including it>
    head=<its chain hash, 64 hex>
    at=<UTC time, ISO 8601 with microseconds>
    prev=<SHA-256 hex of the previous checkpoint's statement; 64 zeros for the first>
    key=<key id: the first 16 hex of SHA-256 of the raw Ed25519 public key>

The signature is Ed25519 over those bytes, stored as hex. Logs written before signed checkpoints
kept HMAC checkpoints (`seq`, `hash`, `mac`); those still verify, with the audit key, up to the
point where the log moved to this format.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectors.trust import ensure_key_files, pem_public_keys
from connectors.witness import checkpoint_statement

GENESIS: Final = "0" * 64


def canonical_time(at: datetime) -> str:
    """A time as checkpoints and PostgreSQL's row hashes spell it: UTC, to the microsecond."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def legacy_checkpoint_mac(key: bytes, seq: int, chain_hash: str) -> str:
    """The MAC of a checkpoint written before checkpoints were signed (verification only)."""
    return hmac.new(key, f"checkpoint:{seq}:{chain_hash}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """One signed checkpoint, as stored and as a witness would keep it."""

    seq: int
    records: int
    head: str
    at: str
    prev: str
    key: str
    signature: str = ""

    def statement(self) -> bytes:
        return checkpoint_statement(self.seq, self.records, self.head, self.at, self.prev, self.key)

    def digest(self) -> str:
        """What the next checkpoint names as `prev`, and what a witness compares."""
        return hashlib.sha256(self.statement()).hexdigest()


@dataclass(frozen=True)
class CheckpointKeys:
    """The keys an audit store signs and checks checkpoints with.

    `signing` is None for a store opened only to be read or verified: it needs only `public`, the
    public keys (by key id) a checkpoint may be signed with - every key used since the log began,
    so checkpoints signed before a rotation still verify. `legacy_macs` check the HMAC checkpoints
    of a log written before checkpoints were signed: the key derived from the audit key, and from
    each audit key retired since."""

    signing: Ed25519PrivateKey | None
    public: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    legacy_macs: tuple[bytes, ...] = ()

    @classmethod
    def signing_with(
        cls,
        private: Ed25519PrivateKey,
        also: Iterable[Ed25519PublicKey] = (),
        legacy_macs: tuple[bytes, ...] = (),
    ) -> CheckpointKeys:
        keys = {key_id(k): k for k in (*also, private.public_key())}
        return cls(private, keys, legacy_macs)

    @classmethod
    def verifying_with(
        cls, public: Iterable[Ed25519PublicKey], legacy_macs: tuple[bytes, ...] = ()
    ) -> CheckpointKeys:
        return cls(None, {key_id(k): k for k in public}, legacy_macs)

    def sign(self, seq: int, records: int, head: str, at: datetime, prev: str) -> Checkpoint:
        if self.signing is None:
            raise ValueError("this audit store holds no checkpoint signing key: it is read-only")
        unsigned = Checkpoint(
            seq, records, head, canonical_time(at), prev, key_id(self.signing.public_key())
        )
        signature = self.signing.sign(unsigned.statement()).hex()
        return Checkpoint(seq, records, head, unsigned.at, prev, unsigned.key, signature)

    def require_signer_of(self, latest: Checkpoint | None) -> None:
        """Raise ValueError unless this store's signing key signed `latest`, the log's newest
        checkpoint. A command that writes to a live log (`AuditStore.pass_on`) must sign as its
        gateways do: a checkpoint signed with any other key - a stale dev key, a key file from
        another environment, one retired by a rotation - would fail `audit verify` for good."""
        if latest is None:
            raise ValueError(
                "the audit log has no signed checkpoint yet to check the checkpoint key against: a"
                " running gateway signs one within seconds of a lookup; try again then"
            )
        signing = None if self.signing is None else key_id(self.signing.public_key())
        if signing != latest.key:
            raise ValueError(
                f"the audit checkpoint key {signing} did not sign the log's latest checkpoint"
                f" (key {latest.key}): run this with the gateways' environment"
            )

    def problem_with(self, checkpoint: Checkpoint) -> str | None:
        """Why this checkpoint's signature does not hold, or None if it does."""
        public = self.public.get(checkpoint.key)
        if public is None:
            return f"a checkpoint is signed by key {checkpoint.key}, not among the public keys"
        try:
            public.verify(bytes.fromhex(checkpoint.signature), checkpoint.statement())
        except (InvalidSignature, ValueError):
            return "a checkpoint's signature is wrong: forged or edited"
        return None


# --- key files ------------------------------------------------------------------------------------


def ensure_checkpoint_key(private_path: Path) -> Path:
    """Create an Ed25519 key pair once: the private key (owner-readable only) at `private_path`,
    its public key beside it as `<name>.pub.pem`; return `private_path`. Safe when gateways
    sharing a state directory start together (`connectors.trust.ensure_key_files`)."""
    return ensure_key_files(
        private_path, public_key_path(private_path), Ed25519PrivateKey.generate, load_private_key
    )


def public_key_path(private_path: Path) -> Path:
    """Where `ensure_checkpoint_key` puts the public half of `private_path`."""
    return private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"cannot read the audit checkpoint key at {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the audit checkpoint key at {path} is not an Ed25519 private key")
    return key


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key (PEM blocks, one after another) in `path`."""
    keys = []
    for key in pem_public_keys(path):
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: holds a public key that is not Ed25519")
        keys.append(key)
    return keys
