"""A shield or restriction authority the plan left out is doubt, not a clear child.

plan.rego asks every shield authority and every source holding the NHS restricted flag, whatever
the caller may see of them. The gateway must not take that on trust: a policy officer's edit, or
an OPA bundle that differs, may leave one out, and an authority never asked says nothing of the
child. Counted as "every authority among the answers answered", it was simply absent - an agency
asked only when routed, of a kind the plan left out, has no answer at all - and the child's
shielding read as known: a shielded child's address was released.

Real components: the project's policy bundle, or a copy of it with the rules that ask the
authorities removed, and the plan, match and decide stages.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import date

import pytest

from connectors.protocol import Demographics, FieldId, RecordFlags
from gateway.config import Asked, SourceConfig
from gateway.decide import decide
from gateway.linkage import LinkageModel
from gateway.match import match_records
from gateway.plan import Planning, make_plan
from gateway.policy import RegoPolicyEngine
from gateway.shield_safe import shield_safe
from gateway.types import (
    LOCATOR_SOURCE,
    Caller,
    IdentifiedBy,
    LookupQuery,
    Plan,
    Purpose,
    Release,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import NHS, POLICY_DIR, health_record, lookup_context, social_care_record

IDENTITY = (FieldId.NHS_NUMBER, FieldId.NAME, FieldId.DATE_OF_BIRTH)
"""What an authority consulted only for its flags provides: nothing the caller is asked to see
beyond identity, so only the rules for authorities make the plan ask it."""

HEALTH = SourceConfig(name="health", url="http://127.0.0.1:1", provides=tuple(FieldId))
SHIELD_REGISTER = SourceConfig(
    name="shield_register", url="http://127.0.0.1:2", provides=IDENTITY, shield_authority=True
)
SPINE_FLAGS = SourceConfig(
    name="spine_flags", url="http://127.0.0.1:3", provides=IDENTITY, restriction_authority=True
)
AUTHORITIES = tuple(
    SourceConfig(
        name=name,
        url=f"http://127.0.0.1:4/{name}",
        provides=IDENTITY,
        kind="social_care",
        asked=Asked.WHEN_ROUTED,
        routes=(route,),
        shield_authority=True,
    )
    for name, route in (("la_e0800001", "la:E0800001"), ("la_e0800002", "la:E0800002"))
)

SOCIAL_WORKER = Caller("dev:X:u", "U", "social_worker", "X1")
BY_NHS = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, nhs_number=NHS)
BY_DEMOGRAPHICS = LookupQuery(
    purpose=Purpose.SAFEGUARDING_ENQUIRY,
    demographics=Demographics(
        given="Amelia", family="Hart", date_of_birth=date(2019, 3, 4), postcode="LS6 2AB"
    ),
)
AUTHORITY_RULES = (
    "is_worth_asking(source) if source.shield_authority == true\n",
    "is_worth_asking(source) if source.restriction_authority == true\n",
)


@pytest.fixture(scope="module")
def edited_policy(tmp_path_factory: pytest.TempPathFactory) -> RegoPolicyEngine:
    """The project's bundle with the rules that ask shield and restriction authorities removed."""
    directory = tmp_path_factory.mktemp("authorities-not-asked") / "policies"
    shutil.copytree(POLICY_DIR, directory)
    plan = directory / "plan.rego"
    text = plan.read_text()
    for rule in AUTHORITY_RULES:
        assert rule in text, "plan.rego no longer asks authorities by this rule"
        text = text.replace(rule, "")
    plan.write_text(text)
    return RegoPolicyEngine.from_directory(directory)


async def _plan(
    policy: RegoPolicyEngine | None, planning: Planning, query: LookupQuery = BY_NHS
) -> Plan:
    plan = await make_plan(lookup_context(query, SOCIAL_WORKER, policy=policy), planning)
    assert plan.permitted
    return plan


async def _decided(
    policy: RegoPolicyEngine | None,
    plan: Plan,
    answers: Sequence[SourceAnswer],
    *also: SourceAnswer,
) -> Release:
    """Match `answers` to the child with NHS number NHS and decide; `also` are answers that
    carry no records to match (the locator's), as the routing stage adds them."""
    matching = match_records(BY_NHS, answers, None)
    matching = replace(matching, answers=(*matching.answers, *also))
    return await decide(lookup_context(BY_NHS, SOCIAL_WORKER, policy=policy), plan, matching)


def _addresses(release: Release) -> list[object]:
    return [r.record.address for r in release.records if FieldId.ADDRESS in r.fields]


def _address_withheld(release: Release) -> set[str]:
    return {w.reason for w in release.withheld if w.field is FieldId.ADDRESS}


def _health() -> SourceAnswer:
    return SourceAnswer("health", SourceStatus.ANSWERED, 1.0, (health_record(),))


# --- an agency asked only when routed, of a kind the plan left out -----------------------------


@pytest.mark.anyio
async def test_a_routed_shield_authority_the_plan_left_out_leaves_shielding_in_doubt(
    edited_policy,
):
    """National routing: the local authorities are asked only when the locator or a route names
    them, and only if the plan chose their kind. The edited plan does not: none is asked, none is
    in the answers, the locator answered - and the child read as not shielded."""
    planning = Planning.of((HEALTH, *AUTHORITIES), locator=True)
    plan = await _plan(edited_policy, planning)
    assert "social_care" not in plan.sources  # the edit bites: no authority would be asked

    release = await _decided(
        edited_policy, plan, [_health()], SourceAnswer(LOCATOR_SOURCE, SourceStatus.ANSWERED)
    )

    assert release.flags.shield_status_known is False
    assert _addresses(release) == []
    assert _address_withheld(release) == {"SHIELD_STATUS_UNKNOWN"}


@pytest.mark.anyio
async def test_the_real_policy_asks_the_routed_authorities_and_their_silence_is_not_doubt():
    """The project's policy plans the authorities' kind, and an authority no route named is not
    asked by any plan: the locator, which answered, speaks for it. The address is released."""
    planning = Planning.of((HEALTH, *AUTHORITIES), locator=True)
    plan = await _plan(None, planning)
    assert "social_care" in plan.sources

    release = await _decided(
        None, plan, [_health()], SourceAnswer(LOCATOR_SOURCE, SourceStatus.ANSWERED)
    )

    assert release.flags.shield_status_known is True
    assert len(_addresses(release)) == 1


# --- a source asked on every lookup, left out of the plan ---------------------------------------


NHS = (IdentifiedBy.NHS_NUMBER,)


def _as_fanout_answers(plan: Plan, *sources: SourceConfig) -> list[SourceAnswer]:
    """The fan-out stage's answers for sources asked on every lookup (by NHS number): NOT_ASKED
    where the plan left the source out; the health source answering with the child's record."""
    asked = [s for s in sources if s.name in plan.sources]
    return [
        _health() if s is HEALTH else SourceAnswer(s.name, SourceStatus.NO_RECORD, asked_with=NHS)
        for s in asked
    ] + [SourceAnswer(s.name, SourceStatus.NOT_ASKED) for s in sources if s not in asked]


@pytest.mark.anyio
@pytest.mark.parametrize("absent", [False, True], ids=["not-asked", "absent"])
async def test_a_shield_authority_the_plan_left_out_leaves_shielding_in_doubt(
    edited_policy, absent
):
    """Asked on every lookup, an authority left out is answered NOT_ASKED by the fan-out stage,
    which already reads as doubt; the decide stage must not depend on that placeholder being
    there (`absent`): the plan alone says the authority was not asked."""
    plan = await _plan(edited_policy, Planning.of((HEALTH, SHIELD_REGISTER)))
    assert "shield_register" not in plan.sources
    answers = _as_fanout_answers(plan, HEALTH, SHIELD_REGISTER)
    if absent:
        answers = [a for a in answers if a.status is not SourceStatus.NOT_ASKED]

    release = await _decided(edited_policy, plan, answers)

    assert release.flags.shield_status_known is False
    assert _addresses(release) == []
    assert _address_withheld(release) == {"SHIELD_STATUS_UNKNOWN"}


@pytest.mark.anyio
@pytest.mark.parametrize("absent", [False, True], ids=["not-asked", "absent"])
async def test_a_restriction_authority_the_plan_left_out_leaves_the_restriction_in_doubt(
    edited_policy, absent
):
    plan = await _plan(edited_policy, Planning.of((HEALTH, SPINE_FLAGS)))
    assert "spine_flags" not in plan.sources
    answers = _as_fanout_answers(plan, HEALTH, SPINE_FLAGS)
    if absent:
        answers = [a for a in answers if a.status is not SourceStatus.NOT_ASKED]

    release = await _decided(edited_policy, plan, answers)

    assert release.flags.restriction_status_known is False
    assert _addresses(release) == []
    assert _address_withheld(release) == {"RESTRICTION_STATUS_UNKNOWN"}


@pytest.mark.anyio
async def test_the_real_policy_asks_identity_only_authorities_and_the_child_is_clear():
    """The project's policy asks both authorities though they provide identity only; both answer
    with nothing against the child, and the address is released."""
    sources = (HEALTH, SHIELD_REGISTER, SPINE_FLAGS)
    plan = await _plan(None, Planning.of(sources))
    assert {"shield_register", "spine_flags"} <= set(plan.sources)

    release = await _decided(None, plan, _as_fanout_answers(plan, *sources))

    assert release.flags.shield_status_known is True
    assert release.flags.restriction_status_known is True
    assert len(_addresses(release)) == 1


@pytest.mark.anyio
async def test_a_shielded_record_is_not_lifted_by_an_authority_left_out(edited_policy):
    """Doubt adds to what the records say, never takes from it: a shielding record the health
    source returned still shields the child."""
    plan = await _plan(edited_policy, Planning.of((HEALTH, SHIELD_REGISTER)))
    shielded = social_care_record(flags=RecordFlags(shielded=True))
    answers = [
        SourceAnswer("health", SourceStatus.ANSWERED, 1.0, (health_record(), shielded)),
    ]

    release = await _decided(edited_policy, plan, answers)

    assert release.flags.shielded is True
    assert _addresses(release) == []


# --- shield-safe search ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_search_with_a_shield_authority_left_out_finds_nobody(edited_policy):
    """A demographic search with an authority asked on every lookup left out: its NOT_ASKED
    answer cannot rule out a shielded child, so the search is answered as one that found nobody
    (gateway.shield_safe)."""
    plan = await _plan(edited_policy, Planning.of((HEALTH, SHIELD_REGISTER)), BY_DEMOGRAPHICS)
    answers = _as_fanout_answers(plan, HEALTH, SHIELD_REGISTER)
    matching = match_records(BY_DEMOGRAPHICS, answers, LinkageModel.load())
    assert matching.matched

    shown, hidden = shield_safe(BY_DEMOGRAPHICS, matching, plan.doubt_authorities)

    assert hidden
    assert not shown.matched
    assert not shown.possible


@pytest.mark.anyio
async def test_a_national_search_with_the_routed_authorities_left_out_finds_nobody(edited_policy):
    """National routing, a demographic search: the edited plan does not plan the local
    authorities' kind, so none is asked and none answers; the locator did. The search cannot rule
    out a shielded child at the postcode, so it must be answered as one that found nobody - a
    FOUND would confirm where the child lives even with every location field withheld."""
    plan = await _plan(
        edited_policy, Planning.of((HEALTH, *AUTHORITIES), locator=True), BY_DEMOGRAPHICS
    )
    assert "social_care" not in plan.sources
    answers = [SourceAnswer("health", SourceStatus.ANSWERED, 1.0, (health_record(),))]
    matching = match_records(BY_DEMOGRAPHICS, answers, LinkageModel.load())
    matching = replace(
        matching,
        answers=(*matching.answers, SourceAnswer(LOCATOR_SOURCE, SourceStatus.ANSWERED)),
    )
    assert matching.matched

    shown, hidden = shield_safe(
        BY_DEMOGRAPHICS, matching, plan.doubt_authorities, unasked=plan.unasked_authorities
    )

    assert hidden
    assert not shown.matched
    assert not shown.possible
