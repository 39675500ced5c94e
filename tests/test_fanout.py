"""Fan-out against real connector servers on loopback, healthy and misbehaving."""

import asyncio
import socket
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from connectors.app import create_connector_app
from connectors.backend import ConnectorError
from connectors.protocol import ErrorCode, FieldId, LookupRequest
from connectors.serving import BackgroundServer, free_port
from gateway.breakers import CIRCUIT_OPEN, Breakers, CircuitState
from gateway.cache import AnswerCache
from gateway.config import SourceConfig
from gateway.fanout import FanOut
from gateway.transport import ConnectorTransport
from gateway.types import Caller, LookupQuery, Plan, Purpose, SourceStatus
from tests.factories import NHS, health_record, lookup_context

QUERY = LookupQuery(nhs_number=NHS, purpose=Purpose.DIRECT_CARE)
ALL_FIELDS = frozenset(FieldId)


class RecordingBackend:
    """Answers with fixed records (or a fault) and remembers every request it saw."""

    def __init__(self, records=(), delay_s=0.0, error=None):
        self.records, self.delay_s, self.error = list(records), delay_s, error
        self.requests: list[LookupRequest] = []

    async def lookup(self, request):
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error:
            raise self.error
        return self.records


def _raw_app(body: bytes, status: int = 200) -> Starlette:
    async def lookup(request):
        return Response(body, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/v1/lookup", lookup, methods=["POST"])])


def _source(name, url, timeout_ms=1000, provides=tuple(FieldId)):
    return SourceConfig(name=name, url=url, timeout_ms=timeout_ms, provides=provides)


async def _ask(sources, plan=None, deadline_s=3.0, cache=None):
    plan = plan or Plan(True, None, ALL_FIELDS, tuple(s.name for s in sources), "d1")
    async with ConnectorTransport() as transport:
        fanout = FanOut(sources, transport, cache or AnswerCache(0))
        lookup = lookup_context(QUERY, deadline_s=deadline_s)
        started = time.monotonic()
        answers = await fanout.ask(lookup, plan)
        return {a.source: a for a in answers}, time.monotonic() - started


@pytest.mark.anyio
async def test_healthy_sources_answer_with_records_or_no_record():
    with (
        BackgroundServer(
            create_connector_app(RecordingBackend([health_record()]), source="health")
        ) as h,
        BackgroundServer(create_connector_app(RecordingBackend(), source="education")) as e,
    ):
        answers, _ = await _ask([_source("health", h.url), _source("education", e.url)])
    assert answers["health"].status is SourceStatus.ANSWERED
    assert answers["health"].records[0].identifiers.nhs_number == NHS
    assert answers["education"].status is SourceStatus.NO_RECORD


@pytest.mark.anyio
async def test_a_slow_source_times_out_and_the_rest_still_answer():
    slow = RecordingBackend([health_record()], delay_s=5.0)
    with (
        BackgroundServer(create_connector_app(slow, source="slow")) as s,
        BackgroundServer(
            create_connector_app(RecordingBackend([health_record()]), source="fast")
        ) as f,
    ):
        answers, elapsed = await _ask([_source("slow", s.url, 300), _source("fast", f.url)])
    assert answers["slow"].status is SourceStatus.TIMED_OUT
    assert answers["fast"].status is SourceStatus.ANSWERED
    assert elapsed < 2.5  # bounded by the 300 ms timeout, far below the 5 s the source takes


@pytest.mark.anyio
async def test_the_overall_deadline_caps_a_generous_source_timeout():
    slow = RecordingBackend([health_record()], delay_s=5.0)
    with BackgroundServer(create_connector_app(slow, source="slow")) as s:
        answers, elapsed = await _ask([_source("slow", s.url, 10_000)], deadline_s=0.3)
    assert answers["slow"].status is SourceStatus.TIMED_OUT
    assert elapsed < 2.5
    assert slow.requests[0].deadline.timestamp() < time.time() + 1


@pytest.mark.anyio
async def test_a_dead_source_fails_without_failing_the_lookup():
    answers, _ = await _ask([_source("dead", f"http://127.0.0.1:{free_port()}")])
    assert answers["dead"].status is SourceStatus.FAILED
    assert answers["dead"].error_code == "CONNECTION_FAILED"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 200),
        (
            b'{"protocol_version": "1", "request_id": "req-1", "source": "bad", "records": [{}]}',
            200,
        ),
        (b"<html>oops</html>", 500),
        (
            b'{"protocol_version": "1", "request_id": "req-1", "source": "bad", "records": [],'
            b' "extra": 1}',
            200,
        ),
    ],
)
@pytest.mark.anyio
async def test_malformed_answers_are_a_failed_source_not_data(body, status):
    with BackgroundServer(_raw_app(body, status)) as bad:
        answers, _ = await _ask([_source("bad", bad.url)])
    assert answers["bad"].status is SourceStatus.FAILED
    assert answers["bad"].error_code == "MALFORMED_RESPONSE"
    assert answers["bad"].records == ()


@pytest.mark.anyio
async def test_an_answer_to_another_request_is_refused():
    body = b'{"protocol_version": "1", "request_id": "someone-else", "source": "s", "records": []}'
    with BackgroundServer(_raw_app(body)) as s:
        answers, _ = await _ask([_source("s", s.url)])
    assert answers["s"].status is SourceStatus.FAILED


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.FORBIDDEN, SourceStatus.WITHHELD),
        (ErrorCode.UNAVAILABLE, SourceStatus.FAILED),
        (ErrorCode.DEADLINE_EXCEEDED, SourceStatus.TIMED_OUT),
    ],
)
@pytest.mark.anyio
async def test_typed_connector_errors_map_to_statuses(code, status):
    backend = RecordingBackend(error=ConnectorError(code, "no"))
    with BackgroundServer(create_connector_app(backend, source="s")) as s:
        answers, _ = await _ask([_source("s", s.url)])
    assert answers["s"].status is status
    assert answers["s"].error_code == code.value


@pytest.mark.anyio
async def test_only_planned_sources_are_asked_and_only_for_fields_they_provide():
    health, school = RecordingBackend([health_record()]), RecordingBackend()
    provides = (FieldId.NHS_NUMBER, FieldId.NAME, FieldId.SCHOOL)
    fields = frozenset({FieldId.NAME, FieldId.ADDRESS, FieldId.NHS_NUMBER})
    plan = Plan(True, None, fields, ("health",), "d1")
    with (
        BackgroundServer(create_connector_app(health, source="health")) as h,
        BackgroundServer(create_connector_app(school, source="education")) as e,
    ):
        answers, _ = await _ask(
            [_source("health", h.url, provides=provides), _source("education", e.url)], plan=plan
        )
    assert answers["education"].status is SourceStatus.NOT_ASKED
    assert school.requests == []
    assert set(health.requests[0].fields) == {FieldId.NAME, FieldId.NHS_NUMBER}
    assert health.requests[0].caller.role == "gp"


@pytest.mark.anyio
async def test_repeat_lookups_are_served_from_the_short_cache():
    backend = RecordingBackend([health_record()])
    cache = AnswerCache(ttl_s=30)
    with BackgroundServer(create_connector_app(backend, source="health")) as h:
        first, _ = await _ask([_source("health", h.url)], cache=cache)
        second, _ = await _ask([_source("health", h.url)], cache=cache)
    assert not first["health"].cached
    assert second["health"].cached
    assert second["health"].records == first["health"].records
    assert len(backend.requests) == 1


class SafeguardingOnly(RecordingBackend):
    """As docs/connector-protocol.md's youth justice example: answers safeguarding enquiries by
    the local authority, and refuses every other purpose and caller."""

    async def lookup(self, request):
        self.requests.append(request)
        if request.purpose != "SAFEGUARDING_ENQUIRY" or request.caller.organisation != "LA-LEEDS":
            raise ConnectorError(ErrorCode.FORBIDDEN, "Safeguarding enquiries only.")
        return [health_record()]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("purpose", "organisation"),
    [(Purpose.DIRECT_CARE, "LA-LEEDS"), (Purpose.SAFEGUARDING_ENQUIRY, "A81001")],
)
async def test_an_answer_kept_for_one_purpose_and_caller_is_not_given_to_another(
    purpose, organisation
):
    """The agency refuses the second question: served from the cache, its records would go to a
    caller it refused, and it would never hear of the request."""
    backend = SafeguardingOnly()
    plan = Plan(True, None, ALL_FIELDS, ("yj",), "d1")
    with BackgroundServer(create_connector_app(backend, source="yj")) as server:
        async with ConnectorTransport() as transport:
            fanout = FanOut([_source("yj", server.url)], transport, AnswerCache(ttl_s=30))
            answers = []
            for asked_for, by in (
                (Purpose.SAFEGUARDING_ENQUIRY, "LA-LEEDS"),
                (purpose, organisation),
            ):
                query = LookupQuery(nhs_number=NHS, purpose=asked_for)
                caller = Caller(subject="s", name="N", role="social_worker", organisation=by)
                (answer,) = await fanout.ask(lookup_context(query, caller), plan)
                answers.append(answer)
    assert [a.status for a in answers] == [SourceStatus.ANSWERED, SourceStatus.WITHHELD]
    assert not answers[1].cached
    assert len(backend.requests) == 2


def test_a_kept_answer_is_found_only_for_the_same_source_child_and_fields():
    """A key shared by two lookups would hand one child's answer to another's."""
    from datetime import UTC, date, datetime, timedelta

    from connectors.protocol import Caller, Demographics, Identifiers

    def request(
        nhs=NHS, upn=None, demographics=None, request_id="r-1", purpose="DIRECT_CARE", org="A81001"
    ):
        return LookupRequest(
            request_id=request_id,
            deadline=datetime.now(UTC) + timedelta(seconds=5),
            purpose=purpose,
            caller=Caller(role="gp", organisation=org),
            identifiers=Identifiers(nhs_number=nhs, upn=upn),
            demographics=demographics,
            fields=[FieldId.NAME],
        )

    cache = AnswerCache(ttl_s=30)
    name, both = frozenset({FieldId.NAME}), frozenset({FieldId.NAME, FieldId.ADDRESS})

    def key(source, request, fields, subject="gp-1"):
        return cache.key(source, request, fields, subject=subject)

    child = Demographics(given="Ada", family="Smith", date_of_birth=date(2015, 1, 2))
    keys = [
        key("health", request(), name),
        key("education", request(), name),
        key("health", request(), both),
        key("health", request(nhs="9434765870"), name),
        key("health", request(nhs=None, upn="A123456789012"), name),
        key("health", request(nhs=None, demographics=child), name),
        key(
            "health",
            request(nhs=None, demographics=child.model_copy(update={"given": "Eve"})),
            name,
        ),
        # An agency may refuse a purpose or a caller: its answer to one is no answer to another.
        key("health", request(purpose="SAFEGUARDING_ENQUIRY"), name),
        key("health", request(org="B82002"), name),
        # Nor may a colleague's lookup learn from it that someone looked the child up.
        key("health", request(), name, subject="gp-2"),
    ]
    assert len(set(keys)) == len(keys)
    assert key("health", request(request_id="r-2"), name) == keys[0]  # the same question
    assert AnswerCache(ttl_s=0).key("health", request(), name, subject="gp-1") is None


@pytest.mark.anyio
async def test_failures_are_not_cached():
    backend = RecordingBackend(error=ConnectorError(ErrorCode.UNAVAILABLE, "down"))
    cache = AnswerCache(ttl_s=30)
    with BackgroundServer(create_connector_app(backend, source="s")) as s:
        await _ask([_source("s", s.url)], cache=cache)
        await _ask([_source("s", s.url)], cache=cache)
    assert len(backend.requests) == 2


# --- circuit breakers and the one retry of a refused connection ----------------------------------


def _counting_app(delay_s: float) -> tuple[Starlette, list[int]]:
    """A connector that counts the requests reaching it and answers none within `delay_s`."""
    seen: list[int] = []

    async def lookup(request):
        seen.append(1)
        await asyncio.sleep(delay_s)
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/v1/lookup", lookup, methods=["POST"])]), seen


async def _ask_each(fanout, sources, times, deadline_s=3.0):
    """Ask `sources` through `fanout` `times` times, one lookup after the other."""
    plan = Plan(True, None, ALL_FIELDS, tuple(s.name for s in sources), "d1")
    answers = []
    for _ in range(times):
        asked = await fanout.ask(lookup_context(QUERY, deadline_s=deadline_s), plan)
        answers.append({a.source: a for a in asked})
    return answers


@pytest.mark.anyio
async def test_a_hung_source_is_skipped_once_its_circuit_opens():
    app, seen = _counting_app(delay_s=5.0)
    with BackgroundServer(app) as hung:
        sources = [_source("hung", hung.url, timeout_ms=150)]
        async with ConnectorTransport() as transport:
            breakers = Breakers(["hung"], 3, 60.0)
            fanout = FanOut(sources, transport, AnswerCache(0), breakers=breakers)
            answers = await _ask_each(fanout, sources, 5)
    assert [a["hung"].error_code for a in answers] == ["TIMEOUT"] * 3 + [CIRCUIT_OPEN] * 2
    skipped = answers[-1]["hung"]
    assert skipped.status is SourceStatus.FAILED
    assert skipped.latency_ms == 0.0
    assert len(seen) == 3  # the skipped lookups never reached it


@pytest.mark.anyio
async def test_after_the_cool_down_a_probe_closes_the_circuit_when_answered():
    backend = RecordingBackend([health_record()], error=ConnectorError(ErrorCode.UNAVAILABLE, "x"))
    with BackgroundServer(create_connector_app(backend, source="health")) as h:
        sources = [_source("health", h.url)]
        breakers = Breakers(["health"], 2, cool_down_s=0.3)
        async with ConnectorTransport() as transport:
            fanout = FanOut(sources, transport, AnswerCache(0), breakers=breakers)
            failing = await _ask_each(fanout, sources, 3)
            backend.error = None  # the agency is back
            still_open = await _ask_each(fanout, sources, 1)
            await asyncio.sleep(0.35)
            after = await _ask_each(fanout, sources, 2)
    assert [a["health"].error_code for a in failing] == ["UNAVAILABLE"] * 2 + [CIRCUIT_OPEN]
    assert still_open[0]["health"].error_code == CIRCUIT_OPEN
    assert [a["health"].status for a in after] == [SourceStatus.ANSWERED] * 2
    assert breakers.states() == {"health": CircuitState.CLOSED}
    assert len(backend.requests) == 4


@pytest.mark.anyio
async def test_a_failed_probe_opens_the_circuit_again():
    backend = RecordingBackend(error=ConnectorError(ErrorCode.UNAVAILABLE, "down"))
    with BackgroundServer(create_connector_app(backend, source="s")) as s:
        sources = [_source("s", s.url)]
        breakers = Breakers(["s"], 1, cool_down_s=0.3)
        async with ConnectorTransport() as transport:
            fanout = FanOut(sources, transport, AnswerCache(0), breakers=breakers)
            await _ask_each(fanout, sources, 1)
            await asyncio.sleep(0.35)
            probe, after = await _ask_each(fanout, sources, 2)
    assert probe["s"].error_code == "UNAVAILABLE"
    assert after["s"].error_code == CIRCUIT_OPEN
    assert len(backend.requests) == 2


class _ListenOnRefusal(ConnectorTransport):
    """The real transport, except that when a connection is refused it starts the connector on
    the socket that refused it: the next connection is accepted."""

    def __init__(self, sock, app):
        super().__init__()
        self._sock, self._app = sock, app
        self.refused = 0
        self.server = None

    async def _connect(self, origin, within_s):
        try:
            return await super()._connect(origin, within_s)
        except httpx.ConnectError:
            self.refused += 1
            if self.server is None:
                self.server = BackgroundServer(self._app, sock=self._sock).start()
            raise

    async def aclose(self):
        await super().aclose()
        if self.server is not None:
            self.server.stop()


def _bound_not_listening() -> socket.socket:
    """A port that refuses connections until something listens on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize(
    ("deadline_s", "retried"),
    [(3.0, True), (0.1, False)],  # 0.1 s leaves no time for a second try
)
@pytest.mark.anyio
async def test_a_refused_connection_is_tried_once_more_if_there_is_time(deadline_s, retried):
    sock = _bound_not_listening()
    backend = RecordingBackend([health_record()])
    transport = _ListenOnRefusal(sock, create_connector_app(backend, source="health"))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with transport:
        fanout = FanOut([_source("health", url)], transport, AnswerCache(0))
        (answers,) = await _ask_each(fanout, [_source("health", url)], 1, deadline_s)
    assert transport.refused == 1
    if retried:
        assert answers["health"].status is SourceStatus.ANSWERED
        assert len(backend.requests) == 1
    else:
        assert answers["health"].error_code == "CONNECTION_FAILED"
        assert backend.requests == []


@pytest.mark.anyio
async def test_a_source_that_keeps_refusing_is_tried_twice_per_lookup_then_skipped():
    port = free_port()
    sources = [_source("dead", f"http://127.0.0.1:{port}")]
    async with ConnectorTransport() as transport:
        fanout = FanOut(sources, transport, AnswerCache(0), breakers=Breakers(["dead"], 2, 60.0))
        answers = await _ask_each(fanout, sources, 3)
    assert [a["dead"].error_code for a in answers] == ["CONNECTION_FAILED"] * 2 + [CIRCUIT_OPEN]
