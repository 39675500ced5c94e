"""The audit store's interface: what the gateway, the limits and the auditors' tools need of it.

The embedded SQLite store (gateway.audit.sqlite) implements it; a shared store for several gateway
processes is a sibling behind the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from gateway.audit.chain import ChainReport
from gateway.audit.outbox import OutboxMessage
from gateway.audit.pseudonyms import audit_key, derive_key
from gateway.audit.sqlite import SqliteAuditStore
from gateway.audit.types import AuditRecord
from gateway.config import Settings


class AuditStore(Protocol):
    async def append(
        self, record: AuditRecord, notifications: Sequence[OutboxMessage] = ()
    ) -> None:
        """Return once the record, and the notifications it obliges, are durably committed;
        raise AuditUnavailable otherwise, in which case neither was."""
        ...

    def verify(self) -> ChainReport:
        """Check the whole hash chain and every checkpoint."""
        ...

    def is_writable(self) -> bool:
        """For readiness probes: could a record be committed right now?"""
        ...

    def records(
        self,
        *,
        child_ref: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records oldest first, optionally for one child, one user, or since a time."""
        ...

    def alerts(self, since: datetime | None = None) -> list[dict[str, str | None]]:
        """The privacy officers' feed of break-glass overrides, with each justification; it names
        no child."""
        ...

    def distinct_children(self, subject: str, since: datetime) -> set[str]:
        """Pseudonyms of the children a user looked up (and was answered about) since a time."""
        ...

    def close(self) -> None: ...


def open_audit_store(settings: Settings, *, create: bool = True) -> AuditStore:
    """The configured audit store. With `create=False` a missing log is an error rather than a
    new empty one: verifying a mistyped path must not pass."""
    path = settings.resolved_audit_db()
    if not create and not path.exists():
        raise ValueError(f"no audit log at {path}")
    return SqliteAuditStore(
        path,
        checkpoint_key=derive_key(audit_key(settings), "audit-checkpoint"),
        synchronous=settings.audit_synchronous,
    )
