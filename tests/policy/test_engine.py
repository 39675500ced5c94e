"""The in-process policy engine: the real policies through it, and failing closed on bad ones."""

from __future__ import annotations

import anyio
import pytest

from connectors.protocol import FieldId
from gateway.policy import (
    DenialCode,
    PlanDecision,
    PolicyError,
    RegoPolicyEngine,
    ReleaseChild,
    ReleaseRecord,
    WithholdingReason,
)
from tests.factories import LOCATION_FIELDS, POLICY_DIR, plan_input, release_input, write_bundle

IDENTITY = {FieldId.NHS_NUMBER, FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX}
LOCATION = LOCATION_FIELDS
SHIELDED = ReleaseChild(
    shielded=True, restricted=False, shield_status_known=True, restriction_status_known=True
)
ALL_FIELDS = tuple(FieldId)


@pytest.fixture(scope="module")
def engine() -> RegoPolicyEngine:
    return RegoPolicyEngine.from_directory(POLICY_DIR)


# --- the real policies ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_permitted_plan_lists_fields_and_sources_in_order(engine):
    decision = await engine.plan(plan_input("health_visitor", "DIRECT_CARE"))

    assert decision == PlanDecision(
        permitted=True,
        denial=None,
        fields=(
            FieldId.ADDRESS,
            FieldId.CARERS,
            FieldId.DATE_OF_BIRTH,
            FieldId.GP_PRACTICE,
            FieldId.INVOLVEMENTS,
            FieldId.NAME,
            FieldId.NHS_NUMBER,
            FieldId.SEX,
        ),
        obligation_fields=(FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER),
        sources=("health", "social_care"),
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("role", "purpose", "beyond_identity"),
    [
        (
            "social_worker",
            "CHILD_PROTECTION_ENQUIRY",
            set(FieldId) - IDENTITY - {FieldId.SENSITIVE_SERVICE_DETAILS},
        ),
        (
            "school_dsl",
            "SAFEGUARDING_ENQUIRY",
            {
                FieldId.SCHOOL,
                FieldId.CARERS,
                FieldId.INVOLVEMENTS,
                FieldId.CHILD_PROTECTION_PLAN,
                FieldId.LOOKED_AFTER,
                FieldId.CHILD_IN_NEED,
                FieldId.EARLY_HELP,
            },
        ),
        (
            "ed_clinician",
            "DIRECT_CARE",
            {
                FieldId.GP_PRACTICE,
                FieldId.CARERS,
                FieldId.INVOLVEMENTS,
                FieldId.CHILD_PROTECTION_PLAN,
                FieldId.LOOKED_AFTER,
            },
        ),
        (
            "police_safeguarding",
            "SAFEGUARDING_ENQUIRY",
            {FieldId.INVOLVEMENTS, FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER},
        ),
        ("la_shielding_admin", "SHIELDING_ADMINISTRATION", set()),
    ],
)
async def test_each_role_is_planned_only_its_granted_fields(engine, role, purpose, beyond_identity):
    decision = await engine.plan(plan_input(role, purpose, justification="Section 47 strategy."))

    assert set(decision.fields) == IDENTITY | beyond_identity


@pytest.mark.anyio
async def test_unknown_role_is_refused_and_nothing_is_fetched(engine):
    decision = await engine.plan(plan_input("janitor", "SAFEGUARDING_ENQUIRY"))

    assert decision == PlanDecision(
        permitted=False,
        denial=DenialCode.UNKNOWN_ROLE,
        fields=(),
        obligation_fields=(),
        sources=(),
    )


@pytest.mark.anyio
async def test_child_protection_enquiry_needs_a_justification(engine):
    refused = await engine.plan(plan_input("police_safeguarding", "CHILD_PROTECTION_ENQUIRY"))
    permitted = await engine.plan(
        plan_input("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", 'Strategy meeting, ref é/"7"')
    )

    assert refused.denial is DenialCode.JUSTIFICATION_REQUIRED
    assert permitted.permitted


@pytest.mark.anyio
async def test_shielded_childs_location_is_withheld_from_a_social_worker(engine):
    decision = await engine.release(
        release_input("social_worker", "SAFEGUARDING_ENQUIRY", child=SHIELDED)
    )

    withheld = {item.field: item.reason for item in decision.withheld}
    shielded = {field for field, reason in withheld.items() if reason is WithholdingReason.SHIELDED}
    # Only name, sex, date of birth and ID: location, and the indicators besides.
    assert shielded >= LOCATION | {FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER}
    assert {item.field for item in decision.released} == IDENTITY


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("role", "purpose"),
    [
        ("social_worker", "CHILD_PROTECTION_ENQUIRY"),
        ("gp", "DIRECT_CARE"),
        ("school_dsl", "SAFEGUARDING_ENQUIRY"),
        ("janitor", "SAFEGUARDING_ENQUIRY"),
    ],
)
async def test_sensitive_service_details_never_leave_by_default(engine, role, purpose):
    decision = await engine.release(release_input(role, purpose))

    assert FieldId.SENSITIVE_SERVICE_DETAILS not in {item.field for item in decision.released}
    assert [
        item.reason for item in decision.withheld if item.field is FieldId.SENSITIVE_SERVICE_DETAILS
    ] == [WithholdingReason.SENSITIVE_SERVICE]


@pytest.mark.anyio
async def test_every_field_of_every_record_is_decided_once(engine):
    records = (
        ReleaseRecord(id="health:H1", source="health", fields=ALL_FIELDS),
        ReleaseRecord(id="education:E1", source="education", fields=(FieldId.NAME, FieldId.SCHOOL)),
    )
    decision = await engine.release(
        release_input("school_dsl", "SAFEGUARDING_ENQUIRY", records=records)
    )

    decided = [(item.record, item.field) for item in decision.released]
    decided += [(item.record, item.field) for item in decision.withheld]
    assert sorted(decided) == sorted(
        (record.id, field) for record in records for field in record.fields
    )


@pytest.mark.anyio
async def test_record_ids_with_quotes_backslashes_and_accents_come_back_unchanged(engine):
    # regopy's own Input type mangles these; the engine must hand rego-cpp JSON text instead.
    odd_id = 'health:"H\\1"\u00e9\n'
    records = (ReleaseRecord(id=odd_id, source="health", fields=(FieldId.NAME,)),)

    decision = await engine.release(release_input("gp", "DIRECT_CARE", records=records))

    assert [(item.record, item.field) for item in decision.released] == [(odd_id, FieldId.NAME)]


@pytest.mark.anyio
async def test_concurrent_decisions_each_get_their_own_answer(engine):
    roles = ["social_worker", "janitor", "gp", "school_dsl"] * 5
    answers: dict[int, PlanDecision] = {}

    async def ask(index: int, role: str) -> None:
        answers[index] = await engine.plan(plan_input(role, "SAFEGUARDING_ENQUIRY"))

    async with anyio.create_task_group() as group:
        for index, role in enumerate(roles):
            group.start_soon(ask, index, role)

    for index, role in enumerate(roles):
        assert answers[index] == await engine.plan(plan_input(role, "SAFEGUARDING_ENQUIRY"))


# --- failing closed ------------------------------------------------------------------------------

PLAN_DECISION = """package childlookup.plan

import rego.v1

decision := {"permitted": true, "denial": null, "fields": ["name"], "obligation_fields": [],
    "sources": []}
"""
RELEASE_DECISION = """package childlookup.release

import rego.v1

decision := {"released": [], "withheld": []}
"""


def engine_with(tmp_path, plan: str = PLAN_DECISION, release: str = RELEASE_DECISION):
    write_bundle(tmp_path, {"plan.rego": plan, "release.rego": release})
    return RegoPolicyEngine.from_directory(tmp_path)


def test_revision_comes_from_the_manifest(tmp_path):
    write_bundle(
        tmp_path, {"plan.rego": PLAN_DECISION, "release.rego": RELEASE_DECISION}, revision="r42"
    )

    assert RegoPolicyEngine.from_directory(tmp_path).revision == "r42"


@pytest.mark.anyio
async def test_small_bundle_answers(tmp_path):
    decision = await engine_with(tmp_path).plan(plan_input("gp", "DIRECT_CARE"))

    assert decision.fields == (FieldId.NAME,)


@pytest.mark.anyio
async def test_undefined_decision_is_an_error(tmp_path):
    engine = engine_with(
        tmp_path,
        plan=PLAN_DECISION.replace('"sources": []}', '"sources": []} if input.caller.role == "gp"'),
    )

    with pytest.raises(PolicyError, match="no answer for childlookup/plan/decision"):
        await engine.plan(plan_input("school_dsl", "DIRECT_CARE"))


@pytest.mark.anyio
async def test_evaluation_error_is_an_error(tmp_path):
    conflicting = RELEASE_DECISION + '\ndecision := {"released": [], "withheld": [1]} if input\n'
    engine = engine_with(tmp_path, release=conflicting)

    with pytest.raises(PolicyError, match="multiple outputs"):
        await engine.release(release_input("gp", "DIRECT_CARE"))


def test_syntax_error_is_refused_at_construction_with_its_line(tmp_path):
    with pytest.raises(PolicyError, match=r"release\.rego:5:\d+: "):
        engine_with(tmp_path, release=RELEASE_DECISION.replace(":= {", ":= "))


def test_bundle_without_a_release_decision_is_refused_at_construction(tmp_path):
    with pytest.raises(PolicyError, match="does not define childlookup/release/decision"):
        engine_with(tmp_path, release=RELEASE_DECISION.replace("decision :=", "verdict :="))


def test_decision_defined_only_in_a_test_module_is_refused(tmp_path):
    write_bundle(tmp_path, {"plan.rego": PLAN_DECISION, "release_test.rego": RELEASE_DECISION})

    with pytest.raises(PolicyError, match="does not define childlookup/release/decision"):
        RegoPolicyEngine.from_directory(tmp_path)


ASK = {
    "plan": lambda engine: engine.plan(plan_input("gp", "DIRECT_CARE")),
    "release": lambda engine: engine.release(release_input("gp", "DIRECT_CARE")),
}


def engine_answering(tmp_path, question: str, answer: str) -> RegoPolicyEngine:
    return engine_with(
        tmp_path, **{question: f"package childlookup.{question}\n\ndecision := {answer}\n"}
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("question", "answer"),
    [
        (
            "plan",
            '{"permitted": "yes", "denial": null, "fields": [], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '{"permitted": true, "denial": null, "fields": [], '
            '"obligation_fields": [], "sources": [], "extra": 1}',
        ),
        ("plan", '{"permitted": true, "denial": null, "fields": ["name"]}'),
        (
            "plan",
            '{"permitted": true, "denial": null, "fields": ["favourite"], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '{"permitted": false, "denial": "NOT_TODAY", "fields": [], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '{"permitted": false, "denial": null, "fields": [], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '{"permitted": false, "denial": "UNKNOWN_ROLE", "fields": ["name"], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '{"permitted": true, "denial": "UNKNOWN_ROLE", "fields": [], '
            '"obligation_fields": [], "sources": []}',
        ),
        (
            "plan",
            '[{"permitted": true, "denial": null, "fields": [], '
            '"obligation_fields": [], "sources": []}]',
        ),
        (
            "release",
            '{"released": [{"record": "r", "field": "name"}], '
            '"withheld": [{"record": "r", "field": "name", "reason": "SHIELDED"}]}',
        ),
        (
            "release",
            '{"released": [], "withheld": [{"record": "r", "field": "name", "reason": "NO"}]}',
        ),
        (  # UNKNOWN is read back from an audit log written by a newer gateway, never decided
            "release",
            '{"released": [], "withheld": [{"record": "r", "field": "name", "reason": "UNKNOWN"}]}',
        ),
        ("release", '{"released": [{"record": 1, "field": "name"}], "withheld": []}'),
        ("release", '{"released": []}'),
    ],
)
async def test_malformed_decision_is_an_error(tmp_path, question, answer):
    engine = engine_answering(tmp_path, question, answer)

    with pytest.raises(PolicyError, match="Decision is malformed"):
        await ASK[question](engine)


@pytest.mark.anyio
async def test_malformed_answer_message_does_not_repeat_record_ids(tmp_path):
    answer = '{"released": [{"record": "health:SECRET", "field": "nope"}], "withheld": []}'
    engine = engine_answering(tmp_path, "release", answer)

    with pytest.raises(PolicyError) as raised:
        await ASK["release"](engine)

    assert "SECRET" not in str(raised.value)
