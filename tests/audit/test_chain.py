"""Tamper evidence: each kind of tampering with the audit database is caught, and named."""

import asyncio
import sqlite3

import pytest

from gateway.audit import SqliteAuditStore
from gateway.audit.chain import link_hash
from tests.factories import CHECKPOINT_KEY, audit_record


def _store(path):
    return SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5)


@pytest.fixture
def db(tmp_path):
    """A log of 12 records (checkpoints after 5 and 10), then closed for the attacker."""
    path = tmp_path / "audit.sqlite3"
    store = _store(path)

    async def fill():
        for i in range(12):
            await store.append(audit_record(f"a{i:02d}"))

    asyncio.run(fill())
    store.close()
    return path


def _tamper(path, *statements):
    """An attacker with the file: drops the append-only triggers and edits rows directly.
    A statement is SQL text, or (SQL text, parameters)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for trigger in ("audit_log_no_update", "audit_log_no_delete", "audit_checkpoint_no_update"):
        conn.execute(f"DROP TRIGGER {trigger}")
    for statement in statements:
        sql, params = statement if isinstance(statement, tuple) else (statement, ())
        conn.execute(sql, params)
    conn.close()


def _verify(path):
    store = _store(path)
    try:
        return store.verify()
    finally:
        store.close()


def test_an_untouched_log_verifies(db):
    report = _verify(db)
    assert report.ok
    assert (report.records, report.checkpoints) == (12, 2)
    assert "intact" in report.describe()


def test_an_edited_record_is_named(db):
    _tamper(db, "UPDATE audit_log SET body = replace(body, 'FOUND', 'NOT_FOUND') WHERE seq = 4")
    report = _verify(db)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_audit_id) == (4, "a03")
    assert "edited" in report.problem


def test_an_edit_that_recomputes_its_own_hash_still_breaks_the_next_link(db):
    conn = sqlite3.connect(db)
    body, prev = conn.execute("SELECT body, prev_hash FROM audit_log WHERE seq = 4").fetchone()
    conn.close()
    forged = body.replace("FOUND", "NOT_FOUND")
    update = "UPDATE audit_log SET body = ?, hash = ? WHERE seq = 4"
    _tamper(db, (update, (forged, link_hash(prev, forged))))
    report = _verify(db)
    assert report.first_bad_seq == 5
    assert "deleted, inserted or moved" in report.problem


def test_a_deleted_record_is_caught_at_its_successor(db):
    _tamper(db, "DELETE FROM audit_log WHERE seq = 7")
    report = _verify(db)
    assert report.first_bad_seq == 8


def test_an_inserted_record_is_caught(db):
    _tamper(
        db,
        "INSERT INTO audit_log (seq, audit_id, at, child_ref, subject, role, organisation,"
        " purpose, outcome, body, prev_hash, hash) SELECT 100, 'fake', at, child_ref, subject,"
        " role, organisation, purpose, outcome, body, prev_hash, hash FROM audit_log WHERE seq = 3",
    )
    report = _verify(db)
    assert report.first_bad_seq == 100


def test_reordered_records_are_caught(db):
    _tamper(
        db,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    report = _verify(db)
    assert report.first_bad_seq == 2


def test_cutting_off_the_newest_records_past_a_checkpoint_is_caught(db):
    _tamper(db, "DELETE FROM audit_log WHERE seq >= 9")
    report = _verify(db)
    assert not report.ok
    assert report.first_bad_seq == 10
    assert "removed" in report.problem


def test_a_forged_checkpoint_is_caught(db):
    _tamper(db, "UPDATE audit_checkpoint SET mac = 'f' || substr(mac, 2) WHERE seq = 5")
    report = _verify(db)
    assert not report.ok
    assert "MAC" in report.problem


def test_the_chain_continues_across_reopening_the_store(db):
    store = _store(db)
    asyncio.run(store.append(audit_record("after-restart")))
    assert store.verify().ok
    store.close()
