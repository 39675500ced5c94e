"""Every audit store: append-only, in order, pseudonymised, and safe under concurrency (run against
SQLite and PostgreSQL, see conftest)."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from gateway.audit import AuditField, AuditUnavailable, Pseudonymiser
from tests.factories import (
    AUDIT_KEY,
    BREAK_GLASS_REASON,
    NHS,
    access,
    audit_record,
    break_glass_record,
)


@pytest.mark.anyio
async def test_appended_records_read_back_in_order_and_by_child(store):
    other = Pseudonymiser(AUDIT_KEY).ref("nhs", "9000000009")
    await store.append(audit_record("a1"))
    await store.append(audit_record("a2", child_ref=other))
    await store.append(audit_record("a3"))
    assert [r["audit_id"] for r in store.records()] == ["a1", "a2", "a3"]
    mine = store.records(child_refs=[Pseudonymiser(AUDIT_KEY).ref("nhs", NHS)])
    assert [r["audit_id"] for r in mine] == ["a1", "a3"]
    assert mine[0]["withheld"] == [{"source": "health", "field": "address", "reason": "SHIELDED"}]


@pytest.mark.anyio
async def test_the_log_never_holds_the_nhs_number_in_clear(backend, store):
    await store.append(audit_record("a1"))
    store.close()
    assert NHS.encode() not in backend.dump()


@pytest.mark.anyio
async def test_records_cannot_be_updated_or_deleted(backend, store):
    await store.append(audit_record("a1"))
    with pytest.raises(backend.error, match="append-only"):
        backend.execute("UPDATE audit_log SET outcome = 'NOT_FOUND'")
    with pytest.raises(backend.error, match="append-only"):
        backend.execute("DELETE FROM audit_log")
    assert len(store.records()) == 1


@pytest.mark.anyio
async def test_concurrent_appends_are_all_committed(store):
    await asyncio.gather(*(store.append(audit_record(f"c{i}")) for i in range(200)))
    assert len(store.records()) == 200


@pytest.mark.anyio
async def test_a_locked_store_raises_and_reports_not_writable(backend, store):
    await store.append(audit_record("before"))
    with backend.blocked():
        assert not store.is_writable()
        with pytest.raises(AuditUnavailable):
            await store.append(audit_record("during"))
    assert store.is_writable()
    await store.append(audit_record("after"))
    assert [r["audit_id"] for r in store.records()] == ["before", "after"]


@pytest.mark.anyio
async def test_duplicate_audit_id_fails_the_whole_batch_without_partial_writes(store):
    await store.append(audit_record("dup"))
    with pytest.raises(AuditUnavailable):
        await store.append(audit_record("dup"))
    assert [r["audit_id"] for r in store.records()] == ["dup"]


@pytest.mark.anyio
async def test_records_by_user_and_since(store):
    await store.append(audit_record("mine"))
    await store.append(audit_record("theirs", access=access(subject="dev:RR8:Other")))
    after = access().at.replace(year=2027)
    await store.append(audit_record("later", access=access(at=after)))

    assert [r["audit_id"] for r in store.records(subject="dev:RR8:Other")] == ["theirs"]
    assert [r["audit_id"] for r in store.records(since=after)] == ["later"]
    assert [r["audit_id"] for r in store.records(limit=2)] == ["mine", "theirs"]


@pytest.mark.anyio
@pytest.mark.parametrize("hours", [1, 5.5, -5, 14, -14])
async def test_since_is_the_same_instant_whatever_offset_it_is_written_with(store, hours):
    """A time with another offset names the same instant: in British summer time an auditor's
    filter from 16:00+01:00 is from 15:00Z, and must neither miss that hour nor see before it."""
    at = access().at
    await store.append(audit_record("before", access=access(at=at - timedelta(seconds=1))))
    glass = access(at=at, purpose="EMERGENCY_OVERRIDE", justification=BREAK_GLASS_REASON)
    await store.append(audit_record("at", access=glass, flagged_for_investigation=True))
    await store.append(audit_record("after", access=access(at=at + timedelta(hours=1))))
    offset = timezone(timedelta(hours=hours))

    since = at.astimezone(offset)

    assert [r["audit_id"] for r in store.records(since=since)] == ["at", "after"]
    assert [a["audit_id"] for a in store.alerts(since=since)] == ["at"]
    assert store.alerts(since=(at + timedelta(seconds=1)).astimezone(offset)) == []
    assert set(store.children_seen("dev:RR8:Hana", since)) == set(
        store.children_seen("dev:RR8:Hana", at)
    )


@pytest.mark.anyio
async def test_reading_on_from_the_last_time_read_skips_no_record_written_out_of_time_order(store):
    """Several gateways share a log, and one's record can take a later place (seq) than another's
    with an earlier time: read in place order, a page ending at the later time left it behind."""
    at = access().at
    for audit_id, seconds in (("first", 0), ("late", 2), ("early", 1), ("last", 3)):
        stamped = access(at=at + timedelta(seconds=seconds))
        await store.append(_break_glass_at(audit_id, stamped))

    page = store.records(limit=2)
    rest = store.records(since=datetime.fromisoformat(page[-1]["access"]["at"]), limit=10)
    alerts = store.alerts(limit=2)

    assert [r["audit_id"] for r in page] == ["first", "early"]
    assert [r["audit_id"] for r in rest] == ["early", "late", "last"]
    assert [a["audit_id"] for a in alerts] == ["first", "early"]


def _break_glass_at(audit_id, stamped):
    glass = access(at=stamped.at, purpose="EMERGENCY_OVERRIDE", justification=BREAK_GLASS_REASON)
    return audit_record(audit_id, access=glass, flagged_for_investigation=True)


@pytest.mark.anyio
async def test_a_since_past_what_utc_holds_is_the_first_or_last_time_there_is(store):
    await store.append(audit_record("only"))
    first = datetime.min.replace(tzinfo=timezone(timedelta(hours=14)))
    last = datetime.max.replace(tzinfo=timezone(timedelta(hours=-14)))

    assert [r["audit_id"] for r in store.records(since=first)] == ["only"]
    assert store.records(since=last) == []


@pytest.mark.anyio
async def test_children_seen_hold_the_links_of_lookups_that_showed_the_nhs_number(store):
    """Links of a lookup that released no NHS number - a search shield-safe search hid, or one
    whose policy withheld it - are not read: the cap must not tell what the lookup did not."""
    shown = [AuditField("health", "name"), AuditField("health", "nhs_number")]
    await store.append(audit_record("a1", released=shown, linked_refs=["upn:a", "upn:b"]))
    await store.append(audit_record("a2", released=shown, linked_refs=["upn:c"]))
    await store.append(audit_record("a3", child_ref="upn:a", linked_refs=[]))
    await store.append(audit_record("a4", child_ref="upn:d", linked_refs=["nhs:withheld"]))
    await store.append(
        audit_record(
            "a5", child_ref="search:s", outcome="HIDDEN", released=[], linked_refs=["nhs:hid"]
        )
    )
    mine = Pseudonymiser(AUDIT_KEY).ref("nhs", NHS)
    assert store.children_seen("dev:RR8:Hana", access().at) == {
        mine: {"upn:a", "upn:b", "upn:c"},
        "upn:a": set(),
        "upn:d": set(),
        "search:s": set(),
    }


@pytest.mark.anyio
async def test_children_seen_are_the_answered_lookups_of_one_user_since_a_time(store):
    other = Pseudonymiser(AUDIT_KEY).ref("nhs", "9000000009")
    mine = Pseudonymiser(AUDIT_KEY).ref("nhs", NHS)
    await store.append(audit_record("a1"))
    await store.append(audit_record("a2"))
    await store.append(audit_record("a3", child_ref=other))
    await store.append(audit_record("refused", child_ref="nhs:refused", outcome="REFUSED"))
    await store.append(audit_record("other-user", access=access(subject="dev:RR8:Other")))

    assert store.children_seen("dev:RR8:Hana", access().at) == {mine: set(), other: set()}
    assert store.children_seen("dev:RR8:Hana", access().at.replace(year=2027)) == {}


@pytest.mark.anyio
async def test_a_break_glass_alert_carries_the_justification(store):
    await store.append(audit_record("ordinary"))
    await store.append(break_glass_record("glass"))

    (alert,) = store.alerts()

    assert (alert["kind"], alert["audit_id"]) == ("BREAK_GLASS", "glass")
    assert alert["justification"] == BREAK_GLASS_REASON
    assert alert["at"] == access().at.isoformat()
    assert store.alerts(since=access().at.replace(year=2027)) == []


@pytest.mark.anyio
async def test_a_refused_break_glass_attempt_raises_an_alert_too(store):
    override = access(purpose="EMERGENCY_OVERRIDE", justification=None, role="gp")
    await store.append(audit_record("refused", access=override, outcome="DENIED"))
    await store.append(audit_record("ordinary-denied", access=access(role="gp"), outcome="DENIED"))

    (alert,) = store.alerts()

    assert (alert["kind"], alert["audit_id"], alert["role"]) == (
        "BREAK_GLASS_REFUSED",
        "refused",
        "gp",
    )
    assert alert["justification"] is None
    assert "child" not in " ".join(alert)


@pytest.mark.anyio
async def test_a_lookup_refused_at_a_usage_limit_raises_an_alert_of_that_kind(store):
    """Possible trawling, for information governance; limits that could not be checked are an
    outage, not an alert."""
    for audit_id, code in [
        ("minute", "RATE_LIMITED"),
        ("cap", "DISTINCT_CHILDREN_CAP"),
        ("outage", "LIMITS_UNAVAILABLE"),
    ]:
        refused = audit_record(audit_id, outcome="REFUSED", error_code=code, released=[])
        await store.append(refused)

    alerts = store.alerts()

    assert [(a["kind"], a["audit_id"]) for a in alerts] == [
        ("RATE_LIMITED", "minute"),
        ("DISTINCT_CHILDREN_CAP", "cap"),
    ]
    assert store.verify().ok


@pytest.mark.anyio
async def test_the_alerts_feed_gives_only_the_kinds_asked_for(store):
    await store.append(break_glass_record("glass"))
    await store.append(audit_record("minute", outcome="REFUSED", error_code="RATE_LIMITED"))

    def kinds(asked):
        return [a["kind"] for a in store.alerts(kinds=asked)]

    assert kinds(None) == ["BREAK_GLASS", "RATE_LIMITED"]
    assert kinds(["RATE_LIMITED"]) == ["RATE_LIMITED"]
    assert kinds(["BREAK_GLASS", "BREAK_GLASS_REFUSED"]) == ["BREAK_GLASS"]
    assert kinds([]) == []


@pytest.mark.anyio
async def test_the_alerts_feed_gives_at_most_the_limit_oldest_first(store):
    for n in range(3):
        refused = audit_record(f"refused-{n}", outcome="REFUSED", error_code="RATE_LIMITED")
        await store.append(refused)

    assert [a["audit_id"] for a in store.alerts(limit=2)] == ["refused-0", "refused-1"]
    assert len(store.alerts()) == 3
