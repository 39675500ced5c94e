"""The connector SDK at its edges: what an agency's connector sends back, and what it accepts.

Each test drives a real connector app (`create_connector_app`) over a real socket, with a backend
written the way an agency might write one.
"""

import asyncio
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.app import create_connector_app
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    PersonName,
    RecordFlags,
)
from connectors.serving import BackgroundServer

NHS_NUMBER = "9434765919"
MOTHER_NHS_NUMBER = "9434765870"
SECRET_ADDRESS = "14 Refuge Close"
AS_OF = datetime(2025, 7, 1, tzinfo=UTC)


@dataclass
class AgencyBackend:
    """Answers with whatever `answer` builds, or raises what it raises."""

    answer: Any = None
    requests: list[LookupRequest] = field(default_factory=list)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        self.requests.append(request)
        return await self.answer()


@dataclass
class Switchboard:
    current: AgencyBackend = field(default_factory=AgencyBackend)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        return await self.current.lookup(request)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, httpx.Client]]:
    switchboard = Switchboard()
    app = create_connector_app(switchboard, source="social_care")
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield switchboard, client


@pytest.fixture
def backend(server: tuple[Switchboard, httpx.Client]) -> AgencyBackend:
    server[0].current = AgencyBackend()
    return server[0].current


@pytest.fixture
def client(server: tuple[Switchboard, httpx.Client], backend: AgencyBackend) -> httpx.Client:
    return server[1]


def lookup_body(fields: list[FieldId], **changes: Any) -> dict[str, Any]:
    request = LookupRequest(
        request_id="req-review-1",
        deadline=datetime.now(UTC) + timedelta(seconds=5),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="health_visitor", organisation="RX1"),
        identifiers=Identifiers(nhs_number=NHS_NUMBER),
        fields=fields,
    )
    return request.model_dump(mode="json") | changes


def coded_error(response: httpx.Response) -> tuple[int, ErrorCode]:
    """The response's status and protocol error code; fails the test on a non-protocol body."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    error = ErrorResponse.model_validate_json(response.content).error
    return response.status_code, error.code


def test_a_record_built_without_validation_cannot_carry_a_carer_s_extra_details_out(
    client, backend, caplog
):
    """A backend that builds records fast from database rows (`model_construct`, as the SDK's
    own minimisation does) and leaves a carer as the row's dict: the row's extra columns (the
    carer's refuge address) left the connector, and pydantic's serializer warning quoted the row
    into the connector's stderr. Minimisation is the agency's promise: only the protocol's
    members may leave, and a record the SDK cannot vouch for is an INTERNAL fault."""

    async def answer() -> list[ConnectorRecord]:
        carer_row = {
            "name": "Jo Hart",
            "relationship": "mother",
            "parental_responsibility": True,
            "address": SECRET_ADDRESS,  # a column the protocol does not define
        }
        return [
            ConnectorRecord.model_construct(
                record_id="LA-1",
                identifiers=Identifiers(nhs_number=NHS_NUMBER),
                name=PersonName(given="Amelia", family="Hart"),
                carers=[carer_row],
                flags=RecordFlags(shielded=True),
                as_of=AS_OF,
            )
        ]

    backend.answer = answer
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.INFO, logger="childlookup.connector"),
    ):
        warnings.simplefilter("always")
        response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME, FieldId.CARERS]))

    assert SECRET_ADDRESS not in response.text
    assert coded_error(response) == (500, ErrorCode.INTERNAL)
    assert not any(SECRET_ADDRESS in str(w.message) for w in caught)
    assert not any("Jo Hart" in str(w.message) for w in caught)
    assert SECRET_ADDRESS not in caplog.text


def test_identifiers_built_from_a_row_cannot_carry_another_person_s_number_out(client, backend):
    """Identifiers are always sent; a backend that left them as its row's dict sent every column
    of it - here the mother's NHS number - to the gateway."""

    async def answer() -> list[ConnectorRecord]:
        return [
            ConnectorRecord.model_construct(
                record_id="LA-1",
                identifiers={"nhs_number": NHS_NUMBER, "mother_nhs_number": MOTHER_NHS_NUMBER},
                flags=RecordFlags(),
                as_of=AS_OF,
            )
        ]

    backend.answer = answer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME]))

    assert MOTHER_NHS_NUMBER not in response.text
    assert coded_error(response) == (500, ErrorCode.INTERNAL)


class _DatabaseRow:
    """Stands in for a driver's row object a backend forgot to convert (a record type with
    slots and no `__dict__`, as asyncpg's is)."""

    __slots__ = ("postcode",)

    def __init__(self, postcode: str) -> None:
        self.postcode = postcode


def test_a_record_that_cannot_be_serialised_is_a_coded_failure_and_is_logged(
    client, backend, caplog
):
    """A value the serialiser cannot write (a driver's row object left in a record) raised
    outside the SDK's error mapping: the gateway got uvicorn's plain-text 500 instead of a
    protocol ErrorResponse, and the connector wrote no lookup log line at all."""

    async def answer() -> list[ConnectorRecord]:
        return [
            ConnectorRecord.model_construct(
                record_id="LA-1",
                identifiers=Identifiers(nhs_number=NHS_NUMBER),
                address=_DatabaseRow("LS6 3AB"),
                flags=RecordFlags(),
                as_of=AS_OF,
            )
        ]

    backend.answer = answer
    with (
        warnings.catch_warnings(),
        caplog.at_level(logging.INFO, logger="childlookup.connector"),
    ):
        warnings.simplefilter("ignore")
        response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.ADDRESS]))

    assert coded_error(response) == (500, ErrorCode.INTERNAL)
    assert "LS6 3AB" not in response.text
    assert "request_id=req-review-1" in caplog.text
    assert "outcome=INTERNAL" in caplog.text
    assert "LS6 3AB" not in caplog.text


def test_a_backend_raising_cancelled_error_of_its_own_is_a_coded_failure(client, backend, caplog):
    """A backend awaiting work that something else cancelled (a pooled connection closed under
    it, a shared task stopped) raises CancelledError although nobody cancelled the lookup. It is
    not an Exception, so it escaped the SDK: the gateway got a plain-text 500 and the connector
    logged no lookup line. Only the lookup's own cancellation may pass through."""

    async def answer() -> list[ConnectorRecord]:
        other = asyncio.get_running_loop().create_future()
        other.cancel()  # work the backend shares, cancelled elsewhere
        return await other

    backend.answer = answer
    with caplog.at_level(logging.INFO, logger="childlookup.connector"):
        response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME]))

    assert coded_error(response) == (500, ErrorCode.INTERNAL)
    assert "outcome=INTERNAL" in caplog.text


def test_the_server_still_answers_after_those_failures(client, backend):
    """The crashes above leave the connector serving."""

    async def answer() -> list[ConnectorRecord]:
        return [
            ConnectorRecord(
                record_id="LA-1", identifiers=Identifiers(nhs_number=NHS_NUMBER), as_of=AS_OF
            )
        ]

    backend.answer = answer
    response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME]))
    assert response.status_code == 200
    assert response.json()["records"][0]["record_id"] == "LA-1"


@pytest.mark.parametrize("identifiers", [{}, {"local_id": ""}], ids=["none", "empty-local-id"])
def test_a_request_naming_nobody_is_refused_not_answered_no_record(tmp_path, identifiers):
    """A lookup with no identifier and no demographics could not have matched anything, yet the
    SDK asked the backend and answered "no record" (or, with an empty local id, the records of
    every child whose local id the agency holds as empty). The protocol's rule for identifiers
    it could not have matched is BAD_REQUEST, never a "no record" that means nothing."""
    from connectors.reference import create_reference_app

    path = tmp_path / "social_care.jsonl"
    path.write_text(
        ConnectorRecord(
            record_id="LA-7",
            identifiers=Identifiers(local_id=""),
            name=PersonName(given="Other", family="Child"),
            as_of=AS_OF,
        ).model_dump_json()
        + "\n"
    )
    app = create_reference_app("social_care", path)
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=10) as http:
        response = http.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME], identifiers=identifiers))

    assert "Other" not in response.text
    assert coded_error(response) == (400, ErrorCode.BAD_REQUEST)


def test_a_backend_refusing_with_a_code_the_protocol_lacks_is_a_coded_failure(
    client, backend, caplog
):
    """`ConnectorError("NOT_FOUND", ...)`: an agency's refusal with a code that is not an
    ErrorCode (Python does not enforce the hint). Looking up its HTTP status raised KeyError
    inside the SDK's error mapping, so the gateway got a plain-text 500 and no lookup was
    logged; it is the agency's fault, INTERNAL, like any other unexpected failure."""
    from connectors.backend import ConnectorError

    async def answer() -> list[ConnectorRecord]:
        raise ConnectorError("NOT_FOUND", "No such child.")  # type: ignore[arg-type]

    backend.answer = answer
    with caplog.at_level(logging.INFO, logger="childlookup.connector"):
        response = client.post(LOOKUP_PATH, json=lookup_body([FieldId.NAME]))

    assert coded_error(response) == (500, ErrorCode.INTERNAL)
    assert "outcome=INTERNAL" in caplog.text
