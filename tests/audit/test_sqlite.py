"""What only the SQLite store does: bring a log written by an older gateway up to date in place
(PostgreSQL's schema changes go through alembic revisions instead, see test_postgres)."""

import dataclasses
import functools
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.audit import (
    AuditUnavailable,
    OutboxState,
    SqliteAuditStore,
    SqliteOutbox,
    archive_log,
    passed_on_record,
    verify_archive,
)
from gateway.audit.sqlite import _CHECKPOINT_AFTER_FLUSHES, SCHEMA_VERSION
from tests.audit.test_archive import LATER
from tests.factories import (
    BREAK_GLASS_REASON,
    CHECKPOINT_KEY,
    LEGACY_INSERT,
    OPERATOR,
    audit_record,
    break_glass_record,
    legacy_log,
    notifying_record,
)

# The audit_alert table as it was before alerts carried the justification.
_ALERTS_WITHOUT_JUSTIFICATION = """
CREATE TABLE audit_alert (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT NOT NULL
);
CREATE TRIGGER audit_alert_no_update BEFORE UPDATE ON audit_alert
BEGIN SELECT RAISE(ABORT, 'audit_alert is append-only'); END;
INSERT INTO audit_alert (at, kind, audit_id, subject, role, organisation)
VALUES ('2026-11-20T09:00:00+00:00', 'BREAK_GLASS', 'old', 'dev:X:u', 'social_worker', 'X1');
"""


@pytest.mark.anyio
async def test_an_existing_log_gains_the_justification_column_and_stays_append_only(tmp_path):
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript(_ALERTS_WITHOUT_JUSTIFICATION)
    raw.close()

    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY)
    try:
        await store.append(break_glass_record("new"))
        alerts = store.alerts()
    finally:
        store.close()

    assert [(a["audit_id"], a["justification"]) for a in alerts] == [
        ("old", None),
        ("new", BREAK_GLASS_REASON),
    ]
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_alert SET justification = 'edited'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_alert")
    raw.close()


# The outbox as it was before dead letters could be closed as passed on by other means.
_OUTBOX_WITHOUT_PASSED_ON = """
CREATE TABLE notification_outbox (
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
INSERT INTO notification_outbox (message_id, audit_id, source, created_at, state, payload,
    next_attempt_at, last_error, finished_at)
VALUES ('m-old', 'a-old', 'health', 1.0, 'DEAD', x'7b7d', 1.0, 'UNREACHABLE', 2.0);
"""


@pytest.mark.anyio
@pytest.mark.parametrize("first", ["audit store", "outbox"])
async def test_an_existing_outbox_gains_the_passed_on_column_whichever_opens_it_first(
    tmp_path, first
):
    """A gateway opens the log as an audit store, `notifications list` as an outbox, and
    `notifications passed-on` as an audit store."""
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript(_OUTBOX_WITHOUT_PASSED_ON)
    raw.close()
    if first == "outbox":
        outbox = SqliteOutbox(path)
        (before,) = outbox.entries()
        outbox.close()
        assert (before.state, before.passed_on) == (OutboxState.DEAD, None)
    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY)
    try:
        await store.append(audit_record("a-1"))
        store.seal()
        record = functools.partial(passed_on_record, OPERATOR)
        closed = store.pass_on(["m-old"], "told by phone", 3.0, record)
    finally:
        store.close()
    outbox = SqliteOutbox(path)
    try:
        (after,) = outbox.entries()
    finally:
        outbox.close()
    assert [entry.message_id for entry in closed] == ["m-old"]
    assert (after.state, after.payload, after.passed_on) == (
        OutboxState.DELIVERED,
        None,
        "told by phone",
    )


@pytest.mark.anyio
async def test_a_close_waiting_past_the_busy_timeout_is_not_made(tmp_path):
    """Another writer holding the log (a seal, another gateway) past the store's busy timeout:
    the close fails as the log's write would, and the dead letter stays dead."""
    path = tmp_path / "audit.sqlite3"
    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, busy_timeout_ms=50)
    await store.append(*notifying_record("a-1", "m-0"))
    store.seal()
    outbox = SqliteOutbox(path)
    outbox.dead("m-0", "UNREACHABLE", 1.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditUnavailable):
            store.pass_on(
                ["m-0"], "told by phone", 2.0, functools.partial(passed_on_record, OPERATOR)
            )
    finally:
        other.execute("ROLLBACK")
        other.close()
    try:
        assert [(e.state, e.passed_on) for e in outbox.entries()] == [(OutboxState.DEAD, None)]
        assert [r["audit_id"] for r in store.records()] == ["a-1"]
    finally:
        outbox.close()
        store.close()


@pytest.mark.anyio
async def test_a_log_from_before_whole_row_hashes_verifies_under_each_rule_up_to_its_point(
    tmp_path,
):
    """A log written by an older gateway (body-only hashes, MAC'd checkpoints) is migrated when
    opened: its records keep their old rule, the new ones get whole-row hashes and signed
    checkpoints, and the whole verifies - while an old record's body edit is still caught."""
    path = _old_log(tmp_path)
    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5)
    for i in range(6):
        await store.append(audit_record(f"new{i}"))
    report = store.verify()
    store.close()
    assert (report.ok, report.records, report.checkpoints) == (True, 13, 2)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert raw.execute("SELECT format, count(*) FROM audit_log GROUP BY format").fetchall() == [
        (1, 7),
        (2, 6),
    ]
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET body = replace(body, 'FOUND', 'DENIED') WHERE seq = 3")
    raw.commit()
    raw.close()
    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5)
    assert store.verify().first_bad_seq == 3
    store.close()


def _old_log(tmp_path: Path) -> Path:
    """A log an older gateway wrote (body-only hashes, a MAC'd checkpoint each time a commit
    crossed a multiple of 5): 7 records, checkpointed after the 5th, the last two after it."""
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(LEGACY_LOG)
    rows, checkpoint = legacy_log(7, checkpoint_at=5)
    raw.executemany(LEGACY_INSERT, rows)
    raw.execute(
        "INSERT INTO audit_checkpoint (seq, hash, at, mac) VALUES (?, ?, 'then', ?)", checkpoint
    )
    raw.close()
    return path


@pytest.mark.anyio
async def test_a_log_from_before_whole_row_hashes_archives_its_old_records(tmp_path):
    """Its old records after its last MAC'd checkpoint are pinned by the signed checkpoints that
    follow: the first segment holds them, and verifies."""
    store = SqliteAuditStore(_old_log(tmp_path), checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5)
    try:
        for i in range(9):  # records 8..16: signed checkpoints after 10 and 15
            await store.append(audit_record(f"new{i}"))
        # Its MAC'd checkpoint is checked under the audit key, which CHECKPOINT_KEY holds.
        segment = archive_log(store, tmp_path / "archive", LATER, CHECKPOINT_KEY)
        assert segment is not None
        assert segment.first_seq == 1
        assert store.verify().ok
        assert verify_archive(store.archived(), tmp_path / "archive", CHECKPOINT_KEY).ok
    finally:
        store.close()


@pytest.mark.parametrize(
    ("macs", "problem"),
    [((b"rotated-in" * 4, b"c" * 32), None), ((b"rotated-in" * 4,), "MAC is wrong")],
    ids=["retired key kept", "retired key dropped"],
)
def test_mac_d_checkpoints_made_under_a_retired_audit_key_verify_while_it_is_kept(
    tmp_path, macs, problem
):
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(LEGACY_LOG)
    rows, checkpoint = legacy_log(3, checkpoint_at=2)  # MAC'd with CHECKPOINT_KEY's b"c" * 32
    raw.executemany(LEGACY_INSERT, rows)
    raw.execute(
        "INSERT INTO audit_checkpoint (seq, hash, at, mac) VALUES (?, ?, 'then', ?)", checkpoint
    )
    raw.close()
    keys = dataclasses.replace(CHECKPOINT_KEY, legacy_macs=macs)
    store = SqliteAuditStore(path, checkpoint_key=keys)
    report = store.verify()
    store.close()
    assert report.ok is (problem is None)
    assert problem is None or problem in (report.problem or "")


LEGACY_LOG = """
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, audit_id TEXT NOT NULL UNIQUE, at TEXT NOT NULL,
    child_ref TEXT, subject TEXT NOT NULL, role TEXT NOT NULL, organisation TEXT NOT NULL,
    purpose TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE audit_checkpoint (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, at TEXT NOT NULL, mac TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END;
"""
"""The audit log and its checkpoints as gateways wrote them before whole-row hashes."""


@pytest.mark.anyio
async def test_an_append_while_another_connection_writes_waits_for_it_then_commits(tmp_path):
    """Appends are written on the event loop only when the write lock is free at once; held by
    another writer (a seal, a second gateway process), the append waits for it in a thread."""
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    await store.append(audit_record("before"))
    other = sqlite3.connect(
        tmp_path / "audit.sqlite3", isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.05, other.execute, ("ROLLBACK",)).start()
    await store.append(audit_record("while-locked"))
    other.close()
    assert [r["audit_id"] for r in store.records()] == ["before", "while-locked"]
    assert store.verify().ok


@pytest.mark.anyio
async def test_the_wal_is_checkpointed_as_appends_go(tmp_path):
    """The event loop's connection leaves checkpoints to the thread that flushes the WAL: the
    WAL stays the size of a few hundred commits however many are made."""
    path = tmp_path / "audit.sqlite3"
    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=10_000)
    wal = path.with_name(path.name + "-wal")
    for i in range(_CHECKPOINT_AFTER_FLUSHES + 10):
        await store.append(audit_record(f"first-{i}"))
    one_round = wal.stat().st_size
    for i in range(3 * _CHECKPOINT_AFTER_FLUSHES):
        await store.append(audit_record(f"then-{i}"))
    assert wal.stat().st_size < 1.5 * one_round
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM audit_log").fetchone() == (
            4 * _CHECKPOINT_AFTER_FLUSHES + 10,
        )


@pytest.mark.anyio
async def test_a_slow_flush_moves_the_next_to_a_thread_and_is_measured_again(tmp_path, monkeypatch):
    """Where a flush is made follows the disk's speed: after one that took long, the next is
    made in a thread, and timed again, so a disk that is fast again is flushed on the loop."""
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    loop_thread = threading.get_ident()
    flushed_in: list[int] = []

    def observed(fd: int) -> None:
        # Where each flush is made, not the disk's speed: a real fdatasync on a busy CI disk once
        # took over the 1 ms limit, and the third flush then rightly went to a thread too.
        flushed_in.append(threading.get_ident())

    monkeypatch.setattr(os, "fdatasync", observed)
    await store.append(audit_record("fast"))
    store._flush_s = 0.5  # as if the last flush had taken half a second
    await store.append(audit_record("after-a-slow-flush"))
    await store.append(audit_record("fast-again"))
    assert [t == loop_thread for t in flushed_in] == [True, False, True]
    assert [r["audit_id"] for r in store.records()] == ["fast", "after-a-slow-flush", "fast-again"]


@pytest.mark.anyio
async def test_a_log_reached_through_a_symbolic_link_is_flushed_where_sqlite_keeps_its_wal(
    tmp_path,
):
    (tmp_path / "real").mkdir()
    link = tmp_path / "audit.sqlite3"
    link.symlink_to(tmp_path / "real" / "audit.sqlite3")
    store = SqliteAuditStore(link, checkpoint_key=CHECKPOINT_KEY)
    await store.append(audit_record("through-a-link"))
    assert [r["audit_id"] for r in store.records()] == ["through-a-link"]
    assert (tmp_path / "real" / "audit.sqlite3-wal").exists()


def test_a_log_that_cannot_be_put_in_wal_mode_is_refused_at_start(tmp_path, monkeypatch):
    """An in-memory database stands for a file system without the shared memory WAL needs:
    SQLite then keeps its old journal mode without an error, and the appends' flush, which is
    the WAL's, would flush nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="WAL mode"):
        SqliteAuditStore(Path(":memory:"), checkpoint_key=CHECKPOINT_KEY)


@pytest.mark.anyio
async def test_under_synchronous_normal_appends_are_not_flushed_one_by_one(tmp_path, monkeypatch):
    """AUDIT_SYNCHRONOUS=NORMAL is the operator's choice to let SQLite flush at checkpoints only:
    the appends written on the event loop then make no flush of their own."""
    flushes: list[int] = []
    fdatasync = os.fdatasync

    def counted(fd: int) -> None:
        flushes.append(fd)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    normal = SqliteAuditStore(
        tmp_path / "normal.sqlite3", checkpoint_key=CHECKPOINT_KEY, synchronous="NORMAL"
    )
    full = SqliteAuditStore(tmp_path / "full.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    for i in range(5):
        await normal.append(audit_record(f"normal-{i}"))
    assert flushes == []
    await full.append(audit_record("full"))
    assert len(flushes) == 1
    assert len(normal.records()) == 5
