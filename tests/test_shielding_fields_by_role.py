"""Every field of a shielded or restricted child's answer, for every role and break-glass.

DOMAIN.md: 'A shielded record shows only name, sex, date of birth and ID; location fields
(address, school, GP, contacts) are withheld', and the NHS restricted (R) flag 'removes address,
telecom, GP and contacts'. Nothing that locates the child may reach the caller, directly or
indirectly (an involvement's organisation or practitioner, a carer, a conflict, a provenance),
whichever source set the shield; `withheld` says what was withheld, never its value.

Real gateway, real Rego policy bundle, the reference connectors on loopback.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from connectors.check_digits import upn_check_letter
from connectors.protocol import (
    Address,
    Carer,
    Contact,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    RecordFlags,
    School,
)
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

REASON = "Child reported missing; police at the door need the current address now."
S47 = "s47 strategy discussion held this morning"

ADDRESS = Address(lines=["12 Hidden Row", "Quarrytown"], postcode="LS6 2AB")
GP = GpPractice(ods_code="B82001", name="Moor Surgery", phone="01632 960001")
SCHOOL = School(urn="107001", name="Quarry Primary", phone="01632 960500")
CARERS = [
    Carer(
        name="Jo Carerly", relationship="mother", parental_responsibility=True, phone="07700 900010"
    )
]
HEALTH_VISITING = Involvement(
    service="health visiting",
    organisation="Quarrytown Community Healthcare",
    practitioner=Contact(
        name="Hana Visitor", role="health visitor", phone="07700 900001", email="hana@qch.nhs.uk"
    ),
    since=date(2024, 1, 2),
)
CAMHS = Involvement(
    service="CAMHS",
    organisation="Quarrytown CAMHS",
    practitioner=Contact(name="Dr Mind", phone="07700 900002"),
    sensitive=True,
    broker=Contact(name="Quarrytown safeguarding hub", phone="01632 960999"),
)
SOCIAL_WORK = Involvement(
    service="children's social care",
    organisation="Quarrytown City Council",
    practitioner=Contact(
        name="Sam Social", role="social worker", phone="07700 900003", email="sam@quarry.gov.uk"
    ),
    lead=True,
)
DSL = Involvement(
    service="designated safeguarding lead",
    organisation="Quarry Primary",
    practitioner=Contact(name="Dee Lead", role="DSL", phone="01632 960501"),
)

LOCATING = (
    "Hidden Row",
    "Quarrytown",
    "Quarry",
    "LS6 2AB",
    "LS62AB",
    "B82001",
    "Moor Surgery",
    "01632 9605",
    "01632 960001",
    "107001",
    "Carerly",
    "07700 9000",
    "Hana Visitor",
    "qch.nhs.uk",
    "Dr Mind",
    "01632 960999",
    "Sam Social",
    "quarry.gov.uk",
    "Dee Lead",
)
"""Every value in the records that says where the child is, or who around them to ask."""

SENSITIVE = ("Quarrytown CAMHS", "Dr Mind", "07700 900002")
"""The provider of the child's sensitive service: brokered even under break-glass."""


def _records(nhs: str, upn: str, *, by: str | None, restricted: bool = False):
    """The child's records at health, education and social care, with `by` (a source) setting the
    shield, or health the NHS restriction."""

    def flags(source: str) -> RecordFlags:
        return RecordFlags(shielded=by == source, restricted=restricted and source == "health")

    health = health_record(
        nhs,
        record_id=f"H-{nhs}",
        address=ADDRESS,
        gp_practice=GP,
        carers=CARERS,
        involvements=[HEALTH_VISITING, CAMHS],
        flags=flags("health"),
    )
    education = school_record(
        nhs,
        record_id=f"E-{nhs}",
        identifiers=Identifiers(nhs_number=nhs, upn=upn),
        address=ADDRESS,
        school=SCHOOL,
        carers=CARERS,
        involvements=[DSL],
        flags=flags("education"),
    )
    social = social_care_record(
        nhs,
        record_id=f"LA-{nhs}",
        identifiers=Identifiers(nhs_number=nhs, local_id=f"LA-{nhs}"),
        address=Address(lines=["12 Hidden Row", "Quarrytown"], postcode="ls62ab"),
        carers=CARERS,
        involvements=[SOCIAL_WORK],
        indicators=Indicators(child_protection_plan=True, looked_after=False, child_in_need=True),
        flags=flags("social_care"),
    )
    return {"health": health, "education": education, "social_care": social}


UPNS = {
    kind: upn_check_letter(digits) + digits
    for kind, digits in (
        ("clear", "801200001901"),
        ("social_care", "801200001902"),
        ("health", "801200001903"),
        ("education", "801200001904"),
        ("restricted", "801200001905"),
    )
}
CHILDREN = {kind: synthetic_nhs(900 + i) for i, kind in enumerate(UPNS)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-shielding-fields")
    records: dict[str, list[Any]] = {"health": [], "education": [], "social_care": []}
    for kind, nhs in CHILDREN.items():
        shield_by = kind if kind in ("social_care", "health", "education") else None
        made = _records(nhs, UPNS[kind], by=shield_by, restricted=kind == "restricted")
        for source, record in made.items():
            records[source].append(record)
    with reference_stack(tmp, records) as gateway:
        yield gateway


FULL = """
query($identify: ChildIdentity!, $purpose: Purpose!, $justification: String) {
  child(identify: $identify, purpose: $purpose, justification: $justification) {
    outcome complete denial denialCode auditId requestId policyRevision
    child {
      nhsNumber { value provenance { source asOf } }
      name { given family formerFamily provenance { source asOf } }
      dateOfBirth { value provenance { source asOf } }
      sex { value provenance { source asOf } }
      address { lines postcode provenance { source asOf } }
      school { urn name phone provenance { source asOf } }
      gpPractice { odsCode name phone provenance { source asOf } }
      carers { name relationship parentalResponsibility phone provenance { source asOf } }
      involvements {
        service organisation lead since until sensitive
        practitioner { name role phone email } broker { name role phone email }
        provenance { source asOf }
      }
      indicators {
        childProtectionPlan { value provenance { source asOf } }
        lookedAfter { value provenance { source asOf } }
        childInNeed { value provenance { source asOf } }
        earlyHelp { value provenance { source asOf } }
      }
      conflicts { field chosen disagreeing }
    }
    records { source method score weight asOf }
    sources {
      source status latencyMs errorCode failureCode recordsMatched recordsUnmatched
      recordsPossible recordsAmbiguous cached askedWith askedBecause
    }
    withheld { field source reason reasonCode }
    ambiguity { reason records { source method count } }
  }
}
"""


def _ask(stack, role, kind, purpose, justification=None, by="nhsNumber") -> dict[str, Any]:
    identify = {"nhsNumber": CHILDREN[kind]} if by == "nhsNumber" else {"upn": UPNS[kind]}
    variables = {"identify": identify, "purpose": purpose, "justification": justification}
    response = stack.post({"query": FULL, "variables": variables}, stack.token(role))
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["child"]


ORDINARY = [
    ("social_worker", "SAFEGUARDING_ENQUIRY", None),
    ("social_worker", "CHILD_PROTECTION_ENQUIRY", S47),
    ("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", S47),
    ("police_safeguarding", "SAFEGUARDING_ENQUIRY", None),
    ("health_visitor", "SAFEGUARDING_ENQUIRY", None),
    ("health_visitor", "DIRECT_CARE", None),
    ("school_nurse", "DIRECT_CARE", None),
    ("gp", "DIRECT_CARE", None),
    ("gp", "SAFEGUARDING_ENQUIRY", None),
    ("ed_clinician", "DIRECT_CARE", None),
    ("school_dsl", "SAFEGUARDING_ENQUIRY", None),
    ("la_shielding_admin", "SHIELDING_ADMINISTRATION", None),
]
BREAK_GLASS = [
    ("social_worker", "EMERGENCY_OVERRIDE", REASON),
    ("police_safeguarding", "EMERGENCY_OVERRIDE", REASON),
]
HIDDEN_KINDS = ("social_care", "health", "education", "restricted")
SHIELD_REASONS = {"SHIELDED", "RESTRICTED"}
IDENTITY = {"nhs_number", "name", "date_of_birth", "sex"}


def _leaks(answer: dict[str, Any], strings=LOCATING) -> list[str]:
    text = json.dumps(answer)
    return [s for s in strings if s.casefold() in text.casefold()]


def _assert_identity_only(answer: dict[str, Any], expected_reason: str | None) -> None:
    assert answer["outcome"] == "FOUND", answer
    child = answer["child"]
    assert child["name"]["given"] in ("Amelia", "Millie")
    assert (child["address"], child["school"], child["gpPractice"]) == (None, None, None)
    assert (child["carers"], child["involvements"]) == ([], [])
    assert set(child["indicators"].values()) == {None}
    assert _leaks(answer) == []
    for w in answer["withheld"]:
        if expected_reason and w["field"] not in IDENTITY:
            assert w["reasonCode"] == expected_reason, w


def test_the_markers_are_seen_for_a_child_who_is_not_shielded(stack):
    """Control: the same records of a child neither shielded nor restricted show the markers, so
    their absence below means something."""
    answer = _ask(stack, "social_worker", "clear", "SAFEGUARDING_ENQUIRY")
    assert {"Hidden Row", "Moor Surgery", "107001", "Sam Social", "Dee Lead"} <= set(_leaks(answer))


@pytest.mark.parametrize("by", ["nhsNumber", "upn"])
@pytest.mark.parametrize(("role", "purpose", "justification"), ORDINARY)
@pytest.mark.parametrize("kind", HIDDEN_KINDS)
def test_an_ordinary_lookup_shows_a_hidden_child_by_identity_only(
    stack, kind, role, purpose, justification, by
):
    answer = _ask(stack, role, kind, purpose, justification, by)
    if role == "la_shielding_admin" and by == "upn":
        # Nothing it may see is at education, the one source holding UPNs: not asked, not found.
        assert (answer["outcome"], _leaks(answer)) == ("NOT_FOUND", [])
        return
    # A shielding administrator's grant is identity only: the plan need not ask a source that is
    # no authority, so its shield may go unseen, and the reason be the grant's.
    expected = "RESTRICTED" if kind == "restricted" else "SHIELDED"
    _assert_identity_only(answer, None if role == "la_shielding_admin" else expected)


@pytest.mark.parametrize("by", ["nhsNumber", "upn"])
@pytest.mark.parametrize(("role", "purpose", "justification"), BREAK_GLASS)
def test_break_glass_never_lifts_a_restriction(stack, role, purpose, justification, by):
    answer = _ask(stack, role, "restricted", purpose, justification, by)
    _assert_identity_only(answer, "RESTRICTED")


@pytest.mark.parametrize("by", ["nhsNumber", "upn"])
@pytest.mark.parametrize(("role", "purpose", "justification"), BREAK_GLASS)
@pytest.mark.parametrize("kind", ["social_care", "health", "education"])
def test_break_glass_lifts_a_shield_set_by_any_source_but_keeps_the_sensitive_provider_brokered(
    stack, kind, role, purpose, justification, by
):
    answer = _ask(stack, role, kind, purpose, justification, by)
    assert answer["outcome"] == "FOUND"
    assert answer["child"]["address"]["postcode"] in ("LS6 2AB", "ls62ab")
    assert _leaks(answer, SENSITIVE) == []
    camhs = [i for i in answer["child"]["involvements"] if i["sensitive"]]
    assert camhs
    assert all(i["since"] is None and i["organisation"] is None for i in camhs)
