"""The audit stage alone: a lookup's record as an auditor sees it, committed to a real store (each
of SQLite and PostgreSQL, see conftest).

The lookups audited here are made by the real plan and decide stages over the real policy; only
the connectors are left out (their answers are given).
"""

from __future__ import annotations

import logging
import uuid

import pytest

from connectors.protocol import RecordFlags
from gateway.audit import (
    HIDDEN,
    LookupAuditor,
    Pseudonymiser,
    failure_record,
    lookup_record,
)
from gateway.decide import decide
from gateway.errors import ErrorCode, GatewayError
from gateway.match import MatchResult
from gateway.plan import make_plan
from gateway.types import (
    Caller,
    LookupOutcome,
    LookupQuery,
    LookupResult,
    Purpose,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import (
    FULL_SOURCES,
    NHS,
    health_record,
    lookup_context,
    matched,
    social_care_record,
)

PSEUDONYMS = Pseudonymiser(b"p" * 32)
SOURCES = FULL_SOURCES
REASON = "Child brought in unconscious; mother says they are hiding from a violent ex-partner."


async def _lookup(role, purpose, *records, justification=None):
    """Plan and decide one lookup over the given (source, record) pairs, as the pipeline would."""
    query = LookupQuery(purpose=purpose, nhs_number=NHS, justification=justification)
    caller = Caller(f"dev:X1:{role}", "Pat Practitioner", role, "X1")
    lookup = lookup_context(query, caller, child_ref=PSEUDONYMS.child_ref(query))
    plan = await make_plan(lookup, SOURCES)
    if not plan.permitted:
        return lookup, plan, None, _result(lookup, (), outcome=LookupOutcome.DENIED)
    linked = tuple(matched(record, source) for source, record in records)
    answers = tuple(SourceAnswer(s.name, SourceStatus.ANSWERED, 1.0) for s in SOURCES)
    release = await decide(lookup, plan, MatchResult(answers, linked, {}, {}))
    result = _result(lookup, linked, answers=answers, withheld=release.withheld)
    return lookup, plan, release, result


def _result(lookup, matched, *, outcome=LookupOutcome.FOUND, answers=(), withheld=()):
    return LookupResult(
        request_id=lookup.request_id,
        audit_id=uuid.uuid4().hex,
        outcome=outcome,
        denial=None,
        policy_revision=lookup.policy_revision,
        answers=answers,
        matched=matched,
        withheld=withheld,
    )


@pytest.mark.anyio
async def test_a_found_lookup_is_recorded_by_pseudonym_with_fields_named_not_valued():
    plan_child = ("social_care", social_care_record())
    lookup, plan, release, result = await _lookup(
        "gp", Purpose.DIRECT_CARE, ("health", health_record()), plan_child
    )

    audited = lookup_record(lookup, plan, result, release, hidden=False, pseudonymiser=PSEUDONYMS)

    record = audited.record
    assert record.outcome == "FOUND"
    assert record.access.child_ref == PSEUDONYMS.ref("nhs", NHS)
    assert record.access.purpose == "DIRECT_CARE"
    assert record.decision_ids == [plan.decision_id, release.decision_id]
    assert ("health", "address") in {(f.source, f.field) for f in record.released}
    assert ("social_care", "child_in_need", "NOT_PERMITTED_FOR_ROLE") in {
        (f.source, f.field, f.reason) for f in record.withheld
    }
    assert {m.record_ref for m in record.matches} == {
        PSEUDONYMS.ref("record", "H1"),
        PSEUDONYMS.ref("record", "LA-000001"),
    }
    body = record.body()
    for personal in (NHS, "Amelia", "Hart", "LS6 2AB", "H1", "LA-000001"):
        assert personal not in body


@pytest.mark.anyio
async def test_the_owner_of_a_plan_is_notified_with_the_record_and_listed_in_it():
    lookup, plan, release, result = await _lookup(
        "ed_clinician", Purpose.DIRECT_CARE, ("social_care", social_care_record())
    )

    audited = lookup_record(lookup, plan, result, release, hidden=False, pseudonymiser=PSEUDONYMS)

    (message,) = audited.notifications
    (notice,) = audited.record.notified
    assert message.source == notice.source == "social_care"
    assert message.audit_id == result.audit_id
    assert notice.message_id == message.message_id
    assert list(notice.reasons) == ["CHILD_PROTECTION_PLAN"]


@pytest.mark.anyio
async def test_a_search_hidden_by_shield_safe_search_is_recorded_as_hidden():
    lookup, plan, release, result = await _lookup("gp", Purpose.DIRECT_CARE)

    audited = lookup_record(lookup, plan, result, release, hidden=True, pseudonymiser=PSEUDONYMS)

    assert result.outcome is LookupOutcome.FOUND
    assert audited.record.outcome == HIDDEN


@pytest.mark.anyio
async def test_only_a_permitted_override_is_flagged_for_investigation():
    shielded = ("social_care", social_care_record(flags=RecordFlags(shielded=True)))
    permitted = await _lookup(
        "social_worker", Purpose.EMERGENCY_OVERRIDE, shielded, justification=REASON
    )
    refused = await _lookup("gp", Purpose.EMERGENCY_OVERRIDE, shielded, justification=REASON)

    def flagged(lookup, plan, release, result):
        audited = lookup_record(
            lookup, plan, result, release, hidden=False, pseudonymiser=PSEUDONYMS
        )
        return audited.record.flagged_for_investigation

    assert permitted[1].permitted
    assert flagged(*permitted)
    assert not refused[1].permitted
    assert not flagged(*refused)


@pytest.mark.anyio
async def test_a_refusal_is_recorded_with_its_code_and_no_policy_revision():
    lookup, *_ = await _lookup("gp", Purpose.DIRECT_CARE)

    record = failure_record(lookup, "a-1", "REFUSED", "RATE_LIMITED")

    assert (record.outcome, record.error_code, record.policy_revision) == (
        "REFUSED",
        "RATE_LIMITED",
        None,
    )
    assert record.request_id == lookup.request_id
    assert record.access.child_ref == lookup.child_ref


@pytest.mark.anyio
async def test_the_stage_commits_the_record_with_its_notices_and_alerts_on_break_glass(
    store, outbox, caplog
):
    shielded = ("social_care", social_care_record(flags=RecordFlags(shielded=True)))
    lookup, plan, release, result = await _lookup(
        "social_worker", Purpose.EMERGENCY_OVERRIDE, shielded, justification=REASON
    )
    auditor = LookupAuditor(store, PSEUDONYMS)

    with caplog.at_level(logging.WARNING, logger="childlookup.alerts"):
        await auditor.commit(lookup, plan, result, release)

    (stored,) = store.records()
    assert stored["audit_id"] == result.audit_id
    assert stored["flagged_for_investigation"] is True
    assert [a["audit_id"] for a in store.alerts()] == [result.audit_id]
    assert {e.audit_id for e in outbox.entries()} == {result.audit_id}
    alert = next(r for r in caplog.records if r.getMessage() == "break-glass override")
    assert alert.context == {"audit_id": result.audit_id, "subject": lookup.caller.subject}


@pytest.mark.anyio
async def test_a_record_that_cannot_be_committed_is_audit_unavailable_and_a_failure_is_not(
    backend, store
):
    lookup, plan, release, result = await _lookup(
        "gp", Purpose.DIRECT_CARE, ("health", health_record())
    )
    auditor = LookupAuditor(store, PSEUDONYMS)
    with backend.blocked():
        with pytest.raises(GatewayError) as refused:
            await auditor.commit(lookup, plan, result, release)
        await auditor.failure(lookup, "ERROR", "POLICY_UNAVAILABLE")  # best effort: no raise

    assert refused.value.code is ErrorCode.AUDIT_UNAVAILABLE
    assert store.records() == []
