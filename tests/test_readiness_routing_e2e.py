"""/readyz (no token) reports only the sources asked on every lookup. It had listed the agencies
asked only when routed too, with when each was last asked: a demographic search that reached a
shielded child, answered as one for nobody, was routed first - her local authority (by home
postcode), GP practice and school asked - and the page showed them asked just now, where a search
for nobody routes nowhere. National routing on loopback, as tests/test_routing_e2e.py sets it up.
"""

from __future__ import annotations

import httpx

import tests.test_routing_e2e as routing
from connectors.agencies import AgencyHoldings
from connectors.protocol import RecordFlags
from tests.factories import health_record, school_record, social_care_record

SEARCH = """
query($identify: ChildIdentity!) {
  child(identify: $identify, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete sources { source status } records { source } }
}
"""


def _shielding_agencies() -> list[AgencyHoldings]:
    nhs = routing.AMELIA_NHS
    held = {
        ("la_e0800001", "social_care"): [social_care_record(nhs, flags=RecordFlags(shielded=True))],
        ("la_e0800002", "social_care"): [],
        ("gp_y00001", "gp_practice"): [health_record(nhs, record_id="GP-1")],
        ("gp_y00002", "gp_practice"): [],
        ("school_100001", "school"): [school_record(nhs)],
        ("school_100002", "school"): [],
    }
    return [
        AgencyHoldings(name, kind, tuple(records), routing.KINDS[kind])
        for (name, kind), records in held.items()
    ]


def _search_then_readyz(stack, given, family, born, postcode):
    person = {"givenName": given, "familyName": family, "dateOfBirth": born, "postcode": postcode}
    body = {"query": SEARCH, "variables": {"identify": {"demographics": person}}}
    answer = stack.post(body, stack.token("social_worker")).json()
    assert "errors" not in answer, answer
    ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
    asked = {
        source: report["last_status"]
        for source, report in ready["source_status"].items()
        if report["last_status"] is not None
    }
    return answer["data"]["child"], asked


def test_readyz_does_not_show_where_a_hidden_search_was_routed(tmp_path, monkeypatch):
    monkeypatch.setattr(routing, "_agencies", _shielding_agencies)
    with routing.national(tmp_path) as (stack, _locator):
        absent, after_absent = _search_then_readyz(
            stack, "Nobody", "Atall", "2016-02-02", "LS1 1AA"
        )
        hidden, after_hidden = _search_then_readyz(stack, "Amelia", "Hart", "2019-03-04", "LS6 2AB")

    # The caller is told nobody was found either way (shield-safe search) ...
    assert hidden["outcome"] == absent["outcome"] == "NOT_FOUND", (hidden, absent)
    assert hidden == absent, (hidden, absent)
    # ... and the unauthenticated readiness page must not tell them apart either.
    assert after_hidden == after_absent, (after_hidden, after_absent)
