"""The audit stores' conformance suite runs every test taking `backend`, `store` or `outbox` once
against the SQLite file and once against a PostgreSQL schema of its own: one interface, one suite.

A `Backend` gives a test what it needs past the interface: opening stores and outboxes on the same
log, reading and tampering with the rows as an attacker would (past the append-only triggers),
blocking writes, and the raw bytes the log keeps.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from gateway.audit import (
    AuditStore,
    CheckpointKeys,
    Outbox,
    PostgresAuditStore,
    PostgresOutbox,
    SqliteAuditStore,
    SqliteOutbox,
    upgrade_schema,
)
from tests.factories import CHECKPOINT_KEY

Statement = str | tuple[str, tuple[Any, ...]]
"""SQL text, or (SQL text with `?` placeholders, parameters)."""


class Backend(Protocol):
    name: str
    error: type[Exception]
    """What the database raises when it refuses a statement."""

    def open_store(
        self, checkpoint_every: int = 5, keys: CheckpointKeys = CHECKPOINT_KEY
    ) -> AuditStore:
        """A store on the log, signing with `keys` (by default the tests' key pair)."""
        ...

    def open_outbox(self) -> Outbox: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows read directly, as the database's owner."""
        ...

    def execute(self, sql: str) -> None:
        """A statement run directly as the database's owner: the append-only triggers apply."""
        ...

    def tamper(self, *statements: Statement) -> None:
        """An attacker who can get past the append-only triggers edits the rows directly."""
        ...

    def blocked(self) -> contextlib.AbstractContextManager[None]:
        """While inside, another session holds the log locked: no write can commit."""
        ...

    def dump(self) -> bytes:
        """Everything the database stores for the log, as bytes."""
        ...


class SqliteBackend:
    name = "sqlite"
    error = sqlite3.DatabaseError

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_store(
        self, checkpoint_every: int = 5, keys: CheckpointKeys = CHECKPOINT_KEY
    ) -> AuditStore:
        return SqliteAuditStore(self.path, checkpoint_key=keys, checkpoint_every=checkpoint_every)

    def open_outbox(self) -> Outbox:
        return SqliteOutbox(self.path)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def execute(self, sql: str) -> None:
        conn = sqlite3.connect(self.path)
        try:
            conn.execute(sql)
        finally:
            conn.close()

    def tamper(self, *statements: Statement) -> None:
        """With the file: drop the triggers, then edit."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        for table in (
            "audit_log",
            "audit_log_link",
            "audit_alert",
            "audit_checkpoint",
            "audit_archive",
        ):
            for op in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        for statement in statements:
            sql, params = statement if isinstance(statement, tuple) else (statement, ())
            conn.execute(sql, params)
        conn.close()

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        blocker = sqlite3.connect(self.path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    def dump(self) -> bytes:
        return self.path.read_bytes()


class PostgresBackend:
    name = "postgres"
    error = psycopg.Error

    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema
        upgrade_schema(url, schema)

    def open_store(
        self, checkpoint_every: int = 5, keys: CheckpointKeys = CHECKPOINT_KEY
    ) -> AuditStore:
        return PostgresAuditStore(
            self.url,
            self.schema,
            checkpoint_key=keys,
            checkpoint_every=checkpoint_every,
            timeout_s=1.0,
        )

    def open_outbox(self) -> Outbox:
        return PostgresOutbox(self.url, self.schema)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url, autocommit=True, options=f"-c search_path={self.schema} -c TimeZone=UTC"
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            return list(conn.execute(sql).fetchall())

    def execute(self, sql: str) -> None:
        with self._connect() as conn:
            conn.execute(sql)

    def tamper(self, *statements: Statement) -> None:
        """As the superuser: triggers off for the session, and the sequence numbers made writable
        like any other column."""
        with self._connect() as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("ALTER TABLE audit_log ALTER COLUMN seq SET GENERATED BY DEFAULT")
            for statement in statements:
                sql, params = statement if isinstance(statement, tuple) else (statement, ())
                conn.execute(sql.replace("?", "%s"), params)

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        with self._connect() as conn:
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE audit_log, audit_heartbeat IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")

    def dump(self) -> bytes:
        tables = ("audit_log", "audit_alert", "audit_checkpoint", "notification_outbox")
        data = bytearray()
        with self._connect() as conn, conn.cursor() as cur:
            for table in tables:
                with cur.copy(f"COPY {table} TO STDOUT") as copy:
                    for chunk in copy:
                        data += chunk
        return bytes(data)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "audit.sqlite3")
    url, schema = request.getfixturevalue("postgres_schema")
    return PostgresBackend(url, schema)


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditStore]:
    s = backend.open_store()
    yield s
    s.close()


@pytest.fixture
def outbox(backend: Backend) -> Iterator[Outbox]:
    o = backend.open_outbox()
    yield o
    o.close()
