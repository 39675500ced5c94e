"""Break-glass attempts that went unseen - refused for their justification before the pipeline, or
failing after the agencies were asked - and a notification log torn by a full disk.

Real components only: reference connectors on loopback, the real Rego bundle (copied and broken
where a test needs the policy to fail), the real SQLite audit store and outbox.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from connectors.notifications import NotificationLog
from connectors.protocol import Identifiers, RecordFlags
from gateway.audit import BREAK_GLASS_ALERTS
from gateway.config import DEFAULT_POLICY_DIR
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

SHIELDED = synthetic_nhs(71)
REASON = "Child reported missing; police at the door need the current address now."


def shielded_records() -> dict[str, list]:
    ids = Identifiers(nhs_number=SHIELDED, local_id="LA-71")
    return {
        "health": [health_record(SHIELDED)],
        "education": [school_record(SHIELDED, identifiers=Identifiers(nhs_number=SHIELDED))],
        "social_care": [
            social_care_record(SHIELDED, identifiers=ids, flags=RecordFlags(shielded=True))
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("notify-review"), shielded_records()) as gateway:
        yield gateway


def _override_records(stack) -> list[dict]:
    return [
        r
        for r in stack.components.audit.records()
        if r["access"]["purpose"] == "EMERGENCY_OVERRIDE"
    ]


# --- break-glass attempts refused at the resolver ------------------------------------------------


@pytest.mark.parametrize(
    ("role", "justification"),
    [
        # A role the policy never grants break-glass, and one it does: both tried.
        ("school_dsl", REASON + " " + "x" * 1000),
        ("social_worker", REASON + " " + "x" * 1000),
        ("school_dsl", f"{REASON} Ref {synthetic_nhs(5)}"),
    ],
    ids=["too-long-unpermitted-role", "too-long", "holds-nhs-number"],
)
def test_a_break_glass_attempt_refused_for_its_justification_is_audited_and_alerted(
    stack, role, justification
):
    """Nothing was released, but someone tried to break glass: a refused attempt is audited and
    raises BREAK_GLASS_REFUSED for the privacy officers (tests/test_break_glass.py), whether the
    policy or the resolver refused it. Refused for the justification's length or for an NHS number
    in it, the attempt leaves no trace at all: an unpermitted role can try break-glass unseen."""
    records_before = len(_override_records(stack))
    alerts_before = len(stack.components.audit.alerts(kinds=BREAK_GLASS_ALERTS))

    body = stack.lookup(role, SHIELDED, "EMERGENCY_OVERRIDE", justification)

    assert body["errors"][0]["extensions"]["code"] == "INVALID_JUSTIFICATION"
    assert body["data"] is None
    alerts = stack.components.audit.alerts(kinds=BREAK_GLASS_ALERTS)
    records = _override_records(stack)
    assert len(records) == records_before + 1, "the refused override left no audit record"
    assert len(alerts) == alerts_before + 1, "the refused override raised no alert"
    assert alerts[-1]["kind"] == "BREAK_GLASS_REFUSED"
    assert alerts[-1]["role"] == role
    # The refused text itself is kept nowhere: it is what could not be kept.
    assert SHIELDED not in str(alerts) + str(records[-1])
    assert synthetic_nhs(5) not in str(alerts) + str(records[-1])


# --- break-glass lookups that fail after the agencies were asked ---------------------------------


def test_a_permitted_override_that_fails_after_the_agencies_were_asked_is_flagged(tmp_path):
    """The policy permitted the override and the agencies were asked for a shielded child's
    records, past the shield; then the release decision failed (POLICY_UNAVAILABLE). Nothing was
    released, but break-glass is never routine: the attempt must reach the privacy officers'
    feed. It is recorded through the failure path as an ordinary ERROR instead - unflagged, no
    alert, absent from overrideAlerts."""
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    release = policies / "release.rego"
    release.write_text(
        release.read_text().replace("decision := {", 'decision := {\n\t"broken": input.nope,', 1)
    )
    with reference_stack(tmp_path, shielded_records(), policy_dir=policies) as gateway:
        body = gateway.lookup("police_safeguarding", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
        records = _override_records(gateway)
        alerts = gateway.components.audit.alerts(kinds=BREAK_GLASS_ALERTS)

    assert body["errors"][0]["extensions"]["code"] == "POLICY_UNAVAILABLE"
    (record,) = records
    assert (record["outcome"], record["error_code"]) == ("ERROR", "POLICY_UNAVAILABLE")
    assert record["flagged_for_investigation"] or alerts, (
        "a permitted break-glass lookup that failed was neither flagged nor alerted"
    )
    assert [a["audit_id"] for a in alerts] == [record["audit_id"]]


# --- the reference agencies' notification log ----------------------------------------------------

_KEEP_WHILE_THE_DISK_IS_FULL = """
import asyncio, resource, signal, sys
from pathlib import Path
from connectors.notifications import NotificationLog
from tests.factories import notification

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk answers EFBIG, as ENOSPC would
path = Path(sys.argv[1])
log = NotificationLog(path)
first = notification("m-1")
second = notification("m-2", justification="A reason long enough to be cut short. " * 40)


async def main():
    assert await log.keep(first)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, hard))
    try:
        await log.keep(second)  # the connector answers 503: the gateway will send it again
    except OSError:
        print("refused for now")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    assert await log.keep(second)  # the gateway's retry, kept and acknowledged


asyncio.run(main())
"""


def test_a_notification_log_write_that_failed_part_way_does_not_stop_the_connector(tmp_path):
    """A disk that fills up while a notification is appended: the write stops part way, the
    connector answers 503 and the gateway sends the notification again, which is kept once there
    is room. The torn half-line was left in the middle of the file, so the next start reads a
    line that is no notification and the connector - lookups and all - cannot start."""
    path = tmp_path / "notifications.jsonl"
    run = subprocess.run(
        [sys.executable, "-c", _KEEP_WHILE_THE_DISK_IS_FULL, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "refused for now" in run.stdout

    restarted = NotificationLog(path)  # the connector starting again on the same file

    assert [n.message_id for n in restarted.recent(10)] == ["m-2", "m-1"]
