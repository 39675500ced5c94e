"""Decision logs in OPA's format, tied to audit records, with no personal data in them."""

import json

import pytest

from tests.factories import NHS, health_record, social_care_record
from tests.stack import reference_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_stack(tmp_path_factory.mktemp("decisions"), records) as gateway:
        yield gateway


def _decisions(stack):
    lines = (stack.state_dir / "decision-log.jsonl").read_text().splitlines()
    return {entry["decision_id"]: entry for entry in map(json.loads, lines)}


def test_each_lookup_logs_its_plan_and_release_decisions_in_opa_format(stack):
    lookup = stack.lookup("health_visitor", NHS)["data"]["child"]
    record = stack.audited(lookup["auditId"])
    decisions = _decisions(stack)
    plan, release = (decisions[i] for i in record["decision_ids"])
    assert plan["path"] == "childlookup/plan/decision"
    assert release["path"] == "childlookup/release/decision"
    for entry in (plan, release):
        assert entry["bundles"] == {"childlookup": {"revision": lookup["policyRevision"]}}
        assert set(entry) >= {"decision_id", "labels", "input", "result", "timestamp", "masked"}
        assert entry["timestamp"].endswith("Z")
    assert plan["input"]["caller"]["role"] == "health_visitor"
    assert plan["result"]["permitted"] is True
    withheld = {(w["record"], w["field"]): w["reason"] for w in release["result"]["withheld"]}
    assert set(withheld.values()) >= {"SENSITIVE_SERVICE"}


def test_a_denied_lookup_logs_only_its_plan(stack):
    lookup = stack.lookup("la_shielding_admin", NHS)["data"]["child"]
    record = stack.audited(lookup["auditId"])
    assert len(record["decision_ids"]) == 1
    assert (
        _decisions(stack)[record["decision_ids"][0]]["result"]["denial"] == "PURPOSE_NOT_PERMITTED"
    )


def test_decision_inputs_carry_no_personal_data(stack):
    stack.lookup("social_worker", NHS, "CHILD_PROTECTION_ENQUIRY", "Named worry about Jo Hart")
    text = (stack.state_dir / "decision-log.jsonl").read_text()
    for personal in (NHS, "Amelia", "Hart", "LS6", "H1", "LA-000001"):
        assert personal not in text
    assert '"justification":{"letters":21,"words":5}' in text
