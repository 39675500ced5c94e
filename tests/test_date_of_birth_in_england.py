"""A date of birth is judged against England's date, not the gateway machine's: a baby born today
in England can be looked up at 00:30 BST on a server kept in UTC (or any other zone), and a date
that is still tomorrow in England is refused wherever the server's clock already is."""

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from connectors.backend import today_in_england
from connectors.protocol import Address, PersonName, Sex
from tests.factories import health_record, synthetic_nhs
from tests.stack import Stack, reference_stack

NEWBORN = synthetic_nhs(41)
SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) {
    outcome
    child { dateOfBirth { value } }
  }
}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    newborn = health_record(
        NEWBORN,
        record_id="H-NEW",
        name=PersonName(given="Ada", family="Newborn"),
        date_of_birth=today_in_england(),
        sex=Sex.FEMALE,
        address=Address(lines=["4 Cradle Road", "Leeds"], postcode="LS6 2AB"),
    )
    records = {"health": [newborn], "education": [], "social_care": []}
    with reference_stack(tmp_path_factory.mktemp("newborn"), records) as gateway:
        yield gateway


def _search(stack: Stack, born: date) -> dict:
    demographics = {
        "givenName": "Ada",
        "familyName": "Newborn",
        "dateOfBirth": born.isoformat(),
        "postcode": "LS6 2AB",
        "sex": "FEMALE",
    }
    body = {
        "query": SEARCH,
        "variables": {"purpose": "SAFEGUARDING_ENQUIRY", "demographics": demographics},
    }
    response = stack.post(body, stack.token("social_worker"))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_baby_born_today_in_england_is_found_whatever_zone_the_server_keeps(stack, zone_apart):
    england = today_in_england()
    assert zone_apart != england

    body = _search(stack, england)

    assert "errors" not in body, body["errors"]
    found = body["data"]["child"]
    assert found["outcome"] == "FOUND"
    assert found["child"]["dateOfBirth"]["value"] == england.isoformat()


def test_a_date_still_tomorrow_in_england_is_refused_whatever_zone_the_server_keeps(
    stack, zone_apart
):
    tomorrow = today_in_england() + timedelta(days=1)

    body = _search(stack, tomorrow)

    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_DATE_OF_BIRTH"]
