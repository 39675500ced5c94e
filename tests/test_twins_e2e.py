"""Twins through the real gateway and connectors: a given name that differs between sources is
weighed as another recorded name only when the source holding every child (health) has answered
and holds no twin; otherwise it is the other twin's, and never linked."""

from datetime import date

from connectors.protocol import Address, PersonName, Sex
from tests.factories import health_record, school_record, synthetic_nhs
from tests.stack import reference_stack

HOME = Address(lines=["4 Twin Row", "Leeds"], postcode="LS6 2AB")
SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) {
    outcome complete
    records { source method }
    sources { source status }
  }
}
"""
AMELIA = {
    "givenName": "Amelia",
    "familyName": "Hart",
    "dateOfBirth": "2019-03-04",
    "postcode": "LS6 2AB",
    "sex": "FEMALE",
}


def _child(record, nhs, record_id, given):
    return record(
        nhs=nhs,
        record_id=record_id,
        name=PersonName(given=given, family="Hart"),
        date_of_birth=date(2019, 3, 4),
        sex=Sex.FEMALE,
        address=HOME,
    )


# The school knows Amelia as "Mae" and holds no NHS number for her.
MAE_AT_SCHOOL = _child(school_record, None, "E-MAE", "Mae")
AMELIA_HEALTH = _child(health_record, synthetic_nhs(21), "H-AMELIA", "Amelia")
ROSE_HEALTH = _child(health_record, synthetic_nhs(22), "H-ROSE", "Rose")


def _search(tmp_path, records, latency_ms=None):
    with reference_stack(tmp_path, records, latency_ms=latency_ms) as stack:
        body = {
            "query": SEARCH,
            "variables": {"purpose": "SAFEGUARDING_ENQUIRY", "demographics": AMELIA},
        }
        response = stack.post(body, stack.token("social_worker"))
    assert response.status_code == 200, response.text
    return response.json()["data"]["child"]


def _linked(result):
    return sorted(r["source"] for r in result["records"])


def test_another_given_name_links_when_health_answered_and_holds_no_twin(tmp_path):
    result = _search(tmp_path, {"health": [AMELIA_HEALTH], "education": [MAE_AT_SCHOOL]})
    assert result["outcome"] == "FOUND"
    assert _linked(result) == ["education", "health"]


def test_health_holding_twins_makes_the_other_given_name_the_other_twin(tmp_path):
    result = _search(
        tmp_path, {"health": [AMELIA_HEALTH, ROSE_HEALTH], "education": [MAE_AT_SCHOOL]}
    )
    assert result["outcome"] == "FOUND"
    assert _linked(result) == ["health"]


def test_without_healths_answer_another_given_name_is_never_linked(tmp_path):
    result = _search(
        tmp_path,
        {"health": [AMELIA_HEALTH], "education": [MAE_AT_SCHOOL]},
        latency_ms={"health": 1_500},  # past its 1 s timeout
    )
    statuses = {s["source"]: s["status"] for s in result["sources"]}
    assert statuses["health"] == "TIMED_OUT"
    assert result["records"] == []
    assert result["complete"] is False
