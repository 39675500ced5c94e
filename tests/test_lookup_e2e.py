"""End-to-end lookups: real reference connectors and the real gateway over loopback HTTP, the real
Rego policies, and the real SQLite audit store."""

import sqlite3

import httpx
import pytest

from connectors.protocol import Identifiers, RecordFlags
from gateway.audit import Pseudonymiser
from tests.factories import (
    NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import reference_stack

SHIELDED = synthetic_nhs(1)
RESTRICTED = synthetic_nhs(2)
NOBODY = synthetic_nhs(3)


def _population():
    return {
        "health": [
            health_record(),
            health_record(SHIELDED, record_id="H2"),
            health_record(RESTRICTED, record_id="H3", flags=RecordFlags(restricted=True)),
        ],
        "education": [
            school_record(),
            school_record(SHIELDED, record_id="E2", identifiers=Identifiers(nhs_number=SHIELDED)),
        ],
        "social_care": [
            social_care_record(),
            social_care_record(
                SHIELDED,
                record_id="LA-2",
                identifiers=Identifiers(nhs_number=SHIELDED, local_id="LA-2"),
                flags=RecordFlags(shielded=True),
            ),
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("e2e"), _population()) as gateway:
        yield gateway


def _child(body):
    assert "errors" not in body, body
    return body["data"]["child"]


def _withheld(lookup):
    return {(w["source"], w["field"]): w["reason"] for w in lookup["withheld"]}


def _statuses(lookup):
    return {s["source"]: s["status"] for s in lookup["sources"]}


def test_social_worker_sees_who_works_with_the_child_and_how_to_reach_them(stack):
    lookup = _child(stack.lookup("social_worker", NHS, "CHILD_PROTECTION_ENQUIRY", "s47 strategy"))
    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is True
    assert _statuses(lookup) == {
        "health": "ANSWERED",
        "education": "ANSWERED",
        "social_care": "ANSWERED",
    }
    assert {r["source"] for r in lookup["records"]} == {"health", "education", "social_care"}
    assert {r["method"] for r in lookup["records"]} == {"NHS_NUMBER"}
    child = lookup["child"]
    assert child["nhsNumber"]["value"] == NHS
    assert child["name"]["given"] == "Amelia"
    assert child["name"]["provenance"]["source"] == "health"
    assert child["address"]["postcode"] == "LS6 2AB"
    assert child["school"]["name"] == "Test Primary"
    assert child["indicators"]["childProtectionPlan"]["value"] is True
    assert child["indicators"]["childProtectionPlan"]["provenance"]["source"] == "social_care"
    practitioners = {i["practitioner"]["name"] for i in child["involvements"] if i["practitioner"]}
    assert {"Hana Visitor", "Sam Social"} <= practitioners
    assert lookup["auditId"]


def test_sensitive_service_is_brokered_never_named(stack):
    lookup = _child(stack.lookup("social_worker", NHS))
    sensitive = [i for i in lookup["child"]["involvements"] if i["sensitive"]]
    assert len(sensitive) == 1
    assert sensitive[0]["service"] is None
    assert sensitive[0]["organisation"] is None
    assert sensitive[0]["practitioner"] is None
    assert sensitive[0]["broker"]["name"] == "Health safeguarding hub"
    assert _withheld(lookup)[("health", "sensitive_service_details")] == "SENSITIVE_SERVICE"
    assert "Dr Mind" not in str(lookup)
    assert "CAMHS" not in str(lookup)


def test_roles_see_different_fields_of_the_same_child(stack):
    dsl_lookup = _child(stack.lookup("school_dsl", NHS))
    dsl = dsl_lookup["child"]
    assert _withheld(dsl_lookup)[("health", "address")] == "NOT_PERMITTED_FOR_ROLE"
    assert _withheld(dsl_lookup)[("health", "gp_practice")] == "NOT_PERMITTED_FOR_ROLE"
    assert dsl["school"]["urn"] == "107000"
    assert dsl["address"] is None
    assert dsl["gpPractice"] is None

    ed = _child(stack.lookup("ed_clinician", NHS, "DIRECT_CARE"))["child"]
    assert ed["gpPractice"]["odsCode"] == "A81001"
    assert ed["indicators"]["childProtectionPlan"]["value"] is True
    assert ed["address"] is None
    assert ed["school"] is None

    hv_lookup = _child(stack.lookup("health_visitor", NHS))
    hv = hv_lookup["child"]
    assert hv["address"]["postcode"] == "LS6 2AB"
    assert hv["school"] is None
    assert _withheld(hv_lookup)[("education", "school")] == "NOT_PERMITTED_FOR_ROLE"
    assert ("health", "address") not in _withheld(hv_lookup)


def test_shielded_child_shows_identity_only_even_from_sources_that_do_not_know(stack):
    lookup = _child(
        stack.lookup("social_worker", SHIELDED, "CHILD_PROTECTION_ENQUIRY", "strategy discussion")
    )
    child = lookup["child"]
    assert lookup["outcome"] == "FOUND"
    assert child["nhsNumber"]["value"] == SHIELDED
    assert child["name"]["family"] == "Hart"
    assert child["dateOfBirth"]["value"] == "2019-03-04"
    for hidden in ("address", "school", "gpPractice"):
        assert child[hidden] is None, hidden
    assert child["carers"] == []
    assert child["involvements"] == []
    withheld = _withheld(lookup)
    assert withheld[("health", "address")] == "SHIELDED"
    assert withheld[("education", "school")] == "SHIELDED"
    assert withheld[("social_care", "involvements")] == "SHIELDED"
    assert "LS6 2AB" not in str(lookup)
    assert "Test Primary" not in str(lookup)


def test_restricted_health_record_withholds_location(stack):
    lookup = _child(stack.lookup("health_visitor", RESTRICTED))
    assert lookup["child"]["address"] is None
    assert lookup["child"]["gpPractice"] is None
    assert _withheld(lookup)[("health", "address")] == "RESTRICTED"


def test_child_held_nowhere_is_not_found_with_every_source_reporting(stack):
    lookup = _child(stack.lookup("social_worker", NOBODY))
    assert lookup["outcome"] == "NOT_FOUND"
    assert lookup["child"] is None
    assert set(_statuses(lookup).values()) == {"NO_RECORD"}
    assert lookup["complete"] is True


def test_role_without_the_purpose_is_denied_and_no_agency_is_asked(stack):
    lookup = _child(stack.lookup("la_shielding_admin", NHS, "SAFEGUARDING_ENQUIRY"))
    assert lookup["outcome"] == "DENIED"
    assert lookup["denial"]
    assert lookup["child"] is None
    assert set(_statuses(lookup).values()) == {"NOT_ASKED"}


def test_a_section_47_enquiry_without_a_justification_is_denied(stack):
    lookup = _child(stack.lookup("social_worker", NHS, "CHILD_PROTECTION_ENQUIRY"))
    assert lookup["outcome"] == "DENIED"
    assert lookup["denial"] == "JUSTIFICATION_REQUIRED"
    assert lookup["child"] is None


def test_every_lookup_is_audited_with_a_pseudonymised_child(stack):
    found = _child(stack.lookup("social_worker", SHIELDED, justification="strategy meeting"))
    denied = _child(stack.lookup("la_shielding_admin", NHS, "DIRECT_CARE"))
    audit = stack.components.audit
    key = (stack.state_dir / "audit.key").read_text().strip().encode()
    by_id = {r["audit_id"]: r for r in audit.records(limit=100_000)}

    record = by_id[found["auditId"]]
    access = record["access"]
    assert access["child_ref"] == Pseudonymiser(key).ref("nhs", SHIELDED)
    assert access["role"] == "social_worker"
    assert access["purpose"] == "SAFEGUARDING_ENQUIRY"
    assert access["justification"] == "strategy meeting"
    assert record["policy_revision"] == found["policyRevision"]
    assert {s["source"]: s["status"] for s in record["sources"]} == _statuses(found)
    assert {"source": "health", "field": "name", "reason": None} in record["released"]
    assert {"source": "health", "field": "address", "reason": "SHIELDED"} in record["withheld"]
    assert {m["method"] for m in record["matches"]} == {"NHS_NUMBER"}
    assert record["child_flags"] == {
        "shielded": True,
        "restricted": False,
        "shield_status_known": True,
        "restriction_status_known": True,
    }
    assert by_id[denied["auditId"]]["outcome"] == "DENIED"

    assert SHIELDED.encode() not in audit.path.read_bytes()
    assert b"Hart" not in audit.path.read_bytes()


def test_audit_failure_releases_nothing(stack):
    blocker = sqlite3.connect(stack.components.audit.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        body = stack.lookup("social_worker", NHS)
        ready = httpx.get(f"{stack.url}/readyz", timeout=5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert "Amelia" not in str(body)
    assert "LS6" not in str(body)
    assert ready.status_code == 503
    assert ready.json()["checks"]["audit"] is False
    assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
