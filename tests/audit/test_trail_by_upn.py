"""The audit trail of a child named by UPN: the lookups by that UPN, and the lookups by another
identifier whose records held it - so a child known to no agency by an NHS number has a trail an
auditor can read. Real gateway, reference connectors on loopback, the real audit log."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.check_digits import upn_check_letter
from connectors.protocol import Identifiers, PersonName
from gateway.cli import main
from tests.factories import health_record, school_record, synthetic_nhs
from tests.stack import Stack, reference_stack

KNOWN_BY_BOTH = synthetic_nhs(61)
UPN = upn_check_letter("801200006101") + "801200006101"
UPN_ONLY = upn_check_letter("801200006102") + "801200006102"
"""A child the school knows, and no agency by an NHS number."""

TRAIL = """query($nhs: String, $upn: String) { auditTrail(nhsNumber: $nhs, upn: $upn) {
  auditId role purposeCode outcomeCode } }"""
BY_UPN = """query($upn: String!) { child(identify: {upn: $upn}, purpose: SAFEGUARDING_ENQUIRY)
  { auditId outcome } }"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Stack, str, str]]:
    """The gateway, and the audit ids of a lookup by NHS number of a child whose school record
    holds a UPN, and of a lookup by UPN of a child with no NHS number."""
    tmp = tmp_path_factory.mktemp("trail-by-upn")
    records = {
        "health": [health_record(KNOWN_BY_BOTH, record_id="H-61")],
        "education": [
            school_record(
                KNOWN_BY_BOTH,
                record_id="E-61",
                identifiers=Identifiers(nhs_number=KNOWN_BY_BOTH, upn=UPN),
            ),
            school_record(
                None,
                record_id="E-62",
                identifiers=Identifiers(upn=UPN_ONLY),
                name=PersonName(given="Ruby", family="Okafor"),
            ),
        ],
    }
    with reference_stack(tmp, records) as gateway:
        by_nhs = gateway.lookup("social_worker", KNOWN_BY_BOTH)["data"]["child"]
        assert by_nhs["outcome"] == "FOUND"
        response = gateway.post({"query": BY_UPN, "variables": {"upn": UPN_ONLY}}, _token(gateway))
        by_upn = response.json()["data"]["child"]
        assert by_upn["outcome"] == "FOUND"
        yield gateway, by_nhs["auditId"], by_upn["auditId"]


def _token(gateway: Stack) -> str:
    return gateway.token("social_worker")


def _trail(gateway: Stack, role: str = "auditor", **child: str) -> dict[str, Any]:
    variables = {"nhs": child.get("nhs"), "upn": child.get("upn")}
    response = gateway.post({"query": TRAIL, "variables": variables}, gateway.token(role))
    return response.json()  # type: ignore[no-any-return]


def _lookups(gateway: Stack, **child: str) -> list[str]:
    body = _trail(gateway, **child)
    assert "errors" not in body, body
    entries = body["data"]["auditTrail"]
    return [e["auditId"] for e in entries if e["purposeCode"] != "AUDIT_REVIEW"]


def test_a_lookup_by_nhs_number_is_in_the_trail_of_the_upn_its_school_record_held(stack):
    gateway, by_nhs, _ = stack
    assert _lookups(gateway, upn=UPN) == [by_nhs]
    assert _lookups(gateway, nhs=KNOWN_BY_BOTH) == [by_nhs]
    (ref,) = gateway.audited(by_nhs)["linked_refs"]
    assert ref.startswith("upn:")


def test_a_child_with_no_nhs_number_has_a_trail_by_its_upn(stack):
    gateway, _, by_upn = stack
    assert _lookups(gateway, upn=UPN_ONLY) == [by_upn]
    assert gateway.audited(by_upn)["linked_refs"] == []  # asked by the one identifier it holds


def test_a_upn_is_read_whatever_its_spacing_and_case(stack):
    gateway, _, by_upn = stack
    assert _lookups(gateway, upn=f" {UPN_ONLY.lower()} ") == [by_upn]


def test_reading_a_trail_by_upn_is_itself_on_it(stack):
    gateway, _, _ = stack
    _trail(gateway, upn=UPN_ONLY)
    entries = _trail(gateway, upn=UPN_ONLY)["data"]["auditTrail"]
    assert "AUDIT_TRAIL_VIEWED" in {e["outcomeCode"] for e in entries}


@pytest.mark.parametrize(
    ("child", "code"),
    [
        ({}, "IDENTIFY_ONE_WAY"),
        ({"nhs": KNOWN_BY_BOTH, "upn": UPN}, "IDENTIFY_ONE_WAY"),
        ({"upn": UPN_ONLY[:-1] + "9"}, "INVALID_UPN"),
        ({"nhs": "123"}, "INVALID_NHS_NUMBER"),
    ],
)
def test_a_trail_names_one_valid_identifier(stack, child, code):
    gateway, _, _ = stack
    body = _trail(gateway, **child)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code


def test_only_auditors_read_a_trail_by_upn(stack):
    gateway, _, _ = stack
    body = _trail(gateway, "social_worker", upn=UPN_ONLY)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_the_audit_query_command_reads_a_trail_by_upn(stack, capsys):
    gateway, by_nhs, by_upn = stack
    state = str(gateway.state_dir)
    capsys.readouterr()

    assert main(["audit", "query", "--child-upn", UPN.lower(), "--state-dir", state]) == 0
    by_school_upn = [json.loads(line)["audit_id"] for line in capsys.readouterr().out.splitlines()]
    assert main(["audit", "query", "--child-upn", UPN_ONLY, "--state-dir", state]) == 0
    by_upn_only = [json.loads(line)["audit_id"] for line in capsys.readouterr().out.splitlines()]

    assert by_nhs in by_school_upn
    assert by_upn not in by_school_upn
    assert by_upn in by_upn_only
    assert by_nhs not in by_upn_only
