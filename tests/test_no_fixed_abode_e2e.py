"""A child of no fixed abode is found by demographics with the postcode NFA, through real reference
connectors and a real gateway; the search stays shield-safe."""

from datetime import date

import pytest

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

HOMELESS, HOUSED, HIDDEN = synthetic_nhs(21), synthetic_nhs(22), synthetic_nhs(23)
NFA = Address(lines=["No fixed abode"], postcode="NFA")

SEARCH = """
query Search($d: DemographicsInput!) {
  child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) {
    outcome
    child { nhsNumber { value } name { given family } }
    records { source method }
    sources { source status recordsMatched recordsPossible }
  }
}
"""


def _person(nhs, given, family, born, address, **extra):
    name = PersonName(given=given, family=family)
    return (
        health_record(nhs, record_id=f"H-{nhs}", name=name, date_of_birth=born, address=address),
        social_care_record(
            nhs,
            record_id=f"LA-{nhs}",
            identifiers=Identifiers(nhs_number=nhs, local_id=f"LA-{nhs}"),
            name=name,
            date_of_birth=born,
            address=address,
            **extra,
        ),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    people = [
        _person(HOMELESS, "Kacey", "Doyle", date(2012, 8, 14), NFA),
        _person(
            HOUSED,
            "Rowan",
            "Pike",
            date(2013, 2, 9),
            Address(lines=["4 Mill St"], postcode="LS9 8AB"),
        ),
        _person(HIDDEN, "Tamsin", "Vey", date(2011, 6, 30), NFA, flags=RecordFlags(shielded=True)),
    ]
    records = {
        "health": [health for health, _ in people],
        "social_care": [care for _, care in people],
    }
    with reference_stack(tmp_path_factory.mktemp("nfa"), records) as gateway:
        yield gateway


def _search(stack, given, family, born, postcode):
    variables = {
        "d": {"givenName": given, "familyName": family, "dateOfBirth": born, "postcode": postcode}
    }
    response = stack.post({"query": SEARCH, "variables": variables}, stack.token("social_worker"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["child"]


@pytest.mark.parametrize("postcode", ["NFA", "nfa", " N F A "])
def test_a_child_recorded_of_no_fixed_abode_is_found_with_postcode_nfa(stack, postcode):
    found = _search(stack, "Kacey", "Doyle", "2012-08-14", postcode)
    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"]["value"] == HOMELESS
    assert {r["source"] for r in found["records"]} == {"health", "social_care"}


def test_a_child_with_an_address_is_found_with_postcode_nfa_on_names_and_date_of_birth(stack):
    found = _search(stack, "Rowan", "Pike", "2013-02-09", "NFA")
    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"]["value"] == HOUSED


def test_sharing_no_fixed_abode_and_a_date_of_birth_finds_nobody(stack):
    found = _search(stack, "Ellis", "Marsh", "2012-08-14", "NFA")
    assert found["outcome"] == "NOT_FOUND"
    assert all(s["recordsMatched"] == s["recordsPossible"] == 0 for s in found["sources"])


def test_a_shielded_child_of_no_fixed_abode_is_not_found_by_demographics(stack):
    hidden = _search(stack, "Tamsin", "Vey", "2011-06-30", "NFA")
    nobody = _search(stack, "Tamsin", "Vey", "2011-06-29", "NFA")
    assert hidden["outcome"] == nobody["outcome"] == "NOT_FOUND"
    assert hidden["sources"] == nobody["sources"]
