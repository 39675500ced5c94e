"""The decide stage's notification obligation: the policy obliges the gateway to tell the agency
holding a child's protection plan, whether or not the caller may see the plan, and an obligation
naming a record the lookup lacks releases nothing."""

from __future__ import annotations

import pytest

from connectors.notifications import NotificationReason
from gateway.decide import decide
from gateway.match import MatchResult
from gateway.policy import PolicyError, RegoPolicyEngine
from gateway.types import Caller, LookupQuery, MatchedRecord, OwnerNotice, Plan, Purpose
from tests.factories import (
    POLICY_DIR,
    health_record,
    lookup_context,
    matched,
    social_care_record,
    synthetic_nhs,
    write_bundle,
)

ON_A_PLAN = synthetic_nhs(31)


@pytest.mark.anyio
async def test_decide_carries_the_obligation_to_notify_the_holder_of_a_plan(tmp_path):
    policy = RegoPolicyEngine.from_directory(POLICY_DIR)
    la = matched(social_care_record(ON_A_PLAN), "social_care")
    health = matched(health_record(ON_A_PLAN), "health")
    caller = Caller("dev:RR8:hana", "Hana", "health_visitor", "RR8")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=ON_A_PLAN)
    lookup = lookup_context(query, caller, policy=policy)

    release = await decide(lookup, _plan(), _matching(health, la))

    # The health visitor may not see the plan for direct care: given the indicator, the stage
    # withholds it and still obliges the gateway to tell the local authority.
    assert all(r.record.indicators is None for r in release.records)
    assert release.notify == (OwnerNotice(la, (NotificationReason.CHILD_PROTECTION_PLAN,)),)


@pytest.mark.anyio
async def test_an_obligation_naming_a_record_the_lookup_lacks_releases_nothing(tmp_path):
    release = (
        "package childlookup.release\n\nimport rego.v1\n\n"
        'decision := {"released": [], "withheld": [],'
        ' "notify": [{"record": "7", "reason": "LOOKED_AFTER"}]}\n'
    )
    plan = (POLICY_DIR / "plan.rego").read_text()
    write_bundle(tmp_path, {"plan.rego": plan, "release.rego": release})
    policy = RegoPolicyEngine.from_directory(tmp_path)
    caller = Caller("dev:RX1:eddie", "Eddie", "ed_clinician", "RX1")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=ON_A_PLAN)
    lookup = lookup_context(query, caller, policy=policy)
    la = matched(social_care_record(ON_A_PLAN), "social_care")

    with pytest.raises(PolicyError, match="names a record the lookup lacks"):
        await decide(lookup, _plan(), _matching(la))


def _plan() -> Plan:
    """A plan that asked for nothing more than the records hold, with no shield authority."""
    return Plan(True, None, frozenset(), (), "plan-1")


def _matching(*records: MatchedRecord) -> MatchResult:
    return MatchResult(answers=(), matched=records, unmatched={}, possible={})
