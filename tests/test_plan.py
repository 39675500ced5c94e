"""The plan stage alone: the real policy bundle decides, no connector or HTTP server is involved."""

from __future__ import annotations

import json

import pytest

from connectors.protocol import FieldId
from gateway.config import SourceConfig
from gateway.plan import make_plan
from gateway.policy import (
    DecisionLog,
    PlanDecision,
    PlanInput,
    ReleaseDecision,
    ReleaseInput,
)
from gateway.types import Caller, LookupQuery, Purpose
from tests.factories import NHS, lookup_context

HEALTH = SourceConfig(
    name="health",
    url="http://127.0.0.1:1",
    provides=("name", "address", "gp_practice", "involvements", "sensitive_service_details"),
)
SOCIAL_CARE = SourceConfig(
    name="social_care",
    url="http://127.0.0.1:2",
    provides=("name", "carers", "child_protection_plan", "looked_after", "early_help"),
    shield_authority=True,
)
SOURCES = (HEALTH, SOCIAL_CARE)


def _lookup(role: str, purpose: Purpose, justification: str | None = None):
    query = LookupQuery(purpose=purpose, nhs_number=NHS, justification=justification)
    return lookup_context(query, Caller("dev:X:u", "U", role, "X1"))


@pytest.mark.anyio
async def test_a_permitted_plan_asks_the_configured_sources_for_the_granted_fields():
    plan = await make_plan(_lookup("health_visitor", Purpose.DIRECT_CARE), SOURCES)

    assert plan.permitted
    assert plan.denial is None
    assert set(plan.sources) == {"health", "social_care"}
    assert {FieldId.ADDRESS, FieldId.GP_PRACTICE, FieldId.NAME} <= plan.fields
    # DIRECT_CARE grants a health visitor no indicators to see...
    assert FieldId.CHILD_PROTECTION_PLAN not in plan.fields
    # ...but they are fetched so that the local authority can be told of the lookup.
    assert FieldId.CHILD_PROTECTION_PLAN in plan.obligation_fields
    assert plan.shield_authorities == {"social_care"}


@pytest.mark.anyio
async def test_what_a_source_provides_beyond_the_plan_is_listed_except_sensitive_details():
    plan = await make_plan(_lookup("health_visitor", Purpose.DIRECT_CARE), SOURCES)

    assert plan.unrequested["social_care"] == {
        FieldId.CHILD_PROTECTION_PLAN,
        FieldId.LOOKED_AFTER,
        FieldId.EARLY_HELP,
    }
    assert FieldId.SENSITIVE_SERVICE_DETAILS not in plan.unrequested["health"]
    assert not plan.unrequested["health"] & plan.fields


@pytest.mark.anyio
async def test_a_purpose_the_role_is_not_granted_is_refused_and_asks_no_one():
    plan = await make_plan(_lookup("school_dsl", Purpose.DIRECT_CARE), SOURCES)

    assert not plan.permitted
    assert plan.denial == "PURPOSE_NOT_PERMITTED"
    assert plan.sources == ()
    assert plan.fields == frozenset()
    assert plan.unrequested == {}


@pytest.mark.anyio
async def test_a_purpose_needing_a_justification_is_refused_without_one():
    unjustified = await make_plan(
        _lookup("social_worker", Purpose.CHILD_PROTECTION_ENQUIRY), SOURCES
    )
    justified = await make_plan(
        _lookup(
            "social_worker",
            Purpose.CHILD_PROTECTION_ENQUIRY,
            "Section 47 enquiry opened after a disclosure at school this morning.",
        ),
        SOURCES,
    )

    assert unjustified.denial == "JUSTIFICATION_REQUIRED"
    assert justified.permitted


class _NamesAGhost:
    """A policy that plans a source the gateway has no connector for."""

    revision = "ghost-1"

    async def plan(self, request: PlanInput) -> PlanDecision:
        return PlanDecision(
            permitted=True,
            denial=None,
            fields=(FieldId.NAME,),
            obligation_fields=(),
            sources=("ghost", "health"),
        )

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        raise AssertionError("the plan stage never asks for a release")


@pytest.mark.anyio
async def test_a_source_the_policy_names_but_nobody_configured_is_ignored():
    lookup = lookup_context(
        LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=NHS), policy=_NamesAGhost()
    )

    plan = await make_plan(lookup, SOURCES)

    assert plan.sources == ("health",)
    assert set(plan.unrequested) == {"health"}


@pytest.mark.anyio
async def test_the_plan_carries_the_id_of_its_logged_decision(tmp_path):
    log_file = tmp_path / "decisions.jsonl"
    log = DecisionLog.open(str(log_file), instance="t")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=NHS)
    lookup = lookup_context(query, Caller("dev:X:u", "U", "gp", "X1"), decision_log=log)

    plan = await make_plan(lookup, SOURCES)
    log.close()

    (entry,) = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert entry["decision_id"] == plan.decision_id
    assert entry["path"] == "childlookup/plan/decision"
    assert entry["input"]["caller"] == {"role": "gp", "organisation": "X1"}
    assert entry["result"]["permitted"] is True
