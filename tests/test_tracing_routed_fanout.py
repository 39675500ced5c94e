"""Traces of routed lookups: every agency the routing stage asks, whichever identifier it is asked
with, has its own `fanout.source` span under one `fanout` span in the `route` span, as the
lookup's own sources have under the lookup's - on the national stack of the routing end-to-end
tests (the real locator, agencies and gateway on loopback) - with no personal data in any
attribute."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from connectors.locator import LOCATE_PATH
from tests.spans import span_exporter
from tests.stack import Stack
from tests.test_routing_e2e import AMELIA_NHS, AMELIA_UPN, ROUTES, Recorded, national
from tests.test_tracing import _one, _trace_of

LOOKUP = """
query Lookup($nhs: String!) {
  child(identify: {nhsNumber: $nhs}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome requestId
    sources { source status askedWith askedBecause }
  }
}
"""

ROUTED_BY_UPN = {"school_100001", "school_100002"}
"""Amelia's schools, asked by her UPN (found in her education record) while her authorities and
practice are asked by her NHS number: two requests at once to the routed agencies."""
ASKED = set(ROUTES) - {"gp_y00002"}  # every agency but Ben's practice


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return span_exporter()


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, spans: InMemorySpanExporter
) -> Iterator[tuple[dict, list[ReadableSpan], Recorded]]:
    """Amelia looked up by NHS number on the national stack: the answer, its trace, and the
    locator's record of what it was asked."""
    with national(tmp_path_factory.mktemp("national")) as (gateway, locator):
        spans.clear()
        child = _lookup(gateway)
        yield child, _trace_of(spans, child["requestId"]), locator


def _lookup(gateway: Stack) -> dict:
    response = gateway.post(
        {"query": LOOKUP, "variables": {"nhs": AMELIA_NHS}}, gateway.token("social_worker")
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["child"]


def _parent(found: list[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    (parent,) = [s for s in found if span.parent and s.context.span_id == span.parent.span_id]
    return parent


def test_every_routed_agency_asked_has_its_own_span_in_the_lookups_fanout(routed):
    child, found, _ = routed
    statuses = {s["source"]: s["status"] for s in child["sources"] if s["source"] in ROUTES}
    assert set(statuses) == ASKED  # as the routing end-to-end tests have it
    asked_by_upn = {s["source"] for s in child["sources"] if s["askedWith"] == ["UPN"]}
    assert asked_by_upn == ROUTED_BY_UPN  # two requests at once: by NHS number and by UPN

    lookup = _one(found, "lookup")
    route = _one(found, "route")
    assert route.parent.span_id == lookup.context.span_id
    routed_spans = [
        s
        for s in found
        if s.name == "fanout.source" and s.attributes["childlookup.source"] in ROUTES
    ]
    assert Counter(s.attributes["childlookup.source"] for s in routed_spans) == Counter(ASKED)
    parents = {_parent(found, s).context.span_id: _parent(found, s) for s in routed_spans}
    (fanout,) = parents.values()  # one fanout span, whichever identifier each was asked with
    assert fanout.name == "fanout"
    assert fanout.parent.span_id == route.context.span_id
    for span in routed_spans:
        source = span.attributes["childlookup.source"]
        assert span.kind is SpanKind.CLIENT
        assert span.attributes["childlookup.source.status"] == statuses[source]
        assert span.attributes["childlookup.source.cached"] is False
        assert span.attributes["http.response.status_code"] == 200
        # ...and the agency continues it.
        (server,) = [
            s
            for s in found
            if s.name == "connector.lookup" and s.parent.span_id == span.context.span_id
        ]
        assert server.attributes["childlookup.source"] == source


def test_the_locator_is_asked_within_the_lookups_trace(routed):
    _, found, _ = routed
    lookup = _one(found, "lookup")
    route = _one(found, "route")
    locates = [s for s in found if s.name == "locate"]
    assert locates
    # Asked early, beside the identity sources; again in the route, for the UPN found there.
    assert {s.parent.span_id for s in locates} <= {lookup.context.span_id, route.context.span_id}


def test_no_routed_span_attribute_holds_personal_data(routed):
    _, found, locator = routed
    values = " ".join(str(v) for s in found for v in s.attributes.values())
    pseudonyms = [
        p["value"]
        for path, body in locator.requests
        if path == LOCATE_PATH
        for p in json.loads(body)["pseudonyms"]
    ]
    assert pseudonyms
    for personal in [
        AMELIA_NHS,
        AMELIA_UPN,
        "Amelia",
        "Hart",
        "2019-03-04",
        "LS6",
        "Leeds",
        "Manchester",
        "Sam Social",
        "Max Former",
        "Dr Gee",
        "Dee Lead",
        "Ola Dsl",
        "07700",
        *pseudonyms,
    ]:
        assert personal not in values
    assert all(not s.events for s in found)  # no exception, with its message, was recorded
