"""Break-glass: only child-protection roles, only with a real justification; it lifts shielding for
that one lookup, is flagged for investigation, and appears in an alerts feed that names no child."""

import json

import pytest

from connectors.protocol import Identifiers, RecordFlags
from gateway.cli import main
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

SHIELDED = synthetic_nhs(21)
REASON = "Child reported missing; police at the door need the current address now."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("glass")
    ids = Identifiers(nhs_number=SHIELDED, local_id="LA-9")
    records = {
        "health": [health_record(SHIELDED)],
        "education": [school_record(SHIELDED, identifiers=Identifiers(nhs_number=SHIELDED))],
        "social_care": [
            social_care_record(SHIELDED, identifiers=ids, flags=RecordFlags(shielded=True))
        ],
    }
    with reference_stack(tmp, records) as gateway:
        yield gateway


def test_an_override_shows_a_shielded_childs_location_and_is_flagged(stack):
    ordinary = stack.lookup("social_worker", SHIELDED, "CHILD_PROTECTION_ENQUIRY", REASON)
    assert ordinary["data"]["child"]["child"]["address"] is None

    glass = stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON)["data"]["child"]
    assert glass["outcome"] == "FOUND"
    assert glass["child"]["address"]["postcode"] == "LS6 2AB"
    assert glass["child"]["school"]["name"] == "Test Primary"
    assert "Dr Mind" not in str(glass)  # sensitive services stay brokered

    record = stack.audited(glass["auditId"])
    assert record["flagged_for_investigation"] is True
    assert record["access"]["justification"] == REASON
    alerts = stack.components.audit.alerts()
    assert [a["audit_id"] for a in alerts] == [glass["auditId"]]
    assert alerts[0]["kind"] == "BREAK_GLASS"
    assert SHIELDED not in json.dumps(alerts)
    assert "child" not in " ".join(alerts[0])


def test_the_override_lasts_one_lookup(stack):
    stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    after = stack.lookup("social_worker", SHIELDED, "SAFEGUARDING_ENQUIRY")["data"]["child"]
    assert after["child"]["address"] is None


@pytest.mark.parametrize(
    ("role", "justification", "denial"),
    [
        ("gp", REASON, "PURPOSE_NOT_PERMITTED"),
        ("school_dsl", REASON, "PURPOSE_NOT_PERMITTED"),
        ("social_worker", None, "JUSTIFICATION_REQUIRED"),
        ("social_worker", "urgent", "JUSTIFICATION_REQUIRED"),
        ("police_safeguarding", "   short      ", "JUSTIFICATION_REQUIRED"),
    ],
)
def test_an_override_without_the_right_or_a_real_reason_is_denied(
    stack, role, justification, denial
):
    before = len(stack.components.audit.alerts())
    lookup = stack.lookup(role, SHIELDED, "EMERGENCY_OVERRIDE", justification)["data"]["child"]
    assert lookup["outcome"] == "DENIED"
    assert lookup["denial"] == denial
    assert lookup["child"] is None
    assert len(stack.components.audit.alerts()) == before


def test_privacy_officers_read_the_alerts_feed(stack, capsys):
    stack.lookup("police_safeguarding", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    assert main(["audit", "alerts", "--state-dir", str(stack.state_dir)]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert {a["role"] for a in lines} >= {"police_safeguarding"}
    assert SHIELDED not in out
