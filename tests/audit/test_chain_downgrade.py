"""A log rewritten in the old, unkeyed record format (format 1), its checkpoints deleted, to hide
an edit in its middle while every later record stays: `audit verify` must refuse it.

Format-1 records are hashed over the body alone, so an insider past the append-only triggers who
sets `format = 1` on every row can edit any record and link the chain again with `link_hash`. Old
logs wrote a MAC'd checkpoint whenever a commit crossed a multiple of `checkpoint_every` as signed
ones are now, so a run of format-1 records past one with no checkpoint is no log a gateway wrote.
"""

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from gateway.audit import CheckpointKeys, SqliteAuditStore, archive_log
from gateway.audit.chain import link_hash
from tests.audit.test_sqlite import LEGACY_LOG
from tests.factories import (
    CHECKPOINT_KEY,
    LEGACY_INSERT,
    audit_record,
    break_glass_record,
    legacy_log,
)

LATER = datetime(2999, 1, 1, tzinfo=UTC)
"""A cutoff every checkpoint was written before."""
PUBLIC = CheckpointKeys.verifying_with(CHECKPOINT_KEY.public.values())


def _fill(db):
    """12 records (checkpoints after 5 and 10), the sixth a break-glass override."""
    store = db.open_store()

    async def fill():
        for i in range(12):
            await store.append(break_glass_record("a05") if i == 5 else audit_record(f"a{i:02d}"))

    asyncio.run(fill())
    store.close()


def _verify(db):
    store = db.open_store()
    try:
        return store.verify()
    finally:
        store.close()


def test_a_log_downgraded_to_format_1_with_its_checkpoints_deleted_fails_verify(backend):
    db = backend
    _fill(db)
    assert _verify(db).ok
    # The insider edits the middle of the log: the break-glass override becomes a routine lookup,
    # its alert removed (format 1 does not hash alerts, and an alert needs its record only).
    db.tamper(
        "UPDATE audit_log SET body = replace(body, 'EMERGENCY_OVERRIDE', 'DIRECT_CARE')"
        " WHERE audit_id = 'a05'",
        "UPDATE audit_log SET purpose = 'DIRECT_CARE' WHERE audit_id = 'a05'",
        "DELETE FROM audit_alert",
        "UPDATE audit_log SET format = 1",
        "DELETE FROM audit_checkpoint",
    )
    previous = "0" * 64
    for seq, body in db.query("SELECT seq, body FROM audit_log ORDER BY seq"):
        new = link_hash(previous, body)
        db.tamper(
            ("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, new, seq))
        )
        previous = new

    report = _verify(db)

    # Every one of the 12 records is still there, record 6 edited, every checkpoint gone.
    assert report.records == 12
    assert not report.ok
    assert "checkpoints after record #0 were deleted" in report.describe()


def test_format_1_records_after_an_archives_anchor_fail_verify(backend, tmp_path):
    """An archived log's anchor is a signed checkpoint, which only format-2 records have: live
    records in format 1 after it are a rewrite, whatever their hashes say."""
    db = backend
    _fill(db)
    store = db.open_store()
    try:
        assert archive_log(store, tmp_path / "archive", LATER, PUBLIC) is not None
    finally:
        store.close()
    assert _verify(db).ok
    ((anchor_hash,),) = db.query("SELECT prev_hash FROM audit_log ORDER BY seq LIMIT 1")
    previous = anchor_hash
    db.tamper("UPDATE audit_log SET format = 1")
    for seq, body in db.query("SELECT seq, body FROM audit_log ORDER BY seq"):
        new = link_hash(previous, body)
        db.tamper(
            ("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, new, seq))
        )
        previous = new

    report = _verify(db)

    assert not report.ok
    assert "a record in format 1 where only format 2 may be" in report.describe()


@pytest.mark.anyio
async def test_a_log_moved_from_format_1_still_verifies_and_archives(tmp_path):
    """A real old log: its last format-1 records were written after its last MAC'd checkpoint,
    before a new gateway took over. Its signed checkpoints pin them; the first segment holds
    them."""
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(LEGACY_LOG)
    # 7 old records, a MAC'd checkpoint after the 5th (every = 5): records 6 and 7 were written
    # after it, as any old log's last records are, and the old gateway then stopped.
    rows, checkpoint = legacy_log(7, checkpoint_at=5)
    raw.executemany(LEGACY_INSERT, rows)
    raw.execute(
        "INSERT INTO audit_checkpoint (seq, hash, at, mac) VALUES (?, ?, 'then', ?)", checkpoint
    )
    raw.close()

    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5)
    try:
        for i in range(9):  # records 8..16: signed checkpoints after 10 and 15
            await store.append(audit_record(f"new{i}"))
        assert store.verify().ok  # the live log, as it is, verifies

        # Archiving its oldest part (up to the signed checkpoint at 10 or 15) must work.
        segment = archive_log(store, tmp_path / "archive", LATER, CHECKPOINT_KEY)
        assert segment is not None
        assert store.verify().ok
    finally:
        store.close()
