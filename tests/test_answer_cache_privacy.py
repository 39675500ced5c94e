"""Break-glass scoping and shield-safe search with the answer cache on, end to end (real
reference connectors, the real gateway with `cache_ttl_s`, real policy and audit).

- What an override released is never shown to a later lookup that did not override: the same
  user, a colleague of the same role and organisation, another purpose, a search.
- Neither `sources[].cached` nor `latencyMs` tells a caller that a search reached a shielded child
  (found but hidden) rather than nobody, nor that a colleague looked the child up.
- An override answered from the cache is flagged, alerted and notified as any override is."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import LOOKUP, Stack, reference_stack

REASON = "Child reported missing; police at the door need the current address now."
ELSEWHERE = Address(lines=["9 Elsewhere Road", "Leeds"], postcode="LS11 5QT")

SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!, $justification: String) {
  child(demographics: $demographics, purpose: $purpose, justification: $justification) {
    outcome complete denial auditId requestId policyRevision
    child { nhsNumber { value } address { postcode } school { name } gpPractice { odsCode } }
    records { source method score }
    sources {
      source status latencyMs errorCode failureCode recordsMatched recordsUnmatched
      recordsPossible recordsAmbiguous cached askedWith askedBecause
    }
    withheld { field source reason }
  }
}
"""


def _amelia(postcode: str = "LS6 2AB", **more: str) -> dict[str, str]:
    return {
        "givenName": "Amelia",
        "familyName": "Hart",
        "dateOfBirth": "2019-03-04",
        "postcode": postcode,
    } | more


NOBODY = _amelia(givenName="Nobody", familyName="Atall")


def _search(
    stack: Stack,
    demographics: dict[str, str],
    *,
    name: str = "Test User",
    purpose: str = "SAFEGUARDING_ENQUIRY",
    justification: str | None = None,
) -> dict[str, Any]:
    variables = {"demographics": demographics, "purpose": purpose, "justification": justification}
    return _child(stack, SEARCH, variables, name)


def _lookup(
    stack: Stack,
    nhs: str,
    *,
    name: str = "Test User",
    purpose: str = "SAFEGUARDING_ENQUIRY",
    justification: str | None = None,
) -> dict[str, Any]:
    variables = {"nhs": nhs, "purpose": purpose, "justification": justification}
    return _child(stack, LOOKUP, variables, name)


def _child(stack: Stack, query: str, variables: dict[str, Any], name: str) -> dict[str, Any]:
    """The `child` answer to `query`, asked by the social worker called `name`."""
    response = stack.post(
        {"query": query, "variables": variables}, stack.token("social_worker", name=name)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def _cache_tells(answer: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    """Per source: answered from the cache, and answered in no time (what a caller could read)."""
    return {s["source"]: (s["cached"], s["latencyMs"] == 0.0) for s in answer["sources"]}


def _without_ids(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer a caller compares: everything but the per-lookup ids and the latencies (which
    differ from run to run whatever was found)."""
    shown = {k: v for k, v in answer.items() if k not in ("auditId", "requestId")}
    shown["sources"] = [{k: v for k, v in s.items() if k != "latencyMs"} for s in answer["sources"]]
    return shown


# --- a search reaching a shielded child only in its second round ---------------------------------

HIDDEN = synthetic_nhs(71)
"""Amelia: health knows her at LS6 2AB; social care shields her under her adoptive name elsewhere,
reachable only by her NHS number (the second round)."""
UNSEARCHED = synthetic_nhs(72)
"""A second shielded child held the same way, whom no search reaches."""


def _second_round_records() -> dict[str, list[Any]]:
    def shielded(nhs: str, record_id: str) -> Any:
        return social_care_record(
            nhs,
            record_id=record_id,
            identifiers=Identifiers(nhs_number=nhs, local_id=record_id),
            name=PersonName(given="Mia", family="Stone"),
            address=ELSEWHERE,
            flags=RecordFlags(shielded=True),
        )

    return {
        "health": [
            health_record(HIDDEN),
            health_record(
                UNSEARCHED,
                record_id="H2",
                name=PersonName(given="Zoe", family="Field"),
            ),
        ],
        "education": [],
        "social_care": [shielded(HIDDEN, "LA-71"), shielded(UNSEARCHED, "LA-72")],
    }


@pytest.fixture
def second_round_stack(tmp_path):
    with reference_stack(tmp_path, _second_round_records(), cache_ttl_s=30) as gateway:
        yield gateway


def test_a_hidden_search_leaves_no_cache_trace_for_a_later_lookup_by_nhs_number(
    second_round_stack,
):
    """Shield-safe search: the caller must not tell "found but hidden" from "not found". The
    search itself answers alike; but the second round it ran for the child it reached kept the
    agencies' answers to the child's NHS number, and the caller's next lookup by that NHS number
    (holding it shows no location) comes back `cached`, in no time - which a search for nobody
    never leaves. So a guessed postcode (or name) is confirmed."""
    stack = second_round_stack
    hidden = _search(stack, _amelia())
    nobody = _search(stack, NOBODY)
    assert hidden["outcome"] == nobody["outcome"] == "NOT_FOUND"
    assert _without_ids(hidden) == _without_ids(nobody)

    after_hidden = _lookup(stack, HIDDEN)
    after_nobody = _lookup(stack, UNSEARCHED)  # the same kind of child, whom no search reached
    assert after_hidden["child"]["address"] is None  # shielded: the lookup shows no location
    assert _cache_tells(after_hidden) == _cache_tells(after_nobody)


def test_a_repeated_hidden_search_answers_as_a_repeated_search_for_nobody(second_round_stack):
    """Twice each, the second time from the cache: field by field, sources, `cached` and all."""
    stack = second_round_stack
    hidden = [_search(stack, _amelia()) for _ in range(2)]
    nobody = [_search(stack, NOBODY) for _ in range(2)]
    for h, n in zip(hidden, nobody, strict=True):
        assert _without_ids(h) == _without_ids(n)
        assert _cache_tells(h) == _cache_tells(n)


# --- break-glass and an answer cache shared by role and organisation -----------------------------

SHIELDED = synthetic_nhs(73)
ORDINARY = synthetic_nhs(74)
LOCATION = ("address", "school", "gpPractice", "carers")


@pytest.fixture(scope="module")
def glass_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-glass")
    records = {
        "health": [health_record(SHIELDED), health_record(ORDINARY, record_id="H2")],
        "education": [
            school_record(SHIELDED, identifiers=Identifiers(nhs_number=SHIELDED)),
            school_record(ORDINARY, record_id="E2", identifiers=Identifiers(nhs_number=ORDINARY)),
        ],
        "social_care": [
            social_care_record(
                SHIELDED,
                identifiers=Identifiers(nhs_number=SHIELDED, local_id="LA-73"),
                flags=RecordFlags(shielded=True),
            )
        ],
    }
    with reference_stack(tmp, records, cache_ttl_s=30) as gateway:
        yield gateway


def _shows_location(answer: dict[str, Any]) -> bool:
    child = answer["child"] or {}
    return any(child.get(f) for f in LOCATION)


def test_what_an_override_released_reaches_no_later_lookup_that_did_not_override(glass_stack):
    stack = glass_stack
    glass = _lookup(stack, SHIELDED, purpose="EMERGENCY_OVERRIDE", justification=REASON)
    assert glass["child"]["address"]["postcode"] == "LS6 2AB"

    later = [
        _lookup(stack, SHIELDED),  # the same user, no override
        _lookup(stack, SHIELDED, purpose="CHILD_PROTECTION_ENQUIRY", justification=REASON),
        _lookup(stack, SHIELDED, name="Colleague"),  # same role and organisation
        _lookup(stack, SHIELDED, name="Colleague", purpose="DIRECT_CARE"),
    ]
    for answer in later:
        assert answer["outcome"] in ("FOUND", "DENIED"), answer
        assert not _shows_location(answer), answer
    # A search by what the override showed is hidden, as for anyone.
    for name in ("Test User", "Colleague"):
        search = _search(stack, _amelia(), name=name)
        assert search["outcome"] == "NOT_FOUND"
        assert search["child"] is None


def test_an_override_answered_from_the_cache_is_flagged_alerted_and_notified(glass_stack):
    stack = glass_stack
    before = len(stack.components.audit.alerts())
    first = _lookup(stack, SHIELDED, purpose="EMERGENCY_OVERRIDE", justification=REASON)
    again = _lookup(stack, SHIELDED, purpose="EMERGENCY_OVERRIDE", justification=REASON)
    assert any(s["cached"] for s in again["sources"])  # answered from the cache
    alerts = stack.components.audit.alerts()[before:]
    assert [a["audit_id"] for a in alerts] == [first["auditId"], again["auditId"]]
    assert {a["kind"] for a in alerts} == {"BREAK_GLASS"}
    first_record, again_record = (stack.audited(a["auditId"]) for a in (first, again))
    assert again_record["flagged_for_investigation"] is True

    def told(record: dict[str, Any]) -> list[tuple[str, list[str]]]:
        return sorted((n["source"], n["reasons"]) for n in record["notified"])

    assert told(again_record) == told(first_record)
    assert again_record["notified"]  # the owners are told of each override


def test_a_colleagues_lookup_is_not_told_of_by_the_cache(glass_stack):
    """Who looked at a child is for its owners and auditors (accessHistory, auditTrail). A
    colleague of the same role and organisation must not learn from `cached` (or a 0 ms latency)
    that someone looked this child up in the last `cache_ttl_s`."""
    stack = glass_stack
    _lookup(stack, ORDINARY, name="First Colleague")
    told = _lookup(stack, ORDINARY, name="Second Colleague")
    assert told["outcome"] == "FOUND"
    assert not any(s["cached"] or s["latencyMs"] == 0.0 for s in told["sources"]), told["sources"]
