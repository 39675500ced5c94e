"""The contract's typed forms end to end (issue 17): `child(identify: ...)`, a OneOf input GraphQL
itself checks, and the enum fields beside the deprecated strings they replace. Real reference
connectors over loopback HTTP, the real gateway, policy and audit."""

import socket
from typing import Any

import pytest

from connectors.protocol import PersonName, RecordFlags
from gateway.demo import reference_source
from tests.factories import (
    NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import Stack, reference_connectors, running_gateway

UPN = "H801200001001"
SHIELDED = synthetic_nhs(41)
AMELIA = {"givenName": "Amelia", "familyName": "Hart", "dateOfBirth": "2019-03-04"}

LOOKUP = """
query Lookup($identify: ChildIdentity!, $purpose: Purpose!, $justification: String) {
  child(identify: $identify, purpose: $purpose, justification: $justification) {
    outcome denial denialCode auditId
    child { nhsNumber { value } }
    records { source method }
    sources { source status errorCode failureCode }
    withheld { field source reason reasonCode }
  }
}
"""

AUDIT_TRAIL = """
query Trail($nhs: String!) {
  auditTrail(nhsNumber: $nhs) {
    auditId purpose purposeCode outcome outcomeCode withheld { reason reasonCode }
  }
}
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _records():
    return {
        "health": [
            health_record(),
            health_record(
                SHIELDED,
                record_id="H2",
                name=PersonName(given="Kofi", family="Mensah"),
                flags=RecordFlags(shielded=True),
            ),
        ],
        "education": [school_record()],
        "social_care": [social_care_record()],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identify")
    with reference_connectors(tmp, _records()) as sources, running_gateway(tmp, sources) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def social_care_down(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identify-down")
    records = {name: r for name, r in _records().items() if name != "social_care"}
    with reference_connectors(tmp, records) as sources:
        down = reference_source("social_care", f"http://127.0.0.1:{_closed_port()}")
        with running_gateway(tmp, [*sources, down]) as gateway:
            yield gateway


def _post(stack: Stack, query: str, variables: dict[str, Any], role: str = "social_worker"):
    response = stack.post({"query": query, "variables": variables}, stack.token(role))
    assert response.status_code == 200, response.text
    return response.json()


def _lookup(stack: Stack, identify: dict[str, Any], purpose: str = "SAFEGUARDING_ENQUIRY"):
    body = _post(stack, LOOKUP, {"identify": identify, "purpose": purpose})
    assert "errors" not in body, body
    return body["data"]["child"]


def _codes(body: dict[str, Any]) -> list[str]:
    assert body["data"] is None
    return [e["extensions"]["code"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("identify", "method"),
    [
        ({"nhsNumber": NHS}, "NHS_NUMBER"),
        ({"upn": UPN}, "UPN"),
        ({"demographics": AMELIA}, "DEMOGRAPHICS"),
    ],
    ids=["nhs_number", "upn", "demographics"],
)
def test_each_one_way_of_identifying_finds_the_child(stack, identify, method):
    lookup = _lookup(stack, identify)
    assert lookup["outcome"] == "FOUND"
    assert lookup["child"]["nhsNumber"]["value"] == NHS
    assert method in {r["method"] for r in lookup["records"]}


@pytest.mark.parametrize(
    "identify",
    [{}, {"nhsNumber": NHS, "upn": UPN}, {"nhsNumber": None}],
    ids=["none", "two", "null"],
)
def test_graphql_refuses_other_than_one_way_in_variables(stack, identify):
    body = _post(stack, LOOKUP, {"identify": identify, "purpose": "SAFEGUARDING_ENQUIRY"})
    assert _codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.mark.parametrize(
    "identify",
    ["{}", f'{{nhsNumber: "{NHS}", upn: "{UPN}"}}', "{upn: null}"],
    ids=["none", "two", "null"],
)
def test_graphql_refuses_other_than_one_way_in_the_document(stack, identify):
    query = f"{{ child(identify: {identify}, purpose: SAFEGUARDING_ENQUIRY) {{ outcome }} }}"
    body = _post(stack, query, {})
    assert _codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "OneOf" in body["errors"][0]["message"] or "non-null" in body["errors"][0]["message"]


def test_identify_beside_a_deprecated_argument_is_identify_one_way(stack):
    query = f"""{{ child(identify: {{upn: "{UPN}"}}, nhsNumber: "{NHS}",
        purpose: SAFEGUARDING_ENQUIRY) {{ outcome }} }}"""
    assert _codes(_post(stack, query, {})) == ["IDENTIFY_ONE_WAY"]


def test_the_deprecated_arguments_still_answer_identify_one_way_when_none_is_given(stack):
    query = "{ child(purpose: SAFEGUARDING_ENQUIRY) { outcome } }"
    assert _codes(_post(stack, query, {})) == ["IDENTIFY_ONE_WAY"]


def test_an_invalid_identifier_inside_identify_keeps_its_code(stack):
    body = _post(
        stack, LOOKUP, {"identify": {"nhsNumber": "0000000000"}, "purpose": "SAFEGUARDING_ENQUIRY"}
    )
    assert _codes(body) == ["INVALID_NHS_NUMBER"]


def test_a_failed_source_gives_the_same_code_as_enum_and_as_string(social_care_down):
    lookup = _lookup(social_care_down, {"nhsNumber": NHS})
    down = next(s for s in lookup["sources"] if s["source"] == "social_care")
    assert down["status"] == "FAILED"
    assert down["failureCode"] == down["errorCode"] == "CONNECTION_FAILED"
    assert all(s["failureCode"] is None for s in lookup["sources"] if s["status"] == "ANSWERED")


def test_withheld_reasons_are_the_same_as_enum_and_as_string(stack):
    lookup = _lookup(stack, {"nhsNumber": SHIELDED})
    assert lookup["withheld"]
    assert all(w["reasonCode"] == w["reason"] for w in lookup["withheld"])
    assert "SHIELDED" in {w["reasonCode"] for w in lookup["withheld"]}


def test_a_denial_is_the_same_as_enum_and_as_string(stack):
    lookup = _lookup(stack, {"nhsNumber": NHS}, "CHILD_PROTECTION_ENQUIRY")
    assert lookup["outcome"] == "DENIED"
    assert lookup["denialCode"] == lookup["denial"] == "JUSTIFICATION_REQUIRED"
    assert _lookup(stack, {"nhsNumber": NHS})["denialCode"] is None


def test_the_audit_trail_gives_purpose_and_outcome_as_enums_too(stack):
    _lookup(stack, {"nhsNumber": SHIELDED}, "DIRECT_CARE")
    _post(stack, AUDIT_TRAIL, {"nhs": SHIELDED}, role="auditor")  # itself recorded
    body = _post(stack, AUDIT_TRAIL, {"nhs": SHIELDED}, role="auditor")
    assert "errors" not in body, body
    entries = body["data"]["auditTrail"]
    assert entries
    for entry in entries:
        assert entry["purposeCode"] == entry["purpose"]
        assert entry["outcomeCode"] == entry["outcome"]
        assert all(w["reasonCode"] == w["reason"] for w in entry["withheld"])
    assert {("DIRECT_CARE", "DENIED"), ("AUDIT_REVIEW", "AUDIT_TRAIL_VIEWED")} <= {
        (e["purposeCode"], e["outcomeCode"]) for e in entries
    }
