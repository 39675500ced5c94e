"""The GraphQL audit trail: auditors only, one child at a time, and reading it is audited."""

import pytest

from tests.factories import NHS, health_record, synthetic_nhs
from tests.stack import reference_stack

TRAIL = """query($nhs: String!) { auditTrail(nhsNumber: $nhs) {
  auditId at subject role organisation purpose justification outcome flaggedForInvestigation
  released withheld { field source reason } } }"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trail")
    with reference_stack(tmp, {"health": [health_record()]}) as gateway:
        gateway.lookup("school_dsl", NHS, justification="concern raised by class teacher")
        gateway.lookup("gp", synthetic_nhs(31), "DIRECT_CARE")
        yield gateway


def _trail(stack, role, nhs=NHS):
    return stack.post({"query": TRAIL, "variables": {"nhs": nhs}}, stack.token(role)).json()


def test_an_auditor_sees_who_looked_at_the_child_and_what_they_saw(stack):
    entries = _trail(stack, "auditor")["data"]["auditTrail"]
    lookups = [e for e in entries if e["purpose"] != "AUDIT_REVIEW"]
    assert [(e["role"], e["outcome"]) for e in lookups] == [("school_dsl", "FOUND")]
    entry = lookups[0]
    assert entry["justification"] == "concern raised by class teacher"
    assert "health:name" in entry["released"]
    assert {"field": "address", "source": "health", "reason": "NOT_PERMITTED_FOR_ROLE"} in entry[
        "withheld"
    ]
    assert entry["flaggedForInvestigation"] is False


def test_reading_the_trail_is_itself_on_the_trail(stack):
    _trail(stack, "auditor")
    entries = _trail(stack, "auditor")["data"]["auditTrail"]
    assert "AUDIT_TRAIL_VIEWED" in {e["outcome"] for e in entries}


@pytest.mark.parametrize("role", ["social_worker", "gp", "la_shielding_admin"])
def test_anyone_else_is_forbidden(stack, role):
    body = _trail(stack, role)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_an_invalid_nhs_number_is_refused(stack):
    body = _trail(stack, "auditor", nhs="123")
    assert body["errors"][0]["extensions"]["code"] == "INVALID_NHS_NUMBER"


def test_an_auditor_cannot_look_up_children(stack):
    lookup = stack.lookup("auditor", NHS)["data"]["child"]
    assert lookup["outcome"] == "DENIED"
    assert lookup["child"] is None
