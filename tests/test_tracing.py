"""Lookup traces: a span per stage under the lookup's, continued by real connectors on loopback,
with no personal data in any attribute."""

import time

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from connectors.protocol import FieldId
from connectors.serving import BackgroundServer
from gateway.cache import AnswerCache
from gateway.config import SourceConfig, Tracing
from gateway.fanout import FanOut
from gateway.tracing import tracer_provider
from gateway.transport import ConnectorTransport
from gateway.types import LookupQuery, Plan, Purpose
from tests.factories import NHS, health_record, lookup_context, school_record, social_care_record
from tests.spans import span_exporter
from tests.stack import reference_stack

STAGES = {
    "admit",
    "plan",
    "fanout",
    "match",
    "second_round",
    "shield_safe",
    "decide",
    "merge",
    "audit",
}
RECORDS = {
    "health": [health_record()],
    "education": [school_record()],
    "social_care": [social_care_record()],
}


@pytest.fixture(scope="module")
def _exporter() -> InMemorySpanExporter:
    return span_exporter()


@pytest.fixture
def spans(_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    _exporter.clear()
    return _exporter


def _trace_of(exporter: InMemorySpanExporter, request_id: str) -> list[ReadableSpan]:
    """Every span in the trace of the lookup with `request_id`, once its lookup span has ended."""
    deadline = time.monotonic() + 5
    while True:
        roots = [
            s
            for s in exporter.get_finished_spans()
            if s.name == "lookup" and s.attributes.get("childlookup.request_id") == request_id
        ]
        if roots or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    (root,) = roots
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == root.context.trace_id]


def _one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in found if s.name == name]
    return span


def test_a_lookup_is_one_trace_with_a_span_per_stage(tmp_path, spans):
    with reference_stack(tmp_path, RECORDS) as stack:
        answer = stack.lookup("social_worker", NHS)["data"]["child"]
    found = _trace_of(spans, answer["requestId"])
    lookup = _one(found, "lookup")
    assert lookup.parent is None
    assert lookup.attributes["childlookup.outcome"] == "FOUND"
    assert lookup.attributes["childlookup.purpose"] == "SAFEGUARDING_ENQUIRY"
    assert lookup.attributes["childlookup.policy_revision"] == answer["policyRevision"]
    children = {s.name for s in found if s.parent and s.parent.span_id == lookup.context.span_id}
    assert children == STAGES
    fanout = _one(found, "fanout")
    per_source = [s for s in found if s.name == "fanout.source"]
    assert {s.attributes["childlookup.source"] for s in per_source} == set(RECORDS)
    assert all(s.parent.span_id == fanout.context.span_id for s in per_source)
    assert all(s.kind is SpanKind.CLIENT for s in per_source)
    assert {s.attributes["childlookup.source.status"] for s in per_source} == {"ANSWERED"}
    assert _one(found, "plan").attributes["childlookup.plan.permitted"] is True


def test_connectors_continue_the_lookups_trace(tmp_path, spans):
    with reference_stack(tmp_path, RECORDS) as stack:
        answer = stack.lookup("social_worker", NHS)["data"]["child"]
    found = _trace_of(spans, answer["requestId"])
    clients = {s.context.span_id: s for s in found if s.name == "fanout.source"}
    servers = [s for s in found if s.name == "connector.lookup"]
    assert len(servers) == len(RECORDS)
    for server in servers:
        assert server.kind is SpanKind.SERVER
        client = clients[server.parent.span_id]  # its parent is the gateway's request span
        assert server.parent.is_remote
        assert server.attributes["childlookup.source"] == client.attributes["childlookup.source"]
        assert server.attributes["childlookup.request_id"] == answer["requestId"]
        assert server.attributes["childlookup.outcome"] == "OK"


@pytest.mark.anyio
async def test_every_connector_request_carries_the_traceparent_of_its_span(spans):
    headers: list[httpx.Headers] = []

    async def lookup(request):
        headers.append(request.headers)
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/lookup", lookup, methods=["POST"])])
    query = LookupQuery(nhs_number=NHS, purpose=Purpose.DIRECT_CARE)
    with BackgroundServer(app) as server:
        source = SourceConfig(name="s", url=server.url, provides=tuple(FieldId))
        async with ConnectorTransport() as transport:
            fanout = FanOut([source], transport, AnswerCache(0))
            plan = Plan(True, None, frozenset(FieldId), ("s",), "d1")
            await fanout.ask(lookup_context(query), plan)
    (span,) = [s for s in spans.get_finished_spans() if s.name == "fanout.source"]
    context = span.context
    assert headers[0]["traceparent"].startswith(
        f"00-{context.trace_id:032x}-{context.span_id:016x}-"
    )
    assert span.status.status_code is StatusCode.ERROR  # `{}` is not an answer
    assert span.status.description == "MALFORMED_RESPONSE"


def test_no_span_attribute_holds_personal_data(tmp_path, spans):
    with reference_stack(tmp_path, RECORDS) as stack:
        answer = stack.lookup(
            "social_worker",
            NHS,
            purpose="CHILD_PROTECTION_ENQUIRY",
            justification="Section 47 enquiry opened after a referral today",
        )
        answer = answer["data"]["child"]
    assert answer["outcome"] == "FOUND"
    found = _trace_of(spans, answer["requestId"])
    values = " ".join(str(v) for s in found for v in s.attributes.values())
    for personal in [
        NHS,
        "Amelia",
        "Hart",
        "2019-03-04",
        "LS6 2AB",
        "Test User",  # the caller's name; their subject is dev:ORG1:Test User
        "ORG1",
        "Section 47",
        "Hana Visitor",
        "07700",
    ]:
        assert personal not in values
    assert all(not s.events for s in found)  # no exception, with its message, was recorded


def test_a_refused_lookup_marks_its_spans_with_the_code_only(tmp_path, spans):
    with reference_stack(tmp_path, RECORDS, lookups_per_user_per_minute=1) as stack:
        stack.lookup("social_worker", NHS)
        refused = stack.lookup("social_worker", NHS)
    assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    lookups = [s for s in spans.get_finished_spans() if s.name == "lookup"]
    last = max(lookups, key=lambda s: s.end_time)
    assert last.status.status_code is StatusCode.ERROR
    assert last.status.description == "RATE_LIMITED"
    admit = next(
        s
        for s in spans.get_finished_spans()
        if s.parent and s.parent.span_id == last.context.span_id and s.name == "admit"
    )
    assert admit.status.description == "RATE_LIMITED"
    assert not last.events
    assert not admit.events


def test_console_tracing_writes_spans_to_stderr(capsys):
    provider = tracer_provider(Tracing.CONSOLE)
    with provider.get_tracer("test").start_as_current_span("lookup"):
        pass
    provider.shutdown()
    assert '"name": "lookup"' in capsys.readouterr().err


def test_otlp_tracing_posts_spans_to_the_configured_collector(monkeypatch):
    received: list[tuple[str, bytes]] = []

    async def traces(request):
        received.append((request.headers["content-type"], await request.body()))
        return Response(b"", status_code=200)

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with BackgroundServer(app) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
        provider = tracer_provider(Tracing.OTLP)
        with provider.get_tracer("test").start_as_current_span("lookup"):
            pass
        provider.shutdown()
    ((content_type, body),) = received
    assert content_type == "application/x-protobuf"
    assert b"lookup" in body
    assert b"childlookup-gateway" in body  # the service name
