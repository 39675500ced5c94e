"""Owners see who looked: who may read a child's access history, and what the audit stores answer
it with (each store-backed test runs against SQLite and PostgreSQL, see conftest)."""

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.notifications import NotificationReason
from gateway.audit import (
    ACCESS_HISTORY_VIEWED,
    OWNER_REVIEW,
    OWNING_FIELDS,
    AccessHistory,
    AuditNotice,
    Pseudonymiser,
    SqliteAuditStore,
    owning_sources,
    upgrade_schema,
)
from gateway.audit.postgres import NOTIFIED_RECORDS as POSTGRES_NOTIFIED
from gateway.audit.queries import records_query
from gateway.audit.sqlite import NOTIFIED_RECORDS as SQLITE_NOTIFIED
from gateway.config import REPO_ROOT
from gateway.demo import reference_source
from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller
from tests.factories import AUDIT_KEY, CHECKPOINT_KEY, NHS, OTHER_NHS, access, audit_record

PSEUDONYMS = Pseudonymiser(AUDIT_KEY)
CHILD = PSEUDONYMS.ref("nhs", NHS)
OTHER_CHILD = PSEUDONYMS.ref("nhs", OTHER_NHS)
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

SOURCES = (
    reference_source("health", "http://127.0.0.1:1", organisations=["RR8"]),
    reference_source("education", "http://127.0.0.1:2", organisations=["URN-107000"]),
    reference_source("social_care", "http://127.0.0.1:3", organisations=["LA-LEEDS", "LA-LDS-EDT"]),
)
LEEDS = Caller("dev:LA-LEEDS:sam", "Sam Social", "social_worker", "LA-LEEDS")


def plan_notice(source: str = "social_care", *reasons: str) -> AuditNotice:
    return AuditNotice(source, list(reasons or ["CHILD_PROTECTION_PLAN"]), f"m-{source}")


def notified(audit_id: str, minutes: int, *notices: AuditNotice, child_ref: str = CHILD, **kw):
    """A lookup `minutes` after T0 whose owners were told as `notices` say."""
    return audit_record(
        audit_id,
        access=access(at=T0 + timedelta(minutes=minutes), child_ref=child_ref, **kw),
        notified=list(notices),
    )


# --- who may read it ---------------------------------------------------------------------------


def test_an_organisation_acting_for_a_source_that_holds_plans_owns_through_it():
    assert owning_sources("LA-LEEDS", SOURCES) == ("social_care",)
    assert owning_sources("LA-LDS-EDT", SOURCES) == ("social_care",)


@pytest.mark.parametrize(
    "organisation",
    ["RR8", "URN-107000", "LA-YORK", "LA-LEEDS-IG"],
    ids=["a source holding no plans", "a school", "another authority", "an auditor"],
)
def test_no_other_organisation_owns_anything(organisation):
    assert owning_sources(organisation, SOURCES) == ()


def test_a_source_with_no_organisations_is_read_by_no_one():
    bare = reference_source("social_care", "http://127.0.0.1:3")
    assert owning_sources("LA-LEEDS", [bare]) == ()


def test_the_owning_statuses_are_those_the_policy_notifies_their_holder_of():
    data = json.loads((REPO_ROOT / "policies" / "data.json").read_text())
    indicators = data["childlookup"]["owner_notification"]["indicators"]
    assert set(indicators) == {f.value for f in OWNING_FIELDS}


# --- what the stores answer ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_store_finds_a_childs_records_notified_to_a_source_newest_first(store):
    await store.append(notified("old", 1, plan_notice()))
    await store.append(notified("not-notified", 2))
    await store.append(notified("health-only", 3, plan_notice("health", "EMERGENCY_OVERRIDE")))
    await store.append(notified("other-child", 4, plan_notice(), child_ref=OTHER_CHILD))
    await store.append(notified("new", 5, plan_notice("health"), plan_notice()))

    found = store.notified_records([CHILD], ["social_care"], 10)

    assert [r["audit_id"] for r in found] == ["new", "old"]
    assert [r["audit_id"] for r in store.notified_records([CHILD], ["health"], 10)] == [
        "new",
        "health-only",
    ]
    assert [r["audit_id"] for r in store.notified_records([CHILD], ["social_care"], 1)] == ["new"]
    assert store.notified_records([CHILD], [], 10) == []


def test_sqlite_answers_from_the_childs_indexes(tmp_path):
    """The child's records looked up by it, and those reaching it (`audit_log_link`), each found
    through an index: the log is never read whole. The few found are then sorted."""
    SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY).close()
    conn = sqlite3.connect(tmp_path / "audit.sqlite3")
    statement = SQLITE_NOTIFIED.format(children="?", sources="?")  # one audit key, one source
    params = (CHILD, CHILD, "social_care", 25)
    plan = conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
    conn.close()
    details = [row[-1] for row in plan]
    assert "SEARCH audit_log USING INDEX audit_log_child (child_ref=?)" in details
    assert "SEARCH audit_log_link USING PRIMARY KEY (child_ref=?)" in details
    assert not [step for step in details if step.startswith("SCAN audit_log")]


def test_postgres_answers_from_the_childs_indexes(postgres_schema):
    """The owner's history and the auditors' trail of a child alike: two index scans ORed."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    trail = records_query(child_refs=[CHILD], subject=None, since=None, limit=25, postgres=True)
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("SET enable_seqscan = off")  # as on a log too large to read whole
        history = (POSTGRES_NOTIFIED.format(children="%s"), (CHILD, CHILD, ["social_care"], 25))
        for statement, params in (history, trail):
            plan = " ".join(row[0] for row in conn.execute("EXPLAIN " + statement, params))
            assert "Bitmap Index Scan on audit_log_child" in plan
            assert "Bitmap Index Scan on audit_log_link_pkey" in plan
            assert "Seq Scan" not in plan


# --- the owners' reading -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_owner_sees_who_looked_and_why_it_was_told(store):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    await store.append(notified("hv", 1, plan_notice()))
    await store.append(
        audit_record(
            "police",
            access=access(
                at=T0 + timedelta(minutes=2),
                purpose="EMERGENCY_OVERRIDE",
                role="police_safeguarding",
                organisation="WYP",
            ),
            notified=[plan_notice("social_care", "CHILD_PROTECTION_PLAN", "EMERGENCY_OVERRIDE")],
            flagged_for_investigation=True,
        )
    )

    seen = await history.for_child(LEEDS, ("nhs", NHS), limit=25)

    assert [a.audit_id for a in seen.accesses] == ["police", "hv"]
    assert not seen.more
    police, visitor = seen.accesses
    assert (police.access.role, police.access.organisation, police.access.purpose) == (
        "police_safeguarding",
        "WYP",
        "EMERGENCY_OVERRIDE",
    )
    assert police.override is True
    assert police.reasons == (
        NotificationReason.CHILD_PROTECTION_PLAN,
        NotificationReason.EMERGENCY_OVERRIDE,
    )
    assert (visitor.access.role, visitor.access.organisation, visitor.access.name) == (
        "health_visitor",
        "RR8",
        "Hana",
    )
    assert (visitor.access.purpose, visitor.outcome, visitor.override) == (
        "SAFEGUARDING_ENQUIRY",
        "FOUND",
        False,
    )
    assert visitor.access.at == T0 + timedelta(minutes=1)


@pytest.mark.anyio
async def test_the_owner_never_sees_accesses_told_to_another_agency(store):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    await store.append(notified("to-health", 1, plan_notice("health", "EMERGENCY_OVERRIDE")))
    await store.append(notified("untold", 2))

    seen = await history.for_child(LEEDS, ("nhs", NHS), limit=25)

    assert seen.accesses == ()


@pytest.mark.anyio
async def test_a_history_past_the_limit_says_there_is_more(store):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    for i in range(4):
        await store.append(notified(f"a{i}", i, plan_notice()))

    seen = await history.for_child(LEEDS, ("nhs", NHS), limit=3)

    assert [a.audit_id for a in seen.accesses] == ["a3", "a2", "a1"]
    assert seen.more


@pytest.mark.anyio
async def test_reading_is_audited_as_an_owner_review_that_notifies_no_one(store):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    await store.append(notified("hv", 1, plan_notice()))

    await history.for_child(LEEDS, ("nhs", NHS), limit=25)
    seen = await history.for_child(LEEDS, ("nhs", NHS), limit=25)

    reviews = [
        r for r in store.records(child_refs=[CHILD]) if r["access"]["purpose"] == OWNER_REVIEW
    ]
    assert len(reviews) == 2
    assert {r["outcome"] for r in reviews} == {ACCESS_HISTORY_VIEWED}
    assert reviews[0]["access"]["organisation"] == "LA-LEEDS"
    assert reviews[0]["notified"] == []
    assert [a.audit_id for a in seen.accesses] == ["hv"]  # a reading is no access to report


@pytest.mark.anyio
@pytest.mark.parametrize("organisation", ["RR8", "URN-107000", "LA-YORK", "LA-LEEDS-IG"])
async def test_anyone_else_is_refused_and_nothing_is_read_or_written(store, organisation):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    await store.append(notified("hv", 1, plan_notice()))
    stranger = Caller(f"dev:{organisation}:x", "X", "social_worker", organisation)

    with pytest.raises(GatewayError) as refused:
        await history.for_child(stranger, ("nhs", NHS), limit=25)

    assert refused.value.code is ErrorCode.NOT_THE_OWNER
    assert len(store.records()) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [0, 101])
async def test_a_limit_out_of_range_is_refused(store, limit):
    history = AccessHistory(store, PSEUDONYMS, SOURCES)
    with pytest.raises(GatewayError) as refused:
        await history.for_child(LEEDS, ("nhs", NHS), limit=limit)
    assert refused.value.code is ErrorCode.BAD_USER_INPUT
