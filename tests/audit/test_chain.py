"""Tamper evidence: each kind of tampering with the audit database is caught, and named - in
either store (see conftest), by an attacker past its append-only triggers."""

import asyncio

import pytest

from gateway.audit.chain import link_hash
from tests.factories import audit_record


@pytest.fixture
def db(backend):
    """A log of 12 records (checkpoints after 5 and 10), then closed for the attacker."""
    store = backend.open_store()

    async def fill():
        for i in range(12):
            await store.append(audit_record(f"a{i:02d}"))

    asyncio.run(fill())
    store.close()
    return backend


def _verify(db):
    store = db.open_store()
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
    db.tamper("UPDATE audit_log SET body = replace(body, 'FOUND', 'NOT_FOUND') WHERE seq = 4")
    report = _verify(db)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_audit_id) == (4, "a03")
    assert "edited" in report.problem


def test_an_edit_that_recomputes_its_own_hash_still_breaks_the_next_link(db):
    ((body, prev),) = db.query("SELECT body, prev_hash FROM audit_log WHERE seq = 4")
    forged = body.replace("FOUND", "NOT_FOUND")
    update = "UPDATE audit_log SET body = ?, hash = ? WHERE seq = 4"
    db.tamper((update, (forged, link_hash(prev, forged))))
    report = _verify(db)
    assert report.first_bad_seq == 5
    assert "deleted, inserted or moved" in report.problem


def test_a_deleted_record_is_caught_at_its_successor(db):
    db.tamper("DELETE FROM audit_log WHERE seq = 7")
    report = _verify(db)
    assert report.first_bad_seq == 8


def test_an_inserted_record_is_caught(db):
    db.tamper(
        "INSERT INTO audit_log (seq, audit_id, at, child_ref, subject, role, organisation,"
        " purpose, outcome, body, prev_hash, hash) SELECT 100, 'fake', at, child_ref, subject,"
        " role, organisation, purpose, outcome, body, prev_hash, hash FROM audit_log WHERE seq = 3",
    )
    report = _verify(db)
    assert report.first_bad_seq == 100


def test_reordered_records_are_caught(db):
    db.tamper(
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    report = _verify(db)
    assert report.first_bad_seq == 2


def test_cutting_off_the_newest_records_past_a_checkpoint_is_caught(db):
    db.tamper("DELETE FROM audit_log WHERE seq >= 9")
    report = _verify(db)
    assert not report.ok
    assert report.first_bad_seq == 10
    assert "removed" in report.problem


def test_emptying_the_log_is_caught(db):
    db.tamper("DELETE FROM audit_log")
    report = _verify(db)
    assert (report.ok, report.records, report.first_bad_seq) == (False, 0, 5)
    assert "removed" in report.problem


def test_a_forged_checkpoint_is_caught(db):
    db.tamper("UPDATE audit_checkpoint SET mac = 'f' || substr(mac, 2) WHERE seq = 5")
    report = _verify(db)
    assert not report.ok
    assert "MAC" in report.problem


def test_the_chain_continues_across_reopening_the_store(db):
    store = db.open_store()
    asyncio.run(store.append(audit_record("after-restart")))
    assert store.verify().ok
    store.close()
