"""Each lookup's audit record (gateway.audit.record) tells an auditor the truth. Real reference
connectors and a real gateway on loopback, the real policy and audit store; records read back as
auditors read them (`userAuditTrail`) and compared with what the caller got."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from tests.factories import (
    NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import Stack, reference_stack

SHIELDED, TWIN_A, TWIN_B = synthetic_nhs(41), synthetic_nhs(42), synthetic_nhs(43)
MOSS_A, MOSS_B = synthetic_nhs(44), synthetic_nhs(45)
UPN = "H801200001001"
NOT_AN_NHS_NUMBER = NHS[:-1] + str((int(NHS[-1]) + 1) % 10)  # the check digit wrong
REASON = "Child reported missing; police at the door need the current address now."

FREYA = {
    "name": PersonName(given="Freya", family="Lane"),
    "date_of_birth": date(2015, 1, 20),
    "address": Address(lines=["3 Quiet Road", "Leeds"], postcode="LS8 1PQ"),
}
QUINN = {
    "name": PersonName(given="Ruby", family="Quinn"),
    "date_of_birth": date(2018, 5, 6),
    "address": Address(lines=["2 Twin Lane", "Leeds"], postcode="LS7 3QB"),
}
MOSS = {
    "name": PersonName(given="Ivy", family="Moss"),
    "date_of_birth": date(2017, 8, 9),
    "address": Address(lines=["5 Pair Row", "Leeds"], postcode="LS12 4TT"),
}

SEARCH = """
query Search($upn: String, $demographics: DemographicsInput, $purpose: Purpose!) {
  child(upn: $upn, demographics: $demographics, purpose: $purpose) {
    outcome auditId
    child {
      nhsNumber { value } name { given } dateOfBirth { value } sex { value }
      address { postcode } school { name } gpPractice { odsCode } carers { name }
      involvements { service organisation practitioner { name } sensitive broker { name } }
      indicators {
        childProtectionPlan { value } lookedAfter { value } childInNeed { value }
        earlyHelp { value }
      }
    }
    records { source method }
    sources { source status }
    withheld { field source reason }
  }
}
"""

USER_TRAIL = """
query($subject: String!) {
  userAuditTrail(subject: $subject) { auditId outcomeCode released withheld { field source } }
}
"""


def _shielded(nhs: str, record_id: str, **details: Any) -> Any:
    return social_care_record(
        nhs,
        record_id=record_id,
        identifiers=Identifiers(nhs_number=nhs, local_id=record_id),
        flags=RecordFlags(shielded=True),
        **details,
    )


def _population() -> dict[str, list[Any]]:
    """Amelia (clear, known to school by UPN and NHS number); Freya, shielded by social care;
    the Quinn twins, one of them shielded; the Moss twins, neither shielded."""
    return {
        "health": [
            health_record(),
            health_record(SHIELDED, record_id="H-S", **FREYA),
            health_record(TWIN_A, record_id="H-A", **QUINN),
            health_record(TWIN_B, record_id="H-B", **QUINN),
            health_record(MOSS_A, record_id="H-MA", **MOSS),
            health_record(MOSS_B, record_id="H-MB", **MOSS),
        ],
        "education": [school_record(identifiers=Identifiers(nhs_number=NHS, upn=UPN))],
        "social_care": [
            social_care_record(),
            _shielded(SHIELDED, "LA-S", **FREYA),
            _shielded(TWIN_A, "LA-A", **QUINN),
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with reference_stack(
        tmp_path_factory.mktemp("review-audit"), _population(), demographic_answer_floor_ms=100
    ) as gateway:
        yield gateway


def _search(stack: Stack, role: str = "social_worker", **variables: Any) -> dict[str, Any]:
    body = {"query": SEARCH, "variables": {"purpose": "SAFEGUARDING_ENQUIRY", **variables}}
    response = stack.post(body, stack.token(role))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert "errors" not in answer, answer
    return answer["data"]["child"]  # type: ignore[no-any-return]


def _demographics(given: str, family: str, born: str, postcode: str) -> dict[str, str]:
    return {"givenName": given, "familyName": family, "dateOfBirth": born, "postcode": postcode}


def _trail_entry(stack: Stack, audit_id: str) -> dict[str, Any]:
    """The record as an auditor reads it back (`userAuditTrail` of the user who looked)."""
    subject = stack.audited(audit_id)["access"]["subject"]
    trail = stack.post(
        {"query": USER_TRAIL, "variables": {"subject": subject}},
        stack.token("auditor", "LA-LEEDS-IG"),
    ).json()["data"]["userAuditTrail"]
    return next(e for e in trail if e["auditId"] == audit_id)


_INDICATORS = {
    "childProtectionPlan": "child_protection_plan",
    "lookedAfter": "looked_after",
    "childInNeed": "child_in_need",
    "earlyHelp": "early_help",
}
_PLAIN = {
    "nhsNumber": "nhs_number",
    "name": "name",
    "dateOfBirth": "date_of_birth",
    "sex": "sex",
    "address": "address",
    "school": "school",
    "gpPractice": "gp_practice",
    "carers": "carers",
    "involvements": "involvements",
}


def _fields_got(child: dict[str, Any] | None) -> set[str]:
    """The catalogued fields the caller was shown a value of."""
    if child is None:
        return set()
    got = {field for key, field in _PLAIN.items() if child.get(key)}
    got |= {field for key, field in _INDICATORS.items() if (child["indicators"] or {}).get(key)}
    if any(i["sensitive"] and (i["service"] or i["practitioner"]) for i in child["involvements"]):
        got.add("sensitive_service_details")
    return got


def _fields_released(entry: dict[str, Any]) -> set[str]:
    return {released.split(":", 1)[1] for released in entry["released"]}


_IDENTIFIER = re.compile(r"(?<![0-9a-f])(9\d{9}|[A-Z]\d{12})(?![0-9a-f])")


def _clear_identifiers(record: dict[str, Any]) -> list[str]:
    """NHS numbers and UPNs the record's body names in clear (pseudonyms are hex digests)."""
    return _IDENTIFIER.findall(json.dumps(record))


# --- defects ---------------------------------------------------------------------------------


def test_a_search_hidden_for_a_possible_match_with_a_shielded_child_records_it_shielded(stack):
    """Freya's details a day out and in another street of her district: her shielded records are
    only possible matches, so the search is hidden. Its record said `shielded: false` - the
    flags of the empty answer shown, not of the child the search came near."""
    near = _search(stack, demographics=_demographics("Freya", "Lane", "2015-01-21", "LS8 9XY"))
    audited = stack.audited(near["auditId"])

    assert near["outcome"] == "NOT_FOUND"
    assert audited["outcome"] == "HIDDEN"
    assert audited["child_flags"]["shielded"] is True


def test_a_search_hidden_for_ambiguous_twins_one_shielded_records_a_shielded_child(stack):
    """Two strong candidates, one of them shielded: hidden (and AMBIGUOUS beneath). Its record
    said `shielded: false`."""
    twins = _search(stack, demographics=_demographics("Ruby", "Quinn", "2018-05-06", "LS7 3QB"))
    audited = stack.audited(twins["auditId"])

    assert twins["outcome"] == "NOT_FOUND"
    assert audited["outcome"] == "HIDDEN"
    assert audited["ambiguity"]["reason"] == "NHS_NUMBERS_DIFFER"
    assert audited["linked_refs"] == []  # neither twin named
    assert audited["child_flags"]["shielded"] is True


def test_a_hidden_search_records_how_it_linked_the_child_it_hid(stack):
    """The record names the hidden child (linked_refs) and what each source answered, but said
    no record was matched (`matches: []`): an auditor could not see how, nor how strongly, the
    search reached a shielded child."""
    hidden = _search(stack, demographics=_demographics("Freya", "Lane", "2015-01-20", "LS8 1PQ"))
    audited = stack.audited(hidden["auditId"])

    assert hidden["records"] == []
    assert audited["outcome"] == "HIDDEN"
    assert len(audited["linked_refs"]) == 1
    assert {(m["source"], m["method"]) for m in audited["matches"]} == {
        ("health", "DEMOGRAPHICS"),
        ("social_care", "DEMOGRAPHICS"),
    }
    assert all(m["record_ref"].startswith("record:") for m in audited["matches"])
    assert _clear_identifiers(audited) == []
    assert audited["released"] == audited["withheld"] == []


def test_an_nhs_number_the_caller_was_not_shown_is_not_recorded_as_released(tmp_path: Path):
    """A record linked by demographics carrying a mistyped NHS number: the caller is not shown it
    (gateway.merge shows only a valid one), but the record said `health:nhs_number` released."""
    records = {"health": [health_record(NOT_AN_NHS_NUMBER)], "education": [], "social_care": []}
    with reference_stack(tmp_path, records, demographic_answer_floor_ms=100) as gateway:
        found = _search(
            gateway, demographics=_demographics("Amelia", "Hart", "2019-03-04", "LS6 2AB")
        )
        entry = _trail_entry(gateway, found["auditId"])

    assert found["outcome"] == "FOUND"
    assert found["child"]["nhsNumber"] is None
    assert "health:nhs_number" not in entry["released"]
    assert _fields_released(entry) == _fields_got(found["child"])


# --- what the record says of each kind of lookup, checked against what the caller got ----------


def _by_nhs(stack: Stack, role: str, nhs: str, purpose: str, reason: str | None) -> dict[str, Any]:
    answer = stack.lookup(role, nhs, purpose, reason)
    assert "errors" not in answer, answer
    return answer["data"]["child"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("role", "nhs", "purpose", "reason"),
    [
        ("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON),  # break-glass
        ("health_visitor", SHIELDED, "SAFEGUARDING_ENQUIRY", None),  # shielded, identity only
        ("school_dsl", NHS, "SAFEGUARDING_ENQUIRY", None),
        ("social_worker", NHS, "SAFEGUARDING_ENQUIRY", None),
    ],
)
def test_each_field_recorded_released_is_one_the_caller_got_and_no_other(
    stack, role, nhs, purpose, reason
):
    found = _by_nhs(stack, role, nhs, purpose, reason)
    audited = stack.audited(found["auditId"])
    entry = _trail_entry(stack, found["auditId"])

    assert found["outcome"] == audited["outcome"] == "FOUND"
    assert _fields_released(entry) == _fields_got(found["child"])
    assert {(w["field"], w["source"]) for w in entry["withheld"]} == {
        (w["field"], w["source"]) for w in found["withheld"]
    }
    assert {s["source"]: s["status"] for s in audited["sources"]} == {
        s["source"]: s["status"] for s in found["sources"]
    }
    assert audited["child_flags"]["shielded"] is (nhs == SHIELDED)
    assert audited["flagged_for_investigation"] is (purpose == "EMERGENCY_OVERRIDE")
    assert _clear_identifiers(audited) == []


def test_a_lookup_the_plan_denied_records_no_child_data_and_no_source_asked(stack):
    denied = _by_nhs(stack, "social_worker", SHIELDED, "EMERGENCY_OVERRIDE", None)
    audited = stack.audited(denied["auditId"])

    assert denied["outcome"] == audited["outcome"] == "DENIED"
    assert audited["denial"] == denied["denial"] == "JUSTIFICATION_REQUIRED"
    assert {s["status"] for s in audited["sources"]} == {"NOT_ASKED"}
    assert audited["released"] == audited["matches"] == audited["linked_refs"] == []
    assert audited["child_flags"] is None
    assert audited["flagged_for_investigation"] is False
    assert _clear_identifiers(audited) == []


def test_a_second_round_lookup_records_both_rounds_and_the_child_it_reached(stack):
    found = _search(stack, upn=UPN)
    audited = stack.audited(found["auditId"])
    entry = _trail_entry(stack, found["auditId"])

    assert found["outcome"] == audited["outcome"] == "FOUND"
    assert {s["source"]: s["asked_with"] for s in audited["sources"]} == {
        "health": ["UPN", "NHS_NUMBER"],
        "education": ["UPN"],
        "social_care": ["UPN", "NHS_NUMBER"],
    }
    assert {(m["source"], m["method"]) for m in audited["matches"]} == {
        (r["source"], r["method"]) for r in found["records"]
    }
    pseudonymiser = stack.components.pseudonymiser
    assert audited["linked_refs"] == [pseudonymiser.ref("nhs", NHS)]
    assert _fields_released(entry) == _fields_got(found["child"])
    assert _clear_identifiers(audited) == []


def test_an_ambiguous_lookup_records_counts_and_names_neither_child(stack):
    both = _search(stack, demographics=_demographics("Ivy", "Moss", "2017-08-09", "LS12 4TT"))
    audited = stack.audited(both["auditId"])

    assert both["outcome"] == audited["outcome"] == "AMBIGUOUS"
    assert audited["ambiguity"] == {
        "reason": "NHS_NUMBERS_DIFFER",
        "candidates": [{"source": "health", "method": "DEMOGRAPHICS", "records": 2}],
    }
    assert audited["released"] == audited["matches"] == audited["linked_refs"] == []
    assert audited["child_flags"]["shielded"] is False
    assert _clear_identifiers(audited) == []


def test_a_lookup_with_a_source_timed_out_records_it_so(tmp_path: Path):
    records = {"health": [health_record()], "education": [], "social_care": [social_care_record()]}
    with reference_stack(
        tmp_path, records, latency_ms={"social_care": 1_500}, lookup_deadline_ms=500
    ) as gateway:
        found = _by_nhs(gateway, "health_visitor", NHS, "SAFEGUARDING_ENQUIRY", None)
        audited = gateway.audited(found["auditId"])
        entry = _trail_entry(gateway, found["auditId"])

    assert found["outcome"] == audited["outcome"] == "FOUND"
    statuses = {s["source"]: (s["status"], s["error_code"]) for s in audited["sources"]}
    # Timed out either way: the gateway's own timer, or the connector giving up at the deadline
    # the request carried - whichever fires first on a loaded machine.
    assert statuses.pop("social_care") in {
        ("TIMED_OUT", "TIMEOUT"),
        ("TIMED_OUT", "DEADLINE_EXCEEDED"),
    }
    assert statuses == {"health": ("ANSWERED", None), "education": ("NO_RECORD", None)}
    assert audited["child_flags"]["shield_status_known"] is False
    assert _fields_released(entry) == _fields_got(found["child"])
    assert {w["reason"] for w in audited["withheld"]} == {"SHIELD_STATUS_UNKNOWN"}
    assert _clear_identifiers(audited) == []
