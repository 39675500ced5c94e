import asyncio
import logging
import runpy
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware.base import BaseHTTPMiddleware

from connectors.app import create_connector_app
from connectors.backend import ConnectorError
from connectors.protocol import (
    LOOKUP_PATH,
    Address,
    Caller,
    ConnectorRecord,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
    PersonName,
)
from connectors.serving import BackgroundServer

NHS_NUMBER = "9434765919"
FAMILY_NAME = "Featherstonehaugh"

RECORD = ConnectorRecord(
    record_id="H-1",
    identifiers=Identifiers(nhs_number=NHS_NUMBER),
    name=PersonName(given="Ada", family=FAMILY_NAME),
    address=Address(lines=["1 High Street"], postcode="NT1 1AA"),
    as_of=datetime(2025, 7, 1, tzinfo=UTC),
)


@dataclass
class StubBackend:
    """Answers with `records` after `delay_s`, or raises `error`; remembers what it was asked."""

    records: list[ConnectorRecord] = field(default_factory=list)
    error: Exception | None = None
    delay_s: float = 0.0
    requests: list[LookupRequest] = field(default_factory=list)
    cancelled: bool = False

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        self.requests.append(request)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.records


@dataclass
class Switchboard:
    """The backend the shared server serves: each test plugs in its own fresh StubBackend."""

    current: StubBackend = field(default_factory=StubBackend)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        return await self.current.lookup(request)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, httpx.Client]]:
    switchboard = Switchboard()
    app = create_connector_app(switchboard, source="health")
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield switchboard, client


@pytest.fixture
def backend(server: tuple[Switchboard, httpx.Client]) -> StubBackend:
    server[0].current = StubBackend()
    return server[0].current


@pytest.fixture
def client(server: tuple[Switchboard, httpx.Client], backend: StubBackend) -> httpx.Client:
    return server[1]


def lookup_body(deadline_in: float = 5.0, **changes: Any) -> dict[str, Any]:
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_in),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="health_visitor", organisation="RX1"),
        identifiers=Identifiers(nhs_number=NHS_NUMBER),
        fields=[FieldId.NAME],
    )
    return request.model_dump(mode="json") | changes


def error_of(response: httpx.Response) -> tuple[int, ErrorCode, str]:
    error = ErrorResponse.model_validate_json(response.content).error
    return response.status_code, error.code, error.message


def test_lookup_answers_with_records_minimised_to_the_requested_fields(client, backend):
    backend.records = [RECORD]

    response = client.post(LOOKUP_PATH, json=lookup_body())

    assert response.status_code == 200
    answer = LookupResponse.model_validate_json(response.content)
    assert (answer.request_id, answer.source) == ("req-1", "health")
    assert [record.name for record in answer.records] == [RECORD.name]
    assert answer.records[0].address is None
    assert backend.requests[0].identifiers.nhs_number == NHS_NUMBER


def test_healthz_names_the_source(client):
    response = client.get("/healthz")

    assert response.json() == {"status": "ok", "source": "health"}


def test_malformed_json_is_a_bad_request_without_a_stack_trace(client):
    response = client.post(LOOKUP_PATH, content=b'{"request_id": ')

    status, code, message = error_of(response)
    assert (status, code) == (400, ErrorCode.BAD_REQUEST)
    assert "Traceback" not in message
    assert len(message) < 200


def test_schema_error_names_the_field_but_never_echoes_the_value(client):
    body = lookup_body(identifiers={"nhs_number": int(NHS_NUMBER)})

    response = client.post(LOOKUP_PATH, json=body)

    status, code, message = error_of(response)
    assert (status, code) == (400, ErrorCode.BAD_REQUEST)
    assert "identifiers.nhs_number" in message
    assert NHS_NUMBER not in response.text


def test_other_protocol_version_is_unsupported_even_when_its_schema_differs(client, backend):
    body = lookup_body(protocol_version="2", consent_basis="new in v2")

    response = client.post(LOOKUP_PATH, json=body)

    assert error_of(response)[:2] == (400, ErrorCode.UNSUPPORTED_VERSION)
    assert backend.requests == []


def test_deadline_without_utc_offset_is_refused(client):
    naive = (datetime.now(UTC) + timedelta(seconds=5)).replace(tzinfo=None)

    response = client.post(LOOKUP_PATH, json=lookup_body(deadline=naive.isoformat()))

    assert error_of(response)[:2] == (400, ErrorCode.BAD_REQUEST)


@pytest.mark.parametrize(
    ("identifiers", "named"),
    [
        ({"nhs_number": "943 476 5919"}, "identifiers.nhs_number"),
        ({"nhs_number": "9434765918"}, "identifiers.nhs_number"),
        ({"nhs_number": "٩٤٣٤٧٦٥٩١٩"}, "identifiers.nhs_number"),
        ({"upn": "h801200001001"}, "identifiers.upn"),
        ({"upn": "A801200001001"}, "identifiers.upn"),
        ({"nhs_number": NHS_NUMBER, "upn": "H80120000100A"}, "identifiers.upn"),
    ],
)
def test_an_identifier_not_as_the_gateway_sends_one_is_refused_not_answered_no_record(
    client, backend, identifiers, named
):
    backend.records = [RECORD]

    response = client.post(LOOKUP_PATH, json=lookup_body(identifiers=identifiers))

    status, code, message = error_of(response)
    assert (status, code) == (400, ErrorCode.BAD_REQUEST)
    assert message.startswith(named)
    assert backend.requests == []
    assert NHS_NUMBER not in response.text


def test_identifiers_as_the_gateway_sends_them_and_a_local_id_of_any_form_are_asked(
    client, backend
):
    identifiers = {"nhs_number": NHS_NUMBER, "upn": "H801200001001", "local_id": "la 1/ß"}

    response = client.post(LOOKUP_PATH, json=lookup_body(identifiers=identifiers))

    assert response.status_code == 200
    assert backend.requests[0].identifiers.model_dump() == identifiers


def test_expired_deadline_is_refused_without_asking_the_backend(client, backend):
    backend.records = [RECORD]

    response = client.post(LOOKUP_PATH, json=lookup_body(deadline_in=-1))

    assert error_of(response)[:2] == (504, ErrorCode.DEADLINE_EXCEEDED)
    assert backend.requests == []


def test_slow_backend_is_cut_off_at_the_deadline_and_cancelled(client, backend):
    backend.records, backend.delay_s = [RECORD], 30

    started = time.monotonic()
    response = client.post(LOOKUP_PATH, json=lookup_body(deadline_in=0.3))
    elapsed = time.monotonic() - started

    assert error_of(response)[:2] == (504, ErrorCode.DEADLINE_EXCEEDED)
    assert elapsed < 2
    assert backend.cancelled


def test_backend_own_timeout_is_a_failure_not_the_deadline(client, backend):
    backend.error = TimeoutError()

    response = client.post(LOOKUP_PATH, json=lookup_body())

    assert error_of(response)[:2] == (500, ErrorCode.INTERNAL)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.BAD_REQUEST, 400),
        (ErrorCode.UNSUPPORTED_VERSION, 400),
        (ErrorCode.FORBIDDEN, 403),
        (ErrorCode.DEADLINE_EXCEEDED, 504),
        (ErrorCode.UNAVAILABLE, 503),
        (ErrorCode.INTERNAL, 500),
    ],
)
def test_connector_error_keeps_its_code_and_message(client, backend, code, status):
    backend.error = ConnectorError(code, "Records system is down for maintenance.")

    response = client.post(LOOKUP_PATH, json=lookup_body())

    assert error_of(response) == (status, code, "Records system is down for maintenance.")


def test_unexpected_exception_is_internal_and_its_message_stays_out_of_response_and_logs(
    client, backend, caplog
):
    backend.error = KeyError(f"{FAMILY_NAME} {NHS_NUMBER}")

    with caplog.at_level(logging.INFO, logger="childlookup.connector"):
        response = client.post(LOOKUP_PATH, json=lookup_body())

    assert error_of(response)[:2] == (500, ErrorCode.INTERNAL)
    assert NHS_NUMBER not in response.text
    assert "Traceback" not in response.text
    assert "KeyError" in caplog.text
    assert NHS_NUMBER not in caplog.text
    assert FAMILY_NAME not in caplog.text


def test_a_backend_finding_more_records_than_an_answer_holds_is_an_internal_fault(client, backend):
    backend.records = [RECORD.model_copy(update={"record_id": f"H-{i}"}) for i in range(51)]
    status, code, message = error_of(client.post(LOOKUP_PATH, json=lookup_body()))
    assert (status, code) == (500, ErrorCode.INTERNAL)
    assert "at most 50" in message


def test_successful_lookup_is_logged_without_the_child(client, backend, caplog):
    backend.records = [RECORD]

    with caplog.at_level(logging.INFO, logger="childlookup.connector"):
        client.post(LOOKUP_PATH, json=lookup_body())

    assert "request_id=req-1" in caplog.text
    assert "records=1" in caplog.text
    assert NHS_NUMBER not in caplog.text
    assert FAMILY_NAME not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", LOOKUP_PATH, 405),
        ("POST", "/healthz", 405),
        ("POST", LOOKUP_PATH + "/", 404),
        ("GET", "/no-such-path", 404),
    ],
)
def test_paths_and_methods_not_served_are_protocol_errors_never_redirects(
    client, method, path, status
):
    """Starlette answered these in plain text, and a trailing slash with a redirect built from
    the request's Host header, repeating the POST there."""
    response = client.request(method, path, headers={"host": "elsewhere.example"})
    assert error_of(response)[:2] == (status, ErrorCode.BAD_REQUEST)
    assert "location" not in response.headers
    if status == 405:
        assert response.headers["allow"]


def test_a_client_gone_mid_body_is_a_logged_refusal_not_a_traceback(server, backend, caplog):
    url = httpx.URL(server[1].base_url)
    with caplog.at_level(logging.INFO):
        with socket.create_connection((url.host, url.port), timeout=5) as sock:
            sock.sendall(
                f"POST {LOOKUP_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                "content-length: 100\r\n\r\n{".encode()
            )
        deadline = time.monotonic() + 5
        while "outcome=BAD_REQUEST" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "outcome=BAD_REQUEST" in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert backend.requests == []


def test_oversize_body_is_refused(client, backend):
    response = client.post(LOOKUP_PATH, json=lookup_body(purpose="x" * 70_000))

    assert error_of(response)[:2] == (413, ErrorCode.BAD_REQUEST)
    assert backend.requests == []


def test_oversize_chunked_body_without_length_is_refused(client):
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = client.post(LOOKUP_PATH, content=chunks())

    assert "content-length" not in response.request.headers
    assert error_of(response)[:2] == (413, ErrorCode.BAD_REQUEST)


def test_documented_example_backend_runs_and_refuses_with_its_code(tmp_path):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "connector-protocol.md").read_text()
    section = doc.split("## Implementing a backend", 1)[1]
    snippet = tmp_path / "youth_justice.py"
    snippet.write_text(section.split("```python\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    app = runpy.run_path(str(snippet))["app"]

    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as example:
        answered = example.post(LOOKUP_PATH, json=lookup_body())
        refused = example.post(LOOKUP_PATH, json=lookup_body(purpose="DIRECT_CARE"))

    records = LookupResponse.model_validate_json(answered.content).records
    assert [(r.record_id, r.name is not None) for r in records] == [("YJ-1", True)]
    assert error_of(refused)[:2] == (403, ErrorCode.FORBIDDEN)


def test_an_agency_s_own_middleware_sees_every_lookup():
    seen = []

    async def middleware(request, call_next):
        seen.append((request.method, request.url.path))
        return await call_next(request)

    app = create_connector_app(StubBackend(records=[RECORD]), source="health")
    app.add_middleware(BaseHTTPMiddleware, dispatch=middleware)

    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as agency:
        response = agency.post(LOOKUP_PATH, json=lookup_body())

    assert response.status_code == 200
    assert seen == [("POST", LOOKUP_PATH)]
