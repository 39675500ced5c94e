"""Routed agencies are named only to a caller who sees where the child is (gateway.agency_names).

The national stack of tests.test_routing_e2e, in which only Manchester's local authority
(`la_e0800002`, found through the locator, its code that of the authority) holds a record of
Amelia: her open case. Her identity records hold no school and, when she is hidden, no address or
GP practice either - a restricted PDS record arrives without them - so nothing locating her is
withheld, and only her shield or restriction says the authority's name must not be shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from connectors.agencies import AgencyHoldings
from connectors.protocol import Address, GpPractice, RecordFlags
from tests import test_routing_e2e as routing
from tests.factories import health_record, social_care_record

AUTHORITY = "la_e0800002"
HOME = Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB")
PRACTICE = GpPractice(ods_code="Y00001", name="Leeds Surgery")
REASON = "Child at immediate risk of significant harm tonight"

QUERY = """
query($nhs: String!, $purpose: Purpose!, $justification: String) {
  child(identify: {nhsNumber: $nhs}, purpose: $purpose, justification: $justification) {
    outcome auditId
    child {
      address { postcode }
      name { provenance { source } }
      involvements { organisation provenance { source } }
    }
    sources { source } records { source } withheld { source reasonCode }
  }
}
"""


def _only_the_authority_holds(flags: RecordFlags) -> Callable[[], list[AgencyHoldings]]:
    """The routed agencies, of which only `AUTHORITY` holds a record of Amelia, with `flags`."""
    case = social_care_record(
        routing.AMELIA_NHS,
        record_id="MCR-1",
        involvements=[
            routing._involvement("Manchester City Council", "Max Former", "social worker")
        ],
        flags=flags,
    )
    held = [
        AgencyHoldings(a.name, a.kind, (case,) if a.name == AUTHORITY else (), a.provides)
        for a in routing._agencies()
    ]
    return lambda: held


def _lookup(
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    health_flags: RecordFlags,
    la_flags: RecordFlags,
    located: bool,
    purpose: str = "SAFEGUARDING_ENQUIRY",
) -> tuple[dict[str, Any], set[str]]:
    """Amelia looked up by a social worker, her health record holding her address and practice
    when `located`: the answer, and the sources the audit says were asked."""
    monkeypatch.setattr(routing, "_agencies", _only_the_authority_holds(la_flags))
    health = health_record(
        routing.AMELIA_NHS,
        address=HOME if located else None,
        gp_practice=PRACTICE if located else None,
        carers=None,
        involvements=None,
        flags=health_flags,
    )
    with routing.national(tmp_path, identity={"health": [health]}) as (gateway, _):
        variables = {
            "nhs": routing.AMELIA_NHS,
            "purpose": purpose,
            "justification": REASON if purpose == "EMERGENCY_OVERRIDE" else None,
        }
        body = gateway.post(
            {"query": QUERY, "variables": variables}, gateway.token("social_worker")
        ).json()
        assert "errors" not in body, body
        answer = body["data"]["child"]
        audited = {s["source"] for s in gateway.audited(answer["auditId"])["sources"]}
    return answer, audited


def _shown(answer: dict[str, Any]) -> set[str]:
    """Every agency name the caller is shown."""
    child = answer["child"]
    return (
        {s["source"] for s in answer["sources"]}
        | {r["source"] for r in answer["records"]}
        | {w["source"] for w in answer["withheld"]}
        | {child["name"]["provenance"]["source"]}
        | {i["provenance"]["source"] for i in child["involvements"]}
    )


@pytest.mark.parametrize(
    ("health_flags", "la_flags"),
    [
        pytest.param(RecordFlags(restricted=True), RecordFlags(), id="restricted"),
        pytest.param(RecordFlags(), RecordFlags(shielded=True), id="shielded"),
    ],
)
def test_a_hidden_childs_routed_authority_is_not_named_when_nothing_locating_her_is_held(
    tmp_path, monkeypatch, health_flags, la_flags
):
    """No address, school or GP practice held, none is withheld: her shield or restriction alone
    keeps the authority that holds her - named with its code - out of the answer."""
    answer, audited = _lookup(
        tmp_path, monkeypatch, health_flags=health_flags, la_flags=la_flags, located=False
    )

    assert AUTHORITY in audited  # asked: the locator named it
    assert answer["outcome"] == "FOUND"
    assert answer["child"]["involvements"] == []  # withheld for the shield or restriction
    assert {w["reasonCode"] for w in answer["withheld"]} <= {"SHIELDED", "RESTRICTED"}
    assert "social_care" in _shown(answer)
    assert "e0800002" not in json.dumps(answer).casefold(), answer["sources"]


def test_an_ordinary_childs_routed_authority_is_named(tmp_path, monkeypatch):
    """Neither shielded nor restricted, the same child is shown the authority by its name: the
    caller could be shown where she is, had any record held it."""
    answer, _ = _lookup(
        tmp_path, monkeypatch, health_flags=RecordFlags(), la_flags=RecordFlags(), located=False
    )

    assert answer["outcome"] == "FOUND"
    assert [i["organisation"] for i in answer["child"]["involvements"]] == [
        "Manchester City Council"
    ]
    assert AUTHORITY in _shown(answer)
    assert "social_care" not in _shown(answer)


@pytest.mark.parametrize(
    ("health_flags", "located", "location_shown"),
    [
        pytest.param(RecordFlags(), True, True, id="shield-lifted"),
        pytest.param(RecordFlags(restricted=True), False, False, id="restricted-too"),
        pytest.param(RecordFlags(), False, False, id="nothing-locating-held"),
    ],
)
def test_break_glass_names_the_authority_only_when_it_shows_where_the_child_is(
    tmp_path, monkeypatch, health_flags, located, location_shown
):
    """A break-glass override lifts her shield, so her address is shown and with it the authority
    that shielded her; it never lifts a restriction (policies/release.rego), and with nothing
    locating her released the authority would be the only thing that did."""
    answer, audited = _lookup(
        tmp_path,
        monkeypatch,
        health_flags=health_flags,
        la_flags=RecordFlags(shielded=True),
        located=located,
        purpose="EMERGENCY_OVERRIDE",
    )

    assert AUTHORITY in audited
    assert answer["outcome"] == "FOUND"
    assert (answer["child"]["address"] is not None) is location_shown
    assert (AUTHORITY in _shown(answer)) is location_shown
    assert ("e0800002" in json.dumps(answer).casefold()) is location_shown
