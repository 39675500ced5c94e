"""The SQLite audit store: append-only, in order, pseudonymised, and safe under concurrency."""

import asyncio
import sqlite3

import pytest

from gateway.audit import AuditRecord, AuditUnavailable, Pseudonymiser, SqliteAuditStore
from tests.factories import AUDIT_KEY, CHECKPOINT_KEY, NHS, access, audit_record


@pytest.fixture
def store(tmp_path):
    s = SqliteAuditStore(
        tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5
    )
    yield s
    s.close()


@pytest.mark.anyio
async def test_appended_records_read_back_in_order_and_by_child(store):
    other = Pseudonymiser(AUDIT_KEY).ref("nhs", "9000000009")
    await store.append(audit_record("a1"))
    await store.append(audit_record("a2", child_ref=other))
    await store.append(audit_record("a3"))
    assert [r["audit_id"] for r in store.records()] == ["a1", "a2", "a3"]
    mine = store.records(child_ref=Pseudonymiser(AUDIT_KEY).ref("nhs", NHS))
    assert [r["audit_id"] for r in mine] == ["a1", "a3"]
    assert mine[0]["withheld"] == [{"source": "health", "field": "address", "reason": "SHIELDED"}]


@pytest.mark.anyio
async def test_the_log_file_never_holds_the_nhs_number_in_clear(store):
    await store.append(audit_record("a1"))
    store.close()
    assert NHS.encode() not in store.path.read_bytes()


@pytest.mark.anyio
async def test_records_cannot_be_updated_or_deleted(store):
    await store.append(audit_record("a1"))
    raw = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_log SET outcome = 'NOT_FOUND'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_log")
    raw.close()
    assert len(store.records()) == 1


@pytest.mark.anyio
async def test_concurrent_appends_are_all_committed(store):
    await asyncio.gather(*(store.append(audit_record(f"c{i}")) for i in range(200)))
    assert len(store.records()) == 200


@pytest.mark.anyio
async def test_a_locked_store_raises_and_reports_not_writable(store):
    await store.append(audit_record("before"))
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert not store.is_writable()
        with pytest.raises(AuditUnavailable):
            await store.append(audit_record("during"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.is_writable()
    await store.append(audit_record("after"))
    assert [r["audit_id"] for r in store.records()] == ["before", "after"]


@pytest.mark.anyio
async def test_duplicate_audit_id_fails_the_whole_batch_without_partial_writes(store):
    await store.append(audit_record("dup"))
    with pytest.raises(AuditUnavailable):
        await store.append(audit_record("dup"))
    assert [r["audit_id"] for r in store.records()] == ["dup"]


REASON = "Child reported missing; police need the current address now."


def _break_glass(audit_id: str) -> AuditRecord:
    return audit_record(
        audit_id,
        access=access(purpose="EMERGENCY_OVERRIDE", justification=REASON),
        flagged_for_investigation=True,
    )


@pytest.mark.anyio
async def test_a_break_glass_alert_carries_the_justification(store):
    await store.append(audit_record("ordinary"))
    await store.append(_break_glass("glass"))

    (alert,) = store.alerts()

    assert alert["audit_id"] == "glass"
    assert alert["justification"] == REASON


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
        await store.append(_break_glass("new"))
        alerts = store.alerts()
    finally:
        store.close()

    assert [(a["audit_id"], a["justification"]) for a in alerts] == [
        ("old", None),
        ("new", REASON),
    ]
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_alert SET justification = 'edited'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_alert")
    raw.close()
