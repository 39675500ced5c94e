"""The notification outbox: owner notifications waiting to be delivered, kept in the audit database.

A notification is queued in the same transaction as the audit record of the lookup that caused it
(see `AuditStore.append`), so a lookup that was audited always has its notifications queued and a
lookup whose audit failed has none. Delivery (gateway.audit.notify) happens later, off the request
path, and survives a dead receiver and a restarted gateway because the queue is on disk.

Unlike the audit tables this one changes: attempts are counted, and a delivered message's payload
(who looked at which of the agency's records) is erased at once, since nothing about a child should
outlive its need. The row itself stays, without personal data, as the receipt that the owner was
told. A message that could not be delivered in time is dead-lettered with its payload kept, since
the owner still has to be told some other way.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS notification_outbox (
    message_id TEXT PRIMARY KEY,
    audit_id TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'DEAD')),
    payload BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS notification_outbox_due
    ON notification_outbox (state, next_attempt_at);
"""
"""Times are seconds since the epoch: they must mean the same thing to the next process."""


class OutboxState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


@dataclass(frozen=True)
class OutboxMessage:
    """One notification for one agency: the exact body to sign and send, and where it stands."""

    message_id: str
    source: str
    audit_id: str
    payload: bytes
    created_at: float
    attempts: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """A row as an operator or a test sees it; `payload` is None once delivered."""

    message_id: str
    audit_id: str
    source: str
    state: OutboxState
    attempts: int
    last_error: str | None
    payload: bytes | None


def enqueue(conn: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Queue messages inside the caller's open transaction (the audit write), due at once."""
    conn.executemany(
        "INSERT INTO notification_outbox"
        " (message_id, audit_id, source, created_at, payload, next_attempt_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (m.message_id, m.audit_id, m.source, m.created_at, m.payload, m.created_at)
            for m in messages
        ],
    )


class Outbox:
    """The delivering side of the queue, on its own connection to the audit database.

    Every method is a short transaction, safe to share the database with the audit writer (WAL)
    and with other gateway processes: a message is claimed for a lease before it is sent, so two
    dispatchers do not send it at once, and a dispatcher that dies mid-send leaves it to be sent
    again when the lease runs out.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 1_000) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # Only delivery progress is written here (the queueing is the audit writer's, at its own
        # durability): losing the last of it to a power cut means a message is sent again, which
        # receivers expect, so it need not cost an fsync per delivery.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxMessage]:
        """Pending messages due by `now`, oldest first, each counted as one more attempt and
        hidden from other claims until `now + lease_s`."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(
                    "SELECT message_id, source, audit_id, payload, created_at, attempts"
                    " FROM notification_outbox WHERE state = 'PENDING' AND next_attempt_at <= ?"
                    " ORDER BY next_attempt_at LIMIT ?",
                    (now, limit),
                ).fetchall()
                self._conn.executemany(
                    "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_at = ?"
                    " WHERE message_id = ?",
                    [(now + lease_s, row[0]) for row in rows],
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._conn.execute("ROLLBACK")
                raise
        return [
            OutboxMessage(mid, source, audit_id, payload, created, attempts + 1)
            for mid, source, audit_id, payload, created, attempts in rows
        ]

    def next_due(self) -> float | None:
        """When the earliest pending message falls due, or None when nothing is pending."""
        with self._lock:
            (due,) = self._conn.execute(
                "SELECT MIN(next_attempt_at) FROM notification_outbox WHERE state = 'PENDING'"
            ).fetchone()
        return float(due) if due is not None else None

    def delivered(self, message_id: str, now: float) -> None:
        """Mark delivered and erase the payload: the owner has it now."""
        self._finish(message_id, OutboxState.DELIVERED, None, now, erase=True)

    def dead(self, message_id: str, error: str, now: float) -> None:
        """Give up on automatic delivery; the payload stays for an operator to act on."""
        self._finish(message_id, OutboxState.DEAD, error, now, erase=False)

    def retry(self, message_id: str, error: str, at: float) -> None:
        """Record a failed attempt (`error` is a code, never personal data) and when to retry."""
        with self._lock:
            self._conn.execute(
                "UPDATE notification_outbox SET last_error = ?, next_attempt_at = ?"
                " WHERE message_id = ? AND state = 'PENDING'",
                (error, at, message_id),
            )

    def _finish(
        self, message_id: str, state: OutboxState, error: str | None, now: float, *, erase: bool
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE notification_outbox SET state = ?, last_error = ?, finished_at = ?,"
                " payload = CASE WHEN ? THEN NULL ELSE payload END"
                " WHERE message_id = ? AND state = 'PENDING'",
                (state.value, error, now, erase, message_id),
            )

    def entries(self, audit_id: str | None = None) -> list[OutboxEntry]:
        """Every message, or those of one lookup, oldest first."""
        sql = (
            "SELECT message_id, audit_id, source, state, attempts, last_error, payload"
            " FROM notification_outbox"
        )
        params: tuple[str, ...] = ()
        if audit_id is not None:
            sql += " WHERE audit_id = ?"
            params = (audit_id,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created_at, message_id", params).fetchall()
        return [
            OutboxEntry(mid, aid, source, OutboxState(state), attempts, error, payload)
            for mid, aid, source, state, attempts, error, payload in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
