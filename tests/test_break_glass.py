"""Break-glass: only child-protection roles, only with a real justification; it lifts shielding for
that one lookup, is flagged for investigation, and appears in an alerts feed that names no child."""

import json
import logging

import pytest

from connectors.notifications import NotificationLog
from connectors.protocol import Identifiers, RecordFlags
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer
from connectors.trust import ensure_key_pair, load_public_key
from gateway.cli import main
from gateway.demo import reference_source
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import (
    eventually,
    gateway_verifier,
    reference_stack,
    running_gateway,
    write_records,
)

SHIELDED = synthetic_nhs(21)
REASON = "Child reported missing; police at the door need the current address now."
# The same reason as a practitioner's browser might send it: a right-to-left override, zero-width
# and no-break spaces, a tab, a bell, full-width letters.
DISGUISED = (
    "\u202eChild reported\u200b missing;\u00a0police  at the door\tneed the current"
    " \uff41\uff44\uff44\uff52\uff45\uff53\uff53 now.\x07\u200b"
)


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
        ("social_worker", "\u200b" * 21, "JUSTIFICATION_REQUIRED"),
        ("police_safeguarding", "a" * 20, "JUSTIFICATION_REQUIRED"),
        ("social_worker", "police need address", "JUSTIFICATION_REQUIRED"),
        ("social_worker", "\u3164\u3164\u3164\u3164\u3164 " * 5, "JUSTIFICATION_REQUIRED"),
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
    # Nothing was released, but someone tried to break glass: the privacy officers are told.
    alerts = stack.components.audit.alerts()
    assert len(alerts) == before + 1
    assert (alerts[-1]["kind"], alerts[-1]["audit_id"], alerts[-1]["role"]) == (
        "BREAK_GLASS_REFUSED",
        lookup["auditId"],
        role,
    )
    assert SHIELDED not in json.dumps(alerts)
    assert stack.audited(lookup["auditId"])["flagged_for_investigation"] is False


def test_an_ordinary_lookup_denied_raises_no_alert(stack):
    before = len(stack.components.audit.alerts())

    lookup = stack.lookup("school_dsl", SHIELDED, "CHILD_PROTECTION_ENQUIRY", REASON)

    assert lookup["data"]["child"]["outcome"] == "DENIED"
    assert len(stack.components.audit.alerts()) == before


def test_privacy_officers_read_the_alerts_feed(stack, capsys):
    stack.lookup("police_safeguarding", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    assert main(["audit", "alerts", "--state-dir", str(stack.state_dir)]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert {a["role"] for a in lines} >= {"police_safeguarding"}
    granted = [a for a in lines if a["kind"] == "BREAK_GLASS"]
    assert {a["justification"] for a in granted if a["role"] == "police_safeguarding"} == {REASON}
    assert SHIELDED not in out


def test_privacy_officers_read_refused_overrides_in_the_alerts_feed(stack, capsys):
    refused = stack.lookup("gp", SHIELDED, "EMERGENCY_OVERRIDE", REASON)["data"]["child"]

    assert main(["audit", "alerts", "--state-dir", str(stack.state_dir)]) == 0

    out = capsys.readouterr().out
    (alert,) = [a for a in map(json.loads, out.splitlines()) if a["audit_id"] == refused["auditId"]]
    assert (alert["kind"], alert["role"], alert["justification"]) == (
        "BREAK_GLASS_REFUSED",
        "gp",
        REASON,
    )
    assert SHIELDED not in out


def test_a_real_sentence_disguised_with_invisible_characters_is_recorded_as_it_reads(stack, caplog):
    with caplog.at_level(logging.WARNING, logger="childlookup.alerts"):
        glass = stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", DISGUISED)
    glass = glass["data"]["child"]

    assert glass["outcome"] == "FOUND"
    assert glass["child"]["address"]["postcode"] == "LS6 2AB"
    assert stack.audited(glass["auditId"])["access"]["justification"] == REASON
    (alert,) = [a for a in stack.components.audit.alerts() if a["audit_id"] == glass["auditId"]]
    assert alert["justification"] == REASON
    # The log line raises the alarm but never carries the free text: it may name people.
    logged = [r for r in caplog.records if r.name == "childlookup.alerts"]
    assert logged
    assert not [r for r in logged if "police" in f"{r.getMessage()} {vars(r)}"]


def test_the_length_limit_counts_what_the_justification_says_not_its_padding(stack):
    padded = REASON + "\u200b" * stack.components.settings.justification_max_chars

    glass = stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", padded)["data"]["child"]

    assert glass["outcome"] == "FOUND"
    assert stack.audited(glass["auditId"])["access"]["justification"] == REASON


def test_the_owner_notice_carries_the_justification_as_it_reads(tmp_path):
    key = ensure_key_pair(tmp_path / "gateway.pem", tmp_path / "gateway.pub.pem")
    records = write_records(
        tmp_path / "social_care.jsonl",
        [social_care_record(SHIELDED, flags=RecordFlags(shielded=True))],
    )
    told = NotificationLog()
    agency = create_reference_app(
        "social_care",
        records,
        verifier=gateway_verifier(load_public_key(key.with_suffix(".pub.pem"))),
        notifications=told,
    )
    with (
        BackgroundServer(agency) as server,
        running_gateway(
            tmp_path,
            [reference_source("social_care", server.url)],
            request_signing_key_file=key,
            notification_poll_s=0.05,
        ) as gateway,
    ):
        glass = gateway.lookup("police_safeguarding", SHIELDED, "EMERGENCY_OVERRIDE", DISGUISED)
        audit_id = glass["data"]["child"]["auditId"]
        (notice,) = eventually(lambda: [n for n in told.recent(10) if n.audit_id == audit_id])

    assert glass["data"]["child"]["child"]["address"] is not None
    assert notice.justification == REASON
