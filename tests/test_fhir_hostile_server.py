"""The FHIR connector in front of a FHIR server that answers wrongly on purpose: about another
child, with patients it cannot tell apart, too much, compressed, or oddly but validly. Nothing of
another child is attached to the one asked about, nothing is dropped from a search, and every
fault is a typed error. A small PDS-, CP-IS- and token-shaped app over real HTTP on loopback."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from connectors.fhir import CpisPlan, PlanKind, SignedJwtAuth, create_fhir_app
from connectors.fhir.backend import UNNUMBERED
from connectors.fhir.client import FHIR_JSON, MAX_ANSWER_BYTES
from connectors.fhir.resources import flag_resource, patient_resource, related_person_resources
from connectors.fhir.terminology import NHS_NUMBER_SYSTEM
from connectors.protocol import (
    LOOKUP_PATH,
    ConnectorRecord,
    Demographics,
    ErrorCode,
    ErrorResponse,
    Identifiers,
    Indicators,
    LookupResponse,
)
from connectors.serving import BackgroundServer
from tests.fhir_population import AMELIA, AUTHORITY, lookup_body, nhs_number

A = nhs_number(1)
B = nhs_number(2)
"""The child asked about, and another child."""
ASKED = Demographics(given="Amelia", family="Hart", date_of_birth=date(2015, 3, 7))
TOKEN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

Answer = dict[str, Any] | Response | None


def patient(number: str = A, **changes: Any) -> dict[str, Any]:
    """Amelia's PDS Patient under NHS number `number`, with `changes` (None removes a key)."""
    resource = patient_resource(AMELIA) | {
        "id": number,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": number}],
    }
    resource.update(changes)
    return {key: value for key, value in resource.items() if value is not None}


def searchset(*resources: dict[str, Any], outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"resource": resource, "search": {"mode": "match", "score": 1}} for resource in resources
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def plan_flag(number: str, **changes: Any) -> dict[str, Any]:
    plan = CpisPlan(number, PlanKind.CHILD_PROTECTION, date(2024, 5, 1), AUTHORITY)
    return flag_resource(plan, "f1") | changes


def outcome(severity: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": "info"}]}


def raw(body: bytes, **headers: str) -> Response:
    return Response(body, media_type=FHIR_JSON, headers=headers)


@dataclass
class HostileServer:
    """PDS at /pds, CP-IS at /cpis, a token endpoint at /token, answering `answers[route]` (a
    FHIR resource, a Response as it stands, or None: as PDS would, which only related people
    have - Amelia's carers, as the related people of whoever is asked about) and noting each call
    in `calls`."""

    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.calls.clear()
        self.answers = {
            "read": patient(),
            "search": searchset(patient()),
            "related": None,
            "flags": searchset(plan_flag(A)),
            "token": {"access_token": "good-token", "expires_in": "599"},
        }

    def app(self) -> Starlette:
        def route(path: str, name: str, method: str = "GET") -> Route:
            async def answer(request: Request) -> Response:
                self.calls.append(f"{name} {request.url.path}")
                found = self.answers[name]
                if isinstance(found, Response):
                    return found
                if found is None:
                    number = request.path_params["number"]
                    carers = AMELIA.model_copy(
                        update={"identifiers": Identifiers(nhs_number=number)}
                    )
                    found = searchset(*related_person_resources(carers))
                return Response(json.dumps(found), media_type=FHIR_JSON)

            return Route(path, answer, methods=[method])

        return Starlette(
            routes=[
                route("/pds/Patient/{number}/RelatedPerson", "related"),
                route("/pds/Patient/{number}", "read"),
                route("/pds/Patient", "search"),
                route("/cpis/Flag", "flags"),
                route("/token", "token", "POST"),
            ]
        )


@dataclass
class Stack:
    server: HostileServer
    url: str
    connector: httpx.Client

    def lookup(self, **asked: Any) -> httpx.Response:
        return self.connector.post(LOOKUP_PATH, content=lookup_body(**asked))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HostileServer, str]]:
    server = HostileServer()
    server.reset()
    with BackgroundServer(server.app()) as fhir:
        yield server, fhir.url


def connected(served: tuple[HostileServer, str], **options: Any) -> Iterator[Stack]:
    server, url = served
    server.reset()
    app = create_fhir_app(pds_url=f"{url}/pds", cpis_url=f"{url}/cpis", **options)
    with (
        BackgroundServer(app) as connector,
        httpx.Client(base_url=connector.url, timeout=20) as client,
    ):
        yield Stack(server, url, client)


@pytest.fixture(scope="module")
def open_stack(served: tuple[HostileServer, str]) -> Iterator[Stack]:
    yield from connected(served)


@pytest.fixture
def stack(open_stack: Stack) -> Stack:
    open_stack.server.reset()
    return open_stack


def records(response: httpx.Response) -> list[ConnectorRecord]:
    assert response.status_code == 200, response.text
    return LookupResponse.model_validate_json(response.content).records


def error(response: httpx.Response) -> tuple[int, ErrorCode]:
    return response.status_code, ErrorResponse.model_validate_json(response.content).error.code


def asked_about(stack: Stack) -> list[str]:
    """The calls made after the read or search: related people and CP-IS."""
    return [call for call in stack.server.calls if call.split()[0] in ("related", "flags")]


def test_the_hostile_server_answering_as_it_should_gives_the_childs_record(stack):
    [record] = records(stack.lookup(nhs=A))

    assert record.identifiers.nhs_number == A
    assert record.carers == AMELIA.carers
    assert record.indicators == Indicators(child_protection_plan=True, looked_after=False)


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": f"Patient/{B}"},
        {"reference": f"https://pds.example/FHIR/R4/Patient/{B}"},
        {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": B}},
        {"reference": f"Patient/{A}", "identifier": {"system": NHS_NUMBER_SYSTEM, "value": B}},
        {"display": "Amelia Hart"},
        {"reference": "#someone"},
    ],
    ids=["other", "other-absolute", "other-by-nhs-number", "two-children", "no-one", "contained"],
)
def test_a_cp_is_flag_not_about_the_child_fails_the_lookup_never_becomes_their_plan(stack, subject):
    stack.server.answers["flags"] = searchset(plan_flag(A), plan_flag(A, subject=subject))

    assert error(stack.lookup(nhs=A)) == (500, ErrorCode.INTERNAL)


def test_a_flag_naming_the_child_by_an_absolute_reference_is_theirs(stack):
    subject = {"reference": f"https://pds.example/FHIR/R4/Patient/{A}/_history/2"}
    stack.server.answers["flags"] = searchset(plan_flag(A, subject=subject))

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=True, looked_after=False)


@pytest.mark.parametrize(
    "own_record",
    [
        {"type": "Patient"},
        {
            "type": "Patient",
            "reference": f"Patient/{B}",
            "identifier": {"system": NHS_NUMBER_SYSTEM, "value": B},
        },
    ],
    ids=["no reference", "the carer's own NHS number"],
)
def test_a_related_person_as_pds_writes_one_is_the_childs_carer(stack, own_record):
    """In PDS a RelatedPerson's `patient` is the related person's own record - no reference, or
    their own NHS number - not the child's: it is no reason to refuse the carer."""
    [carer] = related_person_resources(AMELIA)[:1]
    stack.server.answers["related"] = searchset({**carer, "patient": own_record})

    [record] = records(stack.lookup(nhs=A))

    assert [c.name for c in record.carers or []] == [AMELIA.carers[0].name]


@pytest.mark.parametrize(
    "answered",
    [
        patient(B),
        patient(A, identifier=[{"system": NHS_NUMBER_SYSTEM, "value": v} for v in (B, A)]),
        patient(A, identifier=[{"system": NHS_NUMBER_SYSTEM, "value": v} for v in (A, B)]),
        patient(A, identifier=[{"system": "https://example.org/mrn", "value": "MRN1"}]),
        patient(B, identifier=[{"system": "https://example.org/mrn", "value": A}]),
        patient(A, identifier=[{"system": NHS_NUMBER_SYSTEM, "value": "9000000000"}]),
    ],
    ids=["another-child", "two-numbers", "two-numbers-asked-first", "no-nhs-number", "id-only",
         "invalid-number"],
)  # fmt: skip
def test_a_read_answered_with_another_patient_fails_before_cp_is_or_carers_are_asked(
    stack, answered
):
    stack.server.answers["read"] = answered

    assert error(stack.lookup(nhs=A)) == (500, ErrorCode.INTERNAL)
    assert asked_about(stack) == []


def test_search_results_without_ids_are_two_candidates_not_one(stack):
    stack.server.answers["search"] = searchset(patient(A, id=None), patient(B, id=None))

    found = records(stack.lookup(demographics=ASKED))

    assert sorted(r.record_id for r in found) == [A, B]
    assert [r.identifiers.nhs_number for r in found] == [r.record_id for r in found]


def test_search_results_sharing_an_id_are_told_apart_by_nhs_number(stack):
    stack.server.answers["search"] = searchset(patient(A, id="dup"), patient(B, id="dup"))

    found = records(stack.lookup(demographics=ASKED))

    assert sorted(r.record_id for r in found) == [A, B]


def test_results_without_a_usable_nhs_number_are_each_a_candidate_asked_nothing_about(stack):
    unnumbered = [
        patient(A, identifier=None),
        patient(A, identifier=None, id="x"),
        patient(B, identifier=[{"system": NHS_NUMBER_SYSTEM, "value": v} for v in (A, B)]),
    ]
    stack.server.answers["search"] = searchset(patient(A), *unnumbered)

    found = records(stack.lookup(demographics=ASKED))

    assert len({r.record_id for r in found}) == 4
    assert [r.identifiers.nhs_number for r in found].count(None) == 3
    assert all(r.record_id.startswith(UNNUMBERED) for r in found if not r.identifiers.nhs_number)
    assert asked_about(stack) == [f"related /pds/Patient/{A}/RelatedPerson"]


def test_a_partial_birth_date_is_no_date_of_birth_not_a_failure(stack):
    stack.server.answers["read"] = patient(A, birthDate="2015")

    [record] = records(stack.lookup(nhs=A))

    assert record.date_of_birth is None
    assert record.name == AMELIA.name


def test_a_search_candidate_with_a_partial_birth_date_is_still_a_candidate(stack):
    stack.server.answers["search"] = searchset(patient(A), patient(B, birthDate="2015-03"))

    found = records(stack.lookup(demographics=ASKED))

    assert [(r.record_id, r.date_of_birth) for r in found] == [
        (A, AMELIA.date_of_birth),
        (B, None),
    ]


@pytest.mark.parametrize("severity", ["information", "warning"])
def test_an_informational_outcome_in_a_cp_is_answer_is_not_a_result(stack, severity):
    stack.server.answers["flags"] = searchset(outcome=outcome(severity))

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=False, looked_after=False)


@pytest.mark.parametrize(
    ("route", "result"), [("flags", plan_flag(A)), ("search", patient(A))], ids=["cp-is", "pds"]
)
def test_an_error_outcome_in_a_search_answer_fails_the_lookup(stack, route, result):
    """PDS's was ignored: the results beside it read as the whole answer."""
    stack.server.answers[route] = searchset(result, outcome=outcome("error"))

    assert error(stack.lookup(nhs=A, demographics=ASKED)) == (500, ErrorCode.INTERNAL)


PADDED_PATIENT = json.dumps(patient()).encode()[:-1] + b" " * (MAX_ANSWER_BYTES + 1) + b"}"
"""A Patient valid as it stands, once its whitespace is read past the cap."""


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


@pytest.mark.parametrize(
    "answer",
    [
        lambda: StreamingResponse(_streamed(PADDED_PATIENT), media_type=FHIR_JSON),
        lambda: raw(gzip.compress(PADDED_PATIENT), **{"content-encoding": "gzip"}),
    ],
    ids=["past-the-cap", "gzip"],
)
def test_a_fhir_answer_too_large_or_compressed_is_not_read(stack, answer):
    """Read whole, an endless answer grew the connector to 1.3 GB, a 2 MB gzip bomb to 1.1 GB."""
    stack.server.answers["read"] = answer()

    assert error(stack.lookup(nhs=A)) == (500, ErrorCode.INTERNAL)


@pytest.fixture
def token_stack(served: tuple[HostileServer, str]) -> Iterator[Stack]:
    _, url = served
    auth = SignedJwtAuth(
        token_url=f"{url}/token", client_id="client", private_key=TOKEN_KEY, key_id="kid"
    )
    yield from connected(served, auth=auth)


def test_a_token_service_answering_as_nhs_england_does_is_used(token_stack):
    [record] = records(token_stack.lookup(nhs=A))

    assert record.identifiers.nhs_number == A


@pytest.mark.parametrize(
    "answer",
    [
        b'{"access_token": "t", "expires_in": 1' + b"0" * 400 + b"}",
        b'{"access_token": "t", "expires_in": NaN}',
        b'{"access_token": "t", "expires_in": 1e999}',
        b'{"access_token": "t", "expires_in": 0}',
        b'{"access_token": "t", "expires_in": "172800"}',
        json.dumps({"access_token": "t\u00e9\u4e2d", "expires_in": 599}).encode(),
        json.dumps({"access_token": "t\r\nX-Evil: 1", "expires_in": 599}).encode(),
        b'{"access_token": "' + b"A" * 100_000 + b'", "expires_in": 599}',
    ],
    ids=["huge-int", "nan", "infinite", "zero", "two-days", "non-ascii", "crlf", "huge-token"],
)
def test_a_token_answer_that_cannot_be_used_leaves_the_source_unavailable(token_stack, answer):
    token_stack.server.answers["token"] = raw(answer)

    assert error(token_stack.lookup(nhs=A)) == (503, ErrorCode.UNAVAILABLE)
    assert [call for call in token_stack.server.calls if not call.startswith("token")] == []
