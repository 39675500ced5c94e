import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from gateway.audit import (
    Access,
    AuditField,
    AuditRecord,
    AuditSource,
    AuditUnavailable,
    Pseudonymiser,
    SqliteAuditStore,
)

KEY = b"k" * 32
CHECKPOINT_KEY = b"c" * 32
NHS = "9434765919"


def _record(audit_id: str, child_ref: str | None = None) -> AuditRecord:
    return AuditRecord(
        access=Access(
            at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
            subject="dev:RR8:Hana",
            name="Hana",
            role="health_visitor",
            organisation="RR8",
            purpose="SAFEGUARDING_ENQUIRY",
            justification="home visit concern",
            child_ref=child_ref or Pseudonymiser(KEY).ref("nhs", NHS),
        ),
        audit_id=audit_id,
        request_id="r-" + audit_id,
        outcome="FOUND",
        denial=None,
        error_code=None,
        policy_revision="rev-1",
        sources=[AuditSource("health", "ANSWERED", None, 1, False)],
        released=[AuditField("health", "name")],
        withheld=[AuditField("health", "address", "SHIELDED")],
    )


@pytest.fixture
def store(tmp_path):
    s = SqliteAuditStore(
        tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5
    )
    yield s
    s.close()


def test_pseudonyms_are_stable_per_key_and_differ_across_keys():
    a, b = Pseudonymiser(KEY), Pseudonymiser(b"x" * 32)
    assert a.ref("nhs", NHS) == a.ref("nhs", NHS)
    assert a.ref("nhs", NHS) != b.ref("nhs", NHS)
    assert a.ref("nhs", NHS) != a.ref("record", NHS)
    assert NHS not in a.ref("nhs", NHS)


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymiser(b"short")


@pytest.mark.anyio
async def test_appended_records_read_back_in_order_and_by_child(store):
    other = Pseudonymiser(KEY).ref("nhs", "9000000009")
    await store.append(_record("a1"))
    await store.append(_record("a2", child_ref=other))
    await store.append(_record("a3"))
    assert [r["audit_id"] for r in store.records()] == ["a1", "a2", "a3"]
    mine = store.records(child_ref=Pseudonymiser(KEY).ref("nhs", NHS))
    assert [r["audit_id"] for r in mine] == ["a1", "a3"]
    assert mine[0]["withheld"] == [{"source": "health", "field": "address", "reason": "SHIELDED"}]


@pytest.mark.anyio
async def test_the_log_file_never_holds_the_nhs_number_in_clear(store):
    await store.append(_record("a1"))
    store.close()
    assert NHS.encode() not in store.path.read_bytes()


@pytest.mark.anyio
async def test_records_cannot_be_updated_or_deleted(store):
    await store.append(_record("a1"))
    raw = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_log SET outcome = 'NOT_FOUND'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_log")
    raw.close()
    assert len(store.records()) == 1


@pytest.mark.anyio
async def test_concurrent_appends_are_all_committed(store):
    await asyncio.gather(*(store.append(_record(f"c{i}")) for i in range(200)))
    assert len(store.records()) == 200


@pytest.mark.anyio
async def test_a_locked_store_raises_and_reports_not_writable(store):
    await store.append(_record("before"))
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert not store.is_writable()
        with pytest.raises(AuditUnavailable):
            await store.append(_record("during"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.is_writable()
    await store.append(_record("after"))
    assert [r["audit_id"] for r in store.records()] == ["before", "after"]


@pytest.mark.anyio
async def test_duplicate_audit_id_fails_the_whole_batch_without_partial_writes(store):
    await store.append(_record("dup"))
    with pytest.raises(AuditUnavailable):
        await store.append(_record("dup"))
    assert [r["audit_id"] for r in store.records()] == ["dup"]
