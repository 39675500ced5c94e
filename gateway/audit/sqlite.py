"""The embedded audit store: the audit log in one SQLite file, append-only, with group commit.

Writes are group-committed: concurrent lookups share one transaction and one fsync, so durability
does not cost a disk flush per lookup under load. A batch is written on the event loop when the
write lock is free, and flushed there too unless the disk is slow (`SqliteAuditStore._commit`).
Every record is hash-chained to the one before and the chain is checkpointed under a MAC (see
gateway.audit.chain), so tampering is detectable.

The owner notifications a lookup obliges are queued in the same transaction (see
gateway.audit.outbox): they exist exactly when the lookup's record does. `SqliteOutbox` delivers
them from the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from gateway.audit.archive import choose_end, delete_archived, read_anchor, read_archived
from gateway.audit.chain import (
    ALERT_COLUMNS,
    CHECKPOINT_COLUMNS,
    LINK_QUERY,
    NOTICE_QUERY,
    RECORD_COLUMNS,
    ROW_FORMAT,
    SIGNED_CHECKPOINT_COLUMNS,
    Anchor,
    ChainReport,
    alert_rows,
    record_row,
    row_hash,
    verify_chain,
)
from gateway.audit.checkpoints import GENESIS, Checkpoint, CheckpointKeys, canonical_time
from gateway.audit.group_commit import GroupCommit
from gateway.audit.outbox import (
    GIVEN_UP_ORDER,
    OutboxEntry,
    OutboxMessage,
    OutboxRows,
    dead_letters_query,
    outbox_entries,
    pass_on_statement,
    positioned_letters,
)
from gateway.audit.pages import LetterPosition, LogPosition, PositionedFeeds
from gateway.audit.queries import (
    ALERT_KEYS,
    CHILDREN_SEEN_QUERY,
    LATEST_SIGNED_QUERY,
    LINK_INSERT,
    SEGMENT_QUERIES,
    SEGMENT_RECORDS,
    alerts_query,
    children_seen,
    link_rows,
    of_child,
    records_query,
)
from gateway.audit.segments import ArchivedSegment, SegmentRows
from gateway.audit.types import AuditRecord, AuditUnavailable, utc_now, utc_text

_CHECKPOINT_TABLE = """
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at TEXT NOT NULL,
    mac TEXT,
    records INTEGER,
    prev TEXT,
    key_id TEXT,
    signature TEXT
)"""
"""Checkpoints: signed ones (gateway.audit.checkpoints) have no `mac`; MAC'd ones, from logs
written before checkpoints were signed, nothing after it."""
_SCHEMA = (
    _CHECKPOINT_TABLE
    + """;
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_id TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    child_ref TEXT,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT NOT NULL,
    purpose TEXT NOT NULL,
    outcome TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    format INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS audit_alert (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT NOT NULL,
    justification TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_child ON audit_log (child_ref, at);
CREATE TABLE IF NOT EXISTS audit_log_link (
    child_ref TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    PRIMARY KEY (child_ref, audit_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, at);
-- A user's trail in the log's order, read on by cursor (gateway.audit.pages; PostgreSQL: 0007).
-- The alerts feeds' order is the alerts' own key; by time, `since` finds where a reading starts.
CREATE INDEX IF NOT EXISTS audit_log_subject_seq ON audit_log (subject, seq);
CREATE INDEX IF NOT EXISTS audit_alert_time ON audit_alert (at, seq);
CREATE TABLE IF NOT EXISTS audit_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_archive (
    last_seq INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    records INTEGER NOT NULL,
    head TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
)

# Nothing written to these tables may change or vanish; the hash chain makes any edit that
# bypasses these triggers (by editing the file) detectable.
_SIGNED_CHECKPOINT = SIGNED_CHECKPOINT_COLUMNS.format(at="at")
_LATEST_SIGNED = LATEST_SIGNED_QUERY.format(columns=_SIGNED_CHECKPOINT)
_ARCHIVED = ("audit_log", "audit_log_link", "audit_alert", "audit_checkpoint")
"""The tables `audit archive` deletes from, inside its one transaction (gateway.audit.archive)."""
_APPEND_ONLY = (*_ARCHIVED, "audit_archive")
_TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}\n"
    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;\n"
    for table in _APPEND_ONLY
    for op in ("UPDATE", "DELETE")
)
_SCHEMA += _TRIGGERS
_OUTBOX_SCHEMA = """
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
    finished_at REAL,
    passed_on TEXT,
    given_up_seq INTEGER
);
CREATE INDEX IF NOT EXISTS notification_outbox_due
    ON notification_outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS outbox_given_up (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
"""
"""Times are seconds since the epoch: they must mean the same thing to the next process. The order
messages were given up in is `given_up_seq`, from the counter `outbox_given_up`
(gateway.audit.outbox.GIVEN_UP_ORDER)."""
_ADDED_INDEXES = """
CREATE INDEX IF NOT EXISTS notification_outbox_given_up
    ON notification_outbox (state, given_up_seq);
"""
"""Indexes on columns a log written by an older gateway gains (`_ADDED_COLUMNS`), made once it has
them: undeliveredNotifications in its order, read on by cursor (PostgreSQL: 0007)."""
_SCHEMA += _OUTBOX_SCHEMA

# Columns added since a table was first created: (table, column, declaration). A log written by an
# older gateway gains them when it is opened; its rows hold NULL there.
_ADDED_COLUMNS = (
    ("audit_alert", "justification", "TEXT"),
    ("audit_log", "format", "INTEGER NOT NULL DEFAULT 1"),
    ("notification_outbox", "passed_on", "TEXT"),
    ("notification_outbox", "given_up_seq", "INTEGER"),
)
SCHEMA_VERSION = 6
"""`PRAGMA user_version` of a log in this layout. 2: whole-row hashes (`audit_log.format`) and
signed checkpoints (`audit_checkpoint` without a required `mac`; see gateway.audit.chain). 3: the
archived segments (`audit_archive`, gateway.audit.archive), a table the schema script creates.
4: the children a lookup reached beyond the one it named (`audit_log_link`), created alike. 5: how
an operator passed a dead letter on by other means (`notification_outbox.passed_on`), added. 6: the
order dead letters were given up in (`notification_outbox.given_up_seq`), added, those of the log
numbered in the order of their times (`_number_dead_letters`)."""


NOTIFIED_RECORDS = (
    "SELECT body FROM audit_log WHERE "  # noqa: S608
    + of_child("{children}", postgres=False)
    + " AND EXISTS (SELECT 1 FROM json_each(body, '$.notified')"
    " WHERE json_extract(value, '$.source') IN ({sources}))"
    " ORDER BY at DESC, seq DESC LIMIT ?"
)
"""A child's records notified to some sources, newest first; `{children}` and `{sources}` take one
mark each per pseudonym and per source."""


_CHILDREN_SEEN = CHILDREN_SEEN_QUERY.format(
    linked="CASE WHEN EXISTS (SELECT 1 FROM json_each(body, '$.released')"
    " WHERE json_extract(value, '$.field') = 'nhs_number')"
    " THEN json_extract(body, '$.linked_refs') END"
)


def _add_missing_columns(conn: sqlite3.Connection, only: str | None = None) -> None:
    """Add the columns of _ADDED_COLUMNS a table lacks (of the table `only`, when given)."""
    for table, column, declaration in _ADDED_COLUMNS:
        if only not in (None, table):
            continue
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in present:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except sqlite3.OperationalError as exc:
            # Another gateway process sharing the log added it first.
            if "duplicate column" not in str(exc):
                raise


@contextlib.contextmanager
def _committed(conn: sqlite3.Connection) -> Iterator[None]:
    """The transaction open on `conn` committed when the block ends, rolled back if it raises."""
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a log written by an older gateway to SCHEMA_VERSION, once, in one transaction: its
    rows keep their format (1) and verify under the old rule up to where the new one starts."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    with _committed(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _add_missing_columns(conn)
            _number_dead_letters(conn)
            checkpoint_columns = {
                row[1] for row in conn.execute("PRAGMA table_info(audit_checkpoint)")
            }
            if "signature" not in checkpoint_columns:
                # SQLite cannot drop a NOT NULL: the (small) checkpoint table is rebuilt; DROP
                # TABLE fires no delete trigger.
                conn.execute("ALTER TABLE audit_checkpoint RENAME TO audit_checkpoint_v1")
                conn.execute(_CHECKPOINT_TABLE)
                conn.execute(
                    "INSERT INTO audit_checkpoint (seq, hash, at, mac)"
                    " SELECT seq, hash, at, mac FROM audit_checkpoint_v1"
                )
                conn.execute("DROP TABLE audit_checkpoint_v1")
                _create_triggers(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _number_dead_letters(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: give the dead letters that have no place in the order they were
    given up in (`given_up_seq`: given up before it was kept) places after every place given,
    in the order of the times they were given up at - the order they were read in then."""
    unplaced = conn.execute(
        "SELECT message_id FROM notification_outbox WHERE state = 'DEAD' AND given_up_seq IS NULL"
        " ORDER BY finished_at, message_id"
    ).fetchall()
    for (message_id,) in unplaced:
        conn.execute(_for_sqlite(GIVEN_UP_ORDER))
        conn.execute(
            "UPDATE notification_outbox SET given_up_seq ="
            " (SELECT last_seq FROM outbox_given_up WHERE id = 1) WHERE message_id = ?",
            (message_id,),
        )


def _for_sqlite(statement: str) -> str:
    """A statement the two stores share (gateway.audit.queries, in psycopg's `%s` placeholders)
    in SQLite's (`?`)."""
    return statement.replace("%s", "?")


def _create_triggers(conn: sqlite3.Connection) -> None:
    """The append-only triggers, one statement at a time: `executescript` would commit the
    transaction they are re-created in."""
    for statement in _TRIGGERS.split(";\n"):
        if statement.strip():
            conn.execute(statement + ";")


def _connect(
    path: Path, busy_timeout_ms: int, synchronous: str, *, schema: bool = True
) -> sqlite3.Connection:
    """A connection to the log, its schema in place unless `schema` is False (another connection
    of this process has made it); a path that is not an SQLite database (a directory, another
    kind of file, a damaged one) is a ValueError naming it."""
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open the audit log at {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if schema:
            conn.executescript(_SCHEMA)
            _migrate(conn)
            conn.executescript(_ADDED_INDEXES)
    except sqlite3.Error as exc:
        conn.close()
        raise ValueError(f"cannot open the audit log at {path}: {exc}") from exc
    return conn


def _wal_file(conn: sqlite3.Connection) -> str:
    """The WAL file of `conn`'s database, where SQLite keeps it: beside the file the log's path
    leads to through any symbolic links. A ValueError if the log is not in WAL mode (a file
    system without the shared memory it needs), which appends written on the event loop rely
    on: their flush is the WAL's."""
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    ((_, _, database),) = conn.execute("PRAGMA database_list").fetchall()
    if mode != "wal":
        raise ValueError(f"the audit log at {database} could not be put in WAL mode ({mode})")
    return f"{database}-wal"


_CHECKPOINT_AFTER_FLUSHES: Final = 256
"""How many commits on the event loop the WAL takes before it is checkpointed, in a thread (a few
pages each: about SQLite's own default of 1,000 pages, which that connection is told not to
checkpoint itself)."""

_FLUSH_ON_THE_LOOP_UNDER_S: Final = 0.001
"""A WAL flush that last took less than this is made on the event loop. In a thread it costs more
than the loop loses blocked: under load the thread waits up to the interpreter's 5 ms switch
interval for the GIL, before and after the flush (~8 ms a batch at 16 lookups in flight, for a
~0.2 ms fdatasync). A slower disk is flushed in a thread, the loop serving on meanwhile."""


_INDEXED_TABLES: Final = ("audit_log", "audit_alert", "audit_log_link")
"""The tables whose indexes the auditors' reads go through (SqliteAuditStore._indexes_agree)."""


class SqliteAuditStore(PositionedFeeds):
    """SQLite-backed, append-only audit log with group commit."""

    def __init__(
        self,
        path: Path,
        *,
        checkpoint_key: CheckpointKeys,
        checkpoint_every: int = 100,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 250,
    ):
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._checkpoint_key = checkpoint_key
        self._checkpoint_every = checkpoint_every
        self._conn = _connect(path, busy_timeout_ms, synchronous)
        self._lock = threading.Lock()
        # Appends are written on the event loop through a connection of their own that never
        # waits for a lock and leaves the flush to `_flush_wal` (see `_commit`) - under FULL, the
        # WAL's checkpoints too, which flush as well and are made in a thread.
        self._at_once = _connect(path, 0, "NORMAL", schema=False)
        self._wal = Path(_wal_file(self._at_once))
        self._full = synchronous == "FULL"
        if self._full:
            self._at_once.execute("PRAGMA wal_autocheckpoint = 0")
        self._flushed = 0
        self._flush_s = 0.0
        """How long the last flush took: the disk's speed, which decides where the next is made."""
        self._group = GroupCommit(self._commit)

    async def append(
        self, record: AuditRecord, notifications: Sequence[OutboxMessage] = ()
    ) -> None:
        """Return once the record, and the notifications it obliges, are durably committed;
        raise AuditUnavailable otherwise, in which case neither was, or (a failed flush, see
        `_commit`) neither is known to be on disk."""
        await self._group.append(record, notifications)

    async def _commit(self, records: list[AuditRecord], notifications: list[OutboxMessage]) -> None:
        """Write the batch on the event loop when the log's write lock is free at once, and flush
        the WAL to disk before returning; else write it all in a thread, waiting for the lock up
        to the busy timeout. Either way the batch is durable when this returns.

        Handing the whole write to a thread cost more than the write: each SQLite call releases
        the GIL, and under load the thread waited up to the switch interval to take it back
        every time - ~10 ms a commit at 16 lookups in flight, against ~0.5 ms of work. The flush
        is what FULL would have done at COMMIT, made after it: a process that dies between the
        two loses nothing it released, since no caller has its answer before the flush. A flush
        that fails leaves the batch in the log, not known to be on disk; its callers are told
        the store is unavailable and release nothing, so the log can only over-report."""
        try:
            if not self._write_at_once(records, notifications):
                await asyncio.to_thread(self._write, records, notifications)
            elif self._full:
                await self._flush_wal()
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(f"audit store write failed: {exc.__class__.__name__}") from exc

    def _write_at_once(
        self, records: list[AuditRecord], notifications: list[OutboxMessage]
    ) -> bool:
        """Commit the batch (not yet flushed) if the write lock is free now; False if it is not:
        another connection - a seal, a readiness probe, another gateway process - is writing."""
        try:
            self._at_once.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False  # SQLITE_BUSY: with no busy timeout, only the lock fails here
        with _committed(self._at_once):
            self._append(self._at_once, records, notifications)
        return True

    async def _flush_wal(self) -> None:
        """Make what was committed through `_at_once` durable: on the loop when the disk flushes
        fast, else in a thread (see _FLUSH_ON_THE_LOOP_UNDER_S). Every
        _CHECKPOINT_AFTER_FLUSHES flushes, checkpoint the WAL in a thread."""
        if self._flush_s < _FLUSH_ON_THE_LOOP_UNDER_S:
            self._sync_wal()
        else:
            await asyncio.to_thread(self._sync_wal)
        self._flushed += 1
        if self._flushed >= _CHECKPOINT_AFTER_FLUSHES:
            self._flushed = 0
            await asyncio.to_thread(self._checkpoint_wal)

    def _sync_wal(self) -> None:
        """fdatasync the WAL file, as SQLite does after every commit under FULL (a file is flushed
        whichever descriptor asks), and time it."""
        started = time.perf_counter()
        fd = os.open(self._wal, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._flush_s = time.perf_counter() - started

    def _checkpoint_wal(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction, holding the store's lock and the file's write lock (BEGIN
        IMMEDIATE): what is read inside it, the chain's tail above all, stays the tail until the
        commit, so several gateway processes sharing one database still extend a single chain."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            with _committed(self._conn):
                yield

    def _write(self, records: list[AuditRecord], notifications: list[OutboxMessage]) -> None:
        with self._writing():
            self._append(self._conn, records, notifications)

    def _append(
        self,
        conn: sqlite3.Connection,
        records: list[AuditRecord],
        notifications: list[OutboxMessage],
    ) -> None:
        """Inside a write transaction on `conn`: chain the records to the tail, insert them, their
        alerts and notifications, and sign a checkpoint if the batch crossed one."""
        tail = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, previous = tail if tail else (0, GENESIS)
        rows = []
        for r in records:
            columns, alerts = record_row(r, r.access.at.isoformat())
            chain_hash = row_hash(previous, columns, alerts)
            rows.append((*columns, previous, chain_hash, ROW_FORMAT))
            previous = chain_hash
        conn.executemany(
            "INSERT INTO audit_log (audit_id, at, child_ref, subject, role, organisation,"
            " purpose, outcome, body, prev_hash, hash, format)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(_for_sqlite(LINK_INSERT), link_rows(records))
        conn.executemany(
            "INSERT INTO audit_alert"
            " (at, kind, audit_id, subject, role, organisation, justification)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            alert_rows(records, time_as_text=True),
        )
        conn.executemany(
            "INSERT INTO notification_outbox"
            " (message_id, audit_id, source, created_at, payload, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (m.message_id, m.audit_id, m.source, m.created_at, m.payload, m.created_at)
                for m in notifications
            ],
        )
        if (seq + len(rows)) // self._checkpoint_every != seq // self._checkpoint_every:
            # This batch crossed a multiple of checkpoint_every.
            self._checkpoint(conn)

    def pass_on(
        self,
        message_ids: Sequence[str],
        how: str,
        now: float,
        record: Callable[[OutboxEntry], AuditRecord],
    ) -> list[OutboxEntry]:
        """Close dead letters as passed on by other means, each with its record, in one
        transaction (see `AuditStore.pass_on`)."""
        if not message_ids:
            return []
        try:
            with self._writing():
                latest = self._conn.execute(_LATEST_SIGNED).fetchone()
                self._checkpoint_key.require_signer_of(
                    None if latest is None else Checkpoint(*latest)
                )
                statement = _for_sqlite(pass_on_statement(len(message_ids)))
                rows = self._conn.execute(statement, (now, how, *message_ids)).fetchall()
                closed = sorted(outbox_entries(rows), key=lambda entry: entry.message_id)
                self._append(self._conn, [record(entry) for entry in closed], [])
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store write failed: {exc.__class__.__name__}") from exc
        return closed

    def seal(self) -> Checkpoint | None:
        """Sign a checkpoint over the records written since the latest one, if any were."""
        try:
            with self._writing():
                (tail,) = self._conn.execute("SELECT max(seq) FROM audit_log").fetchone()
                (covered,) = self._conn.execute("SELECT max(seq) FROM audit_checkpoint").fetchone()
                if tail is None or (covered is not None and covered >= tail):
                    return None
                return self._checkpoint(self._conn)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store seal failed: {exc.__class__.__name__}") from exc

    def checkpoints(self, after_seq: int, limit: int) -> list[Checkpoint]:
        """Signed checkpoints with `seq` > `after_seq`, oldest first, at most `limit`."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_SIGNED_CHECKPOINT} FROM audit_checkpoint"  # noqa: S608
                " WHERE signature IS NOT NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Checkpoint(*row) for row in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        with self._lock:
            row = self._conn.execute(_LATEST_SIGNED).fetchone()
        return None if row is None else Checkpoint(*row)

    def _checkpoint(self, conn: sqlite3.Connection) -> Checkpoint:
        """Sign a checkpoint over the chain's tail, inside the write transaction on `conn`."""
        seq, head = conn.execute(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        last = conn.execute(_LATEST_SIGNED).fetchone()
        if last is None:  # the first signed checkpoint: count the whole log, once
            prev, since, counted = GENESIS, 0, 0
        else:
            previous = Checkpoint(*last)
            prev, since, counted = previous.digest(), previous.seq, previous.records
        (newer,) = conn.execute("SELECT count(*) FROM audit_log WHERE seq > ?", (since,)).fetchone()
        checkpoint = self._checkpoint_key.sign(seq, counted + newer, head, utc_now(), prev)
        conn.execute(
            "INSERT INTO audit_checkpoint (seq, hash, at, records, prev, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                checkpoint.seq,
                checkpoint.head,
                checkpoint.at,
                checkpoint.records,
                checkpoint.prev,
                checkpoint.key,
                checkpoint.signature,
            ),
        )
        return checkpoint

    def verify(self) -> ChainReport:
        """Check the whole chain, its alerts and every checkpoint (see gateway.audit.chain)."""
        with self._lock:
            self._conn.execute("BEGIN")  # one snapshot for all the reads
            try:
                start = read_anchor(self._run)
                checkpoints = self._conn.execute(
                    f"SELECT {CHECKPOINT_COLUMNS.format(at='at')} FROM audit_checkpoint"  # noqa: S608
                ).fetchall()
                alerts = self._conn.execute(
                    f"SELECT {ALERT_COLUMNS.format(at='at')} FROM audit_alert ORDER BY seq"  # noqa: S608
                ).fetchall()
                notices = self._conn.execute(NOTICE_QUERY).fetchall()
                links = self._conn.execute(LINK_QUERY).fetchall()
                records = self._conn.execute(
                    f"SELECT {RECORD_COLUMNS.format(at='at')} FROM audit_log ORDER BY seq"  # noqa: S608
                )
                report = verify_chain(
                    records,
                    alerts,
                    checkpoints,
                    self._checkpoint_key,
                    self._checkpoint_every,
                    notices,
                    start,
                    links,
                )
                return report if not report.ok else self._indexes_agree(report)
            finally:
                self._conn.execute("COMMIT")

    def _indexes_agree(self, report: ChainReport) -> ChainReport:
        """`report`, or a failed one if an index of the log, its alerts or its links does not
        match their rows. The chain is verified from the rows in `seq` order, but a child's or a
        user's trail and the alerts feeds are read through indexes: an index entry removed from
        the file hides an access from them while every row and hash stays whole."""
        for table in _INDEXED_TABLES:
            ((verdict,), *_) = self._conn.execute(f"PRAGMA integrity_check({table})").fetchall()
            if verdict != "ok":
                problem = (
                    f"an index of {table} does not match its rows, edited to hide an entry from"
                    f" a trail or a feed ({verdict})"
                )
                return replace(report, ok=False, problem=problem, last_checkpoint=None)
        return report

    def is_writable(self) -> bool:
        """For readiness probes: commit a real write (one heartbeat row, not audit data) through
        the connection records are appended on. Opening a transaction is not enough: a log whose
        files cannot be written still opens and locks, and then every append fails."""
        try:
            with self._writing():
                self._conn.execute(
                    "INSERT OR REPLACE INTO audit_heartbeat (id, at) VALUES (1, ?)",
                    (utc_now().isoformat(),),
                )
        except sqlite3.Error:
            return False
        return True

    def _record_rows(
        self,
        child_refs: Sequence[str],
        subject: str | None,
        since: datetime | None,
        after: LogPosition | None,
        limit: int,
        *,
        by_time: bool,
    ) -> list[tuple[str, int, str]]:
        statement, params = records_query(
            child_refs=child_refs,
            subject=subject,
            since=None if since is None else utc_text(since),
            after=None if after is None else after.seq,
            limit=limit,
            by_time=by_time,
        )
        with self._lock:
            return self._conn.execute(_for_sqlite(statement), params).fetchall()

    def notified_records(
        self, child_refs: Sequence[str], sources: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        """Records of this child (by any of its pseudonyms) whose owner notifications went to
        one of `sources`, newest first. The child's index (child_ref, at, and the rowid seq)
        finds and orders them; the notices are read from the record itself, the hash-chained
        body, not from a copy."""
        if not sources or not child_refs:
            return []
        statement = NOTIFIED_RECORDS.format(
            children=", ".join("?" * len(child_refs)), sources=", ".join("?" * len(sources))
        )
        with self._lock:
            params = (*child_refs, *child_refs, *sources, limit)
            rows = self._conn.execute(statement, params).fetchall()
        return [json.loads(body) for (body,) in rows]

    def _alerts(
        self,
        since: datetime | None,
        kinds: Collection[str] | None,
        after: LogPosition | None,
        limit: int | None,
        *,
        by_time: bool,
    ) -> list[tuple[LogPosition, dict[str, str | None]]]:
        chosen = () if kinds is None else (json.dumps(list(kinds)),)
        statement = alerts_query(
            None if kinds is None else "kind IN (SELECT value FROM json_each(%s))",
            after=after is not None,
            by_time=by_time,
        )
        params = (
            utc_text(since or datetime.min.replace(tzinfo=UTC)),
            *chosen,
            *(() if after is None else (after.seq,)),
            -1 if limit is None else limit,  # -1: no limit
        )
        with self._lock:
            rows = self._run(statement, params)
        return [
            (LogPosition(seq, at), {"at": at} | dict(zip(ALERT_KEYS, rest, strict=True)))
            for at, seq, *rest in rows
        ]

    def children_seen(self, subject: str, since: datetime) -> dict[str, set[str]]:
        """The children a user looked up (and was answered about) since a time, with their links
        (gateway.audit.queries.children_seen)."""
        with self._lock:
            return children_seen(self._run(_CHILDREN_SEEN, (subject, utc_text(since))))

    def positioned_dead_letters(
        self, limit: int, after: LetterPosition | None = None
    ) -> list[tuple[LetterPosition, OutboxEntry]]:
        """`dead_letters` strictly after a position, each with its own."""
        statement = dead_letters_query(after=after is not None)
        params = (*(() if after is None else (after,)), limit)
        with self._lock:
            return positioned_letters(self._run(statement, params))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._at_once.close()

    # --- archiving (gateway.audit.archive) ------------------------------------------------------

    def _run(self, statement: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        return self._conn.execute(_for_sqlite(statement), params).fetchall()

    def archive_anchor(self) -> Anchor | None:
        """Where the live log begins: the end of the last segment archived, or None."""
        with self._lock:
            return read_anchor(self._run)

    def archived(self) -> list[ArchivedSegment]:
        """Every segment archived from this log, oldest first."""
        with self._lock:
            return read_archived(self._run)

    def archivable(self, before: datetime, max_records: int | None = None) -> Checkpoint | None:
        """The checkpoint the next segment may end at, for records before `before`."""
        with self._lock:
            return choose_end(self._run, canonical_time(before), _SIGNED_CHECKPOINT, max_records)

    @contextlib.contextmanager
    def segment_rows(self, start: Anchor | None, end: Checkpoint) -> Iterator[SegmentRows]:
        """Everything a segment from `start` to `end` holds, read in one snapshot, the records
        streamed while the caller writes them."""
        columns = {"checkpoints": CHECKPOINT_COLUMNS, "alerts": ALERT_COLUMNS}
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                checkpoints, alerts, receipts = (
                    self._run(
                        q.format(**{k: v.format(at="at") for k, v in columns.items()}), [end.seq]
                    )
                    for q in SEGMENT_QUERIES
                )
                records = self._conn.execute(
                    _for_sqlite(SEGMENT_RECORDS.format(records=RECORD_COLUMNS.format(at="at"))),
                    (end.seq,),
                )
                yield SegmentRows(start, end, checkpoints, alerts, receipts, records)
            finally:
                self._conn.execute("COMMIT")

    def archive(self, segment: ArchivedSegment, start: Anchor | None) -> None:
        """Delete the archived records (and what goes with them) and record the segment, in one
        transaction. The delete triggers are dropped and re-created inside it: no other
        connection ever sees them missing. Raises ArchiveRefused if the log changed meanwhile."""
        with self._writing():
            for table in _ARCHIVED:
                self._conn.execute(f"DROP TRIGGER {table}_no_delete")
            delete_archived(self._run, segment, start, _SIGNED_CHECKPOINT)
            _create_triggers(self._conn)


class SqliteOutbox(OutboxRows):
    """The delivering side of the outbox (see gateway.audit.outbox), on its own connection to the
    audit file: every method a short transaction, safe beside the audit writer (WAL) and other
    gateway processes sharing the file."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 1_000) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # Only delivery progress is written here (the queueing is the audit writer's, at its own
        # durability): losing the last of it to a power cut means a message is sent again, which
        # receivers expect, so it need not cost an fsync per delivery.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_OUTBOX_SCHEMA)
        # An operator's tool may open the outbox of a log no gateway of this version has opened.
        _add_missing_columns(self._conn, only="notification_outbox")
        self._conn.executescript(_ADDED_INDEXES)
        self._lock = threading.Lock()

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxMessage]:
        """Pending messages due by `now`, oldest first, each counted as one more attempt and
        hidden from other claims until `now + lease_s`."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            with _committed(self._conn):
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
        return [
            OutboxMessage(mid, source, audit_id, payload, created, attempts + 1)
            for mid, source, audit_id, payload, created, attempts in rows
        ]

    def _rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(_for_sqlite(statement), params).fetchall()

    def _together(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """One write transaction, holding the file's write lock from its start (BEGIN
        IMMEDIATE), as the audit writer's are."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            with _committed(self._conn):
                for statement, params in statements:
                    self._conn.execute(_for_sqlite(statement), params)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def holds_audit_log(path: Path) -> bool:
    """Whether the file at `path` is a SQLite database holding an audit log, found by reading it
    only: opening it as a store would write the schema into whatever file it is."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'"
            ).fetchone()
    except sqlite3.Error:
        return False
    return found is not None
