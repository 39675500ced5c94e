"""A shield or restriction is ruled out only by an answer that could have shown it. A local
authority's social care files a child by NHS number (often not by UPN), and the spine by NHS
number alone: asked by a UPN only - a lookup by UPN whose school record holds no NHS number, so no
second round asks again - their "no record" says nothing of a shield or an NHS restriction, and
the school's copy of where the child lives must not go out on it (gateway.decide).

Real gateway, real policy, reference connectors on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.check_digits import upn_check_letter
from connectors.protocol import Address, Carer, Identifiers, RecordFlags, School
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_stack

NHS = synthetic_nhs(960)
UPN = upn_check_letter("801200001960") + "801200001960"
HOME = Address(lines=["12 Hidden Row", "Quarrytown"], postcode="LS6 2AB")
SCHOOL = School(urn="107001", name="Quarry Primary", phone="01632 960500")
CARERS = [Carer(name="Jo Carerly", relationship="mother", parental_responsibility=True)]
LOCATING = ("Hidden Row", "LS6 2AB", "Quarry Primary", "107001", "Jo Carerly")

QUERY = """
query($identify: ChildIdentity!, $purpose: Purpose!) {
  child(identify: $identify, purpose: $purpose) {
    outcome
    child {
      name { given family }
      address { lines postcode }
      school { urn name }
      carers { name }
    }
    sources { source status askedWith }
    withheld { field source reason }
  }
}
"""


def _school(nhs: str | None) -> Any:
    return school_record(
        nhs,
        record_id="E-U",
        identifiers=Identifiers(nhs_number=nhs, upn=UPN),
        address=HOME,
        school=SCHOOL,
        carers=CARERS,
    )


def _records(*, school_holds_nhs: bool, shielded: bool, restricted: bool) -> dict[str, list]:
    return {
        "health": [
            health_record(
                NHS, record_id="H-U", address=HOME, flags=RecordFlags(restricted=restricted)
            )
        ],
        "education": [_school(NHS if school_holds_nhs else None)],
        "social_care": [
            social_care_record(
                NHS,
                record_id="LA-U",
                identifiers=Identifiers(nhs_number=NHS, local_id="LA-U"),
                flags=RecordFlags(shielded=shielded),
            )
        ],
    }


def _look_up(stack: Stack) -> dict[str, Any]:
    variables = {"identify": {"upn": UPN}, "purpose": "SAFEGUARDING_ENQUIRY"}
    body = stack.post({"query": QUERY, "variables": variables}, stack.token("social_worker"))
    assert body.status_code == 200, body.text
    return body.json()["data"]["child"]


def _leaks(answer: dict[str, Any]) -> list[str]:
    text = str(answer).casefold()
    return [s for s in LOCATING if s.casefold() in text]


@pytest.mark.parametrize(
    ("shielded", "restricted"), [(True, False), (False, True)], ids=["shielded", "restricted"]
)
def test_a_child_known_to_the_authorities_by_nhs_number_alone_is_not_located_by_upn(
    tmp_path, shielded, restricted
):
    records = _records(school_holds_nhs=False, shielded=shielded, restricted=restricted)
    with reference_stack(tmp_path, records) as stack:
        answer = _look_up(stack)

    assert answer["outcome"] == "FOUND"
    asked = {s["source"]: (s["status"], s["askedWith"]) for s in answer["sources"]}
    assert asked["social_care"] == ("NO_RECORD", ["UPN"])
    assert asked["health"] == ("NO_RECORD", ["UPN"])
    assert answer["child"]["name"]["family"] == "Hart"
    assert (answer["child"]["address"], answer["child"]["school"]) == (None, None)
    assert answer["child"]["carers"] == []
    assert _leaks(answer) == []
    reasons = {w["reason"] for w in answer["withheld"] if w["field"] in ("address", "school")}
    assert reasons
    assert reasons <= {"RESTRICTION_STATUS_UNKNOWN", "SHIELD_STATUS_UNKNOWN"}


def test_a_school_record_holding_the_nhs_number_lets_the_authorities_clear_the_child(tmp_path):
    """The second round asks them again by the NHS number the school holds: their "no record"
    (or their record, unflagged) then tells, and the school's details are shown."""
    records = _records(school_holds_nhs=True, shielded=False, restricted=False)
    records["social_care"] = []
    with reference_stack(tmp_path, records) as stack:
        answer = _look_up(stack)

    asked = {s["source"]: (s["status"], s["askedWith"]) for s in answer["sources"]}
    assert asked["social_care"] == ("NO_RECORD", ["UPN", "NHS_NUMBER"])
    assert answer["child"]["school"] == {"urn": "107001", "name": "Quarry Primary"}
    assert answer["child"]["address"] is not None
    assert {w["reason"] for w in answer["withheld"]} <= {"SENSITIVE_SERVICE"}  # CAMHS, brokered


def test_the_same_shielded_child_looked_up_by_nhs_number_shows_no_location(tmp_path):
    """Asked by the identifier it files her under, the authority's shield is seen."""
    records = _records(school_holds_nhs=True, shielded=True, restricted=False)
    with reference_stack(tmp_path, records) as stack:
        variables = {"identify": {"nhsNumber": NHS}, "purpose": "SAFEGUARDING_ENQUIRY"}
        body = stack.post({"query": QUERY, "variables": variables}, stack.token("social_worker"))
    answer = body.json()["data"]["child"]

    assert _leaks(answer) == []
    assert {w["reason"] for w in answer["withheld"]} == {"SHIELDED"}
