"""Lookups by some of a child's details (issue 13): real reference connectors searching their
records over loopback HTTP, the real gateway validating and scoring, the real policy and audit."""

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.protocol import LOOKUP_PATH, Address, Carer, Identifiers, PersonName, Sex
from gateway.demo import reference_source
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_apps, running_gateway, serving

KOFI, SEUN, ROBIN, ADA = synthetic_nhs(31), synthetic_nhs(32), synthetic_nhs(33), synthetic_nhs(34)
UPN = "H801200001001"
GRACE_QUIST = Carer(name="Grace Quist", relationship="Mother", parental_responsibility=True)

SEARCH = """
query Search($d: DemographicsInput!) {
  child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) {
    outcome
    child { nhsNumber { value } }
    records { source method }
    sources { source status recordsMatched recordsPossible }
  }
}
"""


class CountedLookups:
    """A connector app that counts the lookups it is asked, and keeps what they said."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lookups = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOOKUP_PATH:
            await self.app(scope, receive, send)
            return
        self.lookups += 1

        async def kept() -> Message:
            message = await receive()
            self.bodies.append(message.get("body", b""))
            return message

        await self.app(scope, kept, send)


def _population() -> dict[str, list[Any]]:
    kofi = {
        "name": PersonName(given="Kofi", family="Mensah"),
        "date_of_birth": date(2014, 9, 22),
        "address": Address(lines=["7 Bank Road", "Leeds"], postcode="LS9 6QR"),
    }
    # Seun is the name Oluwaseun goes by at school; the health record knows only his given name,
    # and the school does not hold his NHS number, so nothing but the name links the two.
    seun = {
        "date_of_birth": date(2016, 2, 2),
        "address": Address(lines=["3 Elm Grove", "Leeds"], postcode="LS7 1BD"),
    }
    robin = {
        "name": PersonName(given="Robin", family="Ashby"),
        "date_of_birth": date(2012, 11, 5),
        "address": Address(lines=["No fixed abode"], postcode="NFA"),
    }
    # Ada's family moved; the school has the new address, not her date of birth nor her NHS
    # number, and lists her mother as the health record does.
    ada = {"name": PersonName(given="Ada", family="Quist"), "carers": [GRACE_QUIST]}
    return {
        "health": [
            health_record(
                ADA,
                record_id="H-A",
                date_of_birth=date(2017, 6, 30),
                address=Address(lines=["2 Moor View", "Leeds"], postcode="LS11 5PQ"),
                **ada,
            ),
            health_record(KOFI, record_id="H-K", **kofi),
            health_record(
                SEUN, record_id="H-S", name=PersonName(given="Oluwaseun", family="Adeyemi"), **seun
            ),
            health_record(ROBIN, record_id="H-R", **robin),
        ],
        "education": [
            school_record(
                None,
                record_id="E-A",
                identifiers=Identifiers(upn="A801200001002"),
                date_of_birth=None,
                sex=Sex.FEMALE,
                address=Address(lines=["41 Tong Road", "Leeds"], postcode="LS12 4NQ"),
                **ada,
            ),
            school_record(
                None,
                record_id="E-S",
                identifiers=Identifiers(upn=UPN),
                name=PersonName(given="Oluwaseun", family="Adeyemi", known_as=["Seun"]),
                **seun,
            ),
        ],
        "social_care": [
            social_care_record(
                KOFI,
                record_id="LA-K",
                identifiers=Identifiers(nhs_number=KOFI, local_id="LA-K"),
                **kofi,
            ),
            social_care_record(
                ROBIN,
                record_id="LA-R",
                identifiers=Identifiers(nhs_number=ROBIN, local_id="LA-R"),
                **robin,
            ),
        ],
    }


@pytest.fixture(scope="module")
def connectors(tmp_path_factory) -> Iterator[tuple[dict[str, CountedLookups], Stack]]:
    tmp = tmp_path_factory.mktemp("partial")
    apps = {name: CountedLookups(app) for name, app in reference_apps(tmp, _population()).items()}
    with (
        serving(dict(apps)) as urls,
        running_gateway(tmp, [reference_source(name, url) for name, url in urls.items()]) as stack,
    ):
        yield apps, stack


@pytest.fixture
def stack(connectors) -> Stack:
    return connectors[1]


def _lookup(stack: Stack, **details: Any) -> dict[str, Any]:
    response = stack.post(
        {"query": SEARCH, "variables": {"d": details}}, stack.token("social_worker")
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _found(stack: Stack, **details: Any) -> dict[str, Any]:
    body = _lookup(stack, **details)
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def test_a_family_name_and_date_of_birth_find_the_child_in_every_source_holding_them(stack):
    found = _found(stack, familyName="Mensah", dateOfBirth="2014-09-22")

    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"]["value"] == KOFI
    assert {r["source"]: r["method"] for r in found["records"]} == {
        "health": "DEMOGRAPHICS",
        "social_care": "DEMOGRAPHICS",
    }


def test_given_and_family_name_alone_are_refused_before_any_source_is_asked(connectors):
    apps, stack = connectors
    asked = {name: app.lookups for name, app in apps.items()}
    audited = len(stack.components.audit.records())

    body = _lookup(stack, givenName="Kofi", familyName="Mensah")

    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INSUFFICIENT_DETAILS"
    assert "add the date of birth, or the postcode" in error["message"]
    assert {name: app.lookups for name, app in apps.items()} == asked
    assert len(stack.components.audit.records()) == audited


def test_the_counting_sees_a_lookup_that_is_asked(connectors):
    # The refusal test above is only meaningful if an accepted lookup does reach the sources.
    apps, stack = connectors
    asked = sum(app.lookups for app in apps.values())

    _found(stack, givenName="Kofi", familyName="Mensah", postcode="LS9 6QR")

    assert sum(app.lookups for app in apps.values()) >= asked + len(apps)


def test_given_and_family_name_and_postcode_are_enough(stack):
    found = _found(stack, givenName="Kofi", familyName="Mensah", postcode="ls96qr")

    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"]["value"] == KOFI


def test_the_name_a_child_is_known_by_finds_the_record_that_holds_it(stack):
    found = _found(stack, givenName="Seun", familyName="Adeyemi", dateOfBirth="2016-02-02")

    assert found["outcome"] == "FOUND"
    # The school records that he goes by Seun; the health record, holding only Oluwaseun, is not
    # linked on a given name it does not know.
    assert found["records"] == [{"source": "education", "method": "DEMOGRAPHICS"}]


def test_a_child_of_no_fixed_abode_is_found_without_a_postcode(stack):
    found = _found(stack, givenName="Robin", familyName="Ashby", dateOfBirth="2012-11-05")

    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"]["value"] == ROBIN
    assert {r["source"] for r in found["records"]} == {"health", "social_care"}


def test_no_fixed_abode_adds_nothing_towards_enough_details(stack):
    body = _lookup(stack, givenName="Robin", familyName="Ashby", postcode="NFA")

    assert [e["extensions"]["code"] for e in body["errors"]] == ["INSUFFICIENT_DETAILS"]
    assert "add the date of birth, or look" in body["errors"][0]["message"]


def _possible(found: dict[str, Any]) -> dict[str, int]:
    return {s["source"]: s["recordsPossible"] for s in found["sources"] if s["recordsPossible"]}


def test_address_lines_weigh_in_the_gateway_and_never_reach_an_agency(connectors):
    apps, stack = connectors
    wrong_date = {
        "givenName": "Kofi",
        "familyName": "Mensah",
        "dateOfBirth": "2013-04-17",
        "postcode": "LS9 6QR",
    }
    sent = {name: len(app.bodies) for name, app in apps.items()}

    without = _found(stack, **wrong_date)
    same_house = _found(stack, **wrong_date, addressLines=["7 Bank Rd", "LEEDS"])
    other_house = _found(stack, **wrong_date, addressLines=["9 Bank Road", "Leeds"])

    # A wrong date of birth leaves Kofi's records possible, not linked. At his own house they
    # link: health, which holds every child, shows no brother they could be. At another house
    # of the postcode it is another boy.
    assert without["records"] == other_house["records"] == []
    assert _possible(without) == {"health": 1, "social_care": 1}
    assert {r["source"] for r in same_house["records"]} == {"health", "social_care"}
    assert same_house["child"]["nhsNumber"]["value"] == KOFI
    assert _possible(other_house) == {}
    asked = [body for name, app in apps.items() for body in app.bodies[sent[name] :]]
    assert any(b"Mensah" in body for body in asked)
    assert not any(b"Bank" in body for body in asked)


def test_too_many_address_lines_are_refused_with_a_code(stack):
    body = _lookup(
        stack,
        givenName="Kofi",
        familyName="Mensah",
        dateOfBirth="2014-09-22",
        addressLines=["1 A Road", "B", "C", "D", "E", "F"],
    )

    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_ADDRESS"]


def test_a_parent_named_in_the_lookup_flags_the_record_from_before_a_move(connectors):
    apps, stack = connectors
    ada = {"givenName": "Ada", "familyName": "Quist", "dateOfBirth": "2017-06-30"}
    ada |= {"postcode": "LS11 5PQ", "sex": "FEMALE"}
    sent = {name: len(app.bodies) for name, app in apps.items()}

    with_mother = _found(stack, **ada, carerNames=["grace quist"])
    without = _found(stack, **ada)
    with_another = _found(stack, **ada, carerNames=["Joan Quist"])

    # The school's copy moved and has no date of birth: names and sex alone reject it; the
    # mother named on both sides makes it a possible match, never a merged one.
    for found in (with_mother, without, with_another):
        assert {r["source"] for r in found["records"]} == {"health"}
        assert found["child"]["nhsNumber"]["value"] == ADA
    assert _possible(with_mother) == {"education": 1}
    assert _possible(without) == _possible(with_another) == {}
    asked = [body for name, app in apps.items() for body in app.bodies[sent[name] :]]
    assert any(b"Quist" in body for body in asked)
    assert not any(b"Grace" in body or b"Joan" in body for body in asked)
