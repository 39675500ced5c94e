"""The decide stage alone: matched records in, what may leave the gateway out.

The real policy bundle decides unless a test needs an answer the real policy never gives (then a
scripted engine stands in for the policy, not for anything of the gateway's).
"""

from __future__ import annotations

from datetime import date

import pytest

from connectors.protocol import FieldId, RecordFlags
from gateway.decide import POLICY_UNDECIDED, decide
from gateway.policy import (
    PlanDecision,
    PlanInput,
    ReleaseDecision,
    ReleasedField,
    ReleaseInput,
)
from gateway.types import (
    LookupQuery,
    Plan,
    Purpose,
)
from tests.factories import (
    LOCATION_FIELDS,
    NHS,
    answered,
    decided,
    health_record,
    lookup_context,
    matched,
    social_care_record,
)

LOCATION = LOCATION_FIELDS


def _withheld(release, source):
    return {w.field: w.reason for w in release.withheld if w.source == source}


@pytest.mark.anyio
async def test_fields_the_role_may_not_see_are_cut_from_the_record_and_listed_with_a_reason():
    health = matched(health_record(), "health")
    la = matched(social_care_record(), "social_care")

    release = await decided("gp", Purpose.DIRECT_CARE, answered(health, la))

    la_release = next(r for r in release.records if r.matched.source == "social_care")
    assert FieldId.CHILD_PROTECTION_PLAN in la_release.fields
    assert la_release.record.indicators is not None
    assert la_release.record.indicators.child_protection_plan is True
    # A GP is granted the plan indicator but not child in need: it is cut, not just hidden.
    assert la_release.record.indicators.child_in_need is None
    assert _withheld(release, "social_care")[FieldId.CHILD_IN_NEED] == "NOT_PERMITTED_FOR_ROLE"
    assert release.flags.shield_status_known


@pytest.mark.anyio
async def test_one_shielding_record_withholds_location_from_every_record():
    health = matched(health_record(), "health")
    la = matched(social_care_record(flags=RecordFlags(shielded=True)), "social_care")

    release = await decided("gp", Purpose.DIRECT_CARE, answered(health, la))

    assert release.flags.shielded
    health_withheld = _withheld(release, "health")
    assert {f for f, reason in health_withheld.items() if reason == "SHIELDED"} >= LOCATION
    assert set(health_withheld.values()) == {"SHIELDED"}  # whatever else was asked, too
    health_release = next(r for r in release.records if r.matched.source == "health")
    assert health_release.record.address is None
    assert FieldId.NAME in health_release.fields
    assert health_release.record.name is not None


@pytest.mark.anyio
async def test_a_silent_shield_authority_withholds_location_as_if_shielded():
    health = matched(health_record(), "health")

    release = await decided("gp", Purpose.DIRECT_CARE, answered(health, silent={"social_care"}))

    assert not release.flags.shield_status_known
    assert _withheld(release, "health")[FieldId.ADDRESS] == "SHIELD_STATUS_UNKNOWN"
    assert release.records[0].record.address is None


@pytest.mark.anyio
async def test_sensitive_service_details_are_withheld_even_when_the_connector_left_them_out():
    named = matched(health_record(), "health")
    brokered_involvements = [
        i.model_copy(update={"service": None, "organisation": None, "practitioner": None})
        if i.sensitive
        else i
        for i in health_record().involvements or []
    ]
    brokered = matched(health_record(involvements=brokered_involvements), "health")

    for record in (named, brokered):
        release = await decided("gp", Purpose.DIRECT_CARE, answered(record))
        assert _withheld(release, "health")[FieldId.SENSITIVE_SERVICE_DETAILS] == (
            "SENSITIVE_SERVICE"
        )


@pytest.mark.anyio
async def test_a_sensitive_involvements_start_date_is_withheld_with_its_details():
    # As a connector that drops the provider but not the dates would send it.
    dated = [
        i.model_copy(
            update={
                "service": None,
                "organisation": None,
                "practitioner": None,
                "since": date(2025, 1, 6),
            }
        )
        if i.sensitive
        else i.model_copy(update={"since": date(2024, 3, 1)})
        for i in health_record().involvements or []
    ]
    health = matched(health_record(involvements=dated), "health")

    release = await decided("social_worker", Purpose.SAFEGUARDING_ENQUIRY, answered(health))

    involvements = release.records[0].record.involvements or []
    assert [(i.sensitive, i.since) for i in involvements] == [
        (False, date(2024, 3, 1)),
        (True, None),
    ]
    assert _withheld(release, "health")[FieldId.SENSITIVE_SERVICE_DETAILS] == ("SENSITIVE_SERVICE")


@pytest.mark.anyio
async def test_fields_the_plan_left_out_are_reported_withheld_for_this_purpose():
    la = matched(social_care_record(), "social_care")

    release = await decided("health_visitor", Purpose.DIRECT_CARE, answered(la))

    # Fetched for the owner-notification obligation, never shown for it.
    assert _withheld(release, "social_care")[FieldId.CHILD_PROTECTION_PLAN] in {
        "NOT_PERMITTED_FOR_PURPOSE",
        "NOT_PERMITTED_FOR_ROLE",
    }
    assert release.records[0].record.indicators is None


class _ReleasesOnlyTheName:
    """A policy that releases each record's name and says nothing about any other field."""

    revision = "name-only"

    async def plan(self, request: PlanInput) -> PlanDecision:
        raise AssertionError("the decide stage never asks for a plan")

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        return ReleaseDecision(
            released=tuple(ReleasedField(record=r.id, field=FieldId.NAME) for r in request.records),
            withheld=(),
            notify=(),
        )


@pytest.mark.anyio
async def test_a_field_the_policy_does_not_decide_is_withheld_and_the_nhs_number_dropped():
    health = matched(health_record(), "health")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=NHS)
    lookup = lookup_context(query, policy=_ReleasesOnlyTheName())
    plan = Plan(True, None, frozenset(FieldId), ("health",), "plan-1")

    release = await decide(lookup, plan, answered(health))

    (record,) = release.records
    assert record.fields == {FieldId.NAME}
    assert record.record.identifiers.nhs_number is None
    assert record.record.date_of_birth is None
    assert _withheld(release, "health")[FieldId.NHS_NUMBER] == POLICY_UNDECIDED
    assert _withheld(release, "health")[FieldId.DATE_OF_BIRTH] == POLICY_UNDECIDED


class _ReleasesEverything:
    """A release policy in error (or a policy server answering wrongly): every field released."""

    revision = "all"

    async def plan(self, request: PlanInput) -> PlanDecision:
        raise AssertionError("the decide stage never asks for a plan")

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        every = (ReleasedField(record=r.id, field=f) for r in request.records for f in r.fields)
        return ReleaseDecision(released=tuple(every), withheld=(), notify=())


@pytest.mark.anyio
async def test_a_field_the_plan_did_not_allow_is_never_released_whatever_the_release_says():
    """A record holds more than the plan allowed where a search needs it for matching (name,
    date of birth, sex, address) or an obligation does (a protection plan): both decisions must
    allow a field."""
    health = matched(health_record(), "health")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=NHS)
    lookup = lookup_context(query, policy=_ReleasesEverything())
    allowed = frozenset({FieldId.NAME, FieldId.NHS_NUMBER})
    plan = Plan(True, None, allowed, ("health",), "plan-1")

    release = await decide(lookup, plan, answered(health))

    (record,) = release.records
    assert record.fields == allowed
    assert record.record.address is None
    assert record.record.date_of_birth is None
    assert _withheld(release, "health")[FieldId.ADDRESS] == POLICY_UNDECIDED
