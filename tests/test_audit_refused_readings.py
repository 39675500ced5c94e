"""Readings of the audit log refused to someone not an auditor (auditTrail, userAuditTrail, the
alert feeds, undeliveredNotifications): each is written to the log with what it asked for, so a
practitioner trying to see who looked at a child, or what a colleague did, is seen by the privacy
officers. Real gateway, real Rego bundle, reference connectors on loopback, the real SQLite audit
log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.demo import DEMO_ORGANISATIONS
from tests.factories import health_record, synthetic_nhs
from tests.stack import Stack, reference_stack

CHILD = synthetic_nhs(63)
SINCE = "2026-11-29T16:00:00+01:00"

ENTRY = "subject role purposeCode outcomeCode reading { since subject alertKinds }"
TRAIL = f"""query($nhs: String!, $since: DateTime) {{
  auditTrail(nhsNumber: $nhs, since: $since) {{ {ENTRY} }} }}"""
USER_TRAIL = f"query($subject: String!) {{ userAuditTrail(subject: $subject) {{ {ENTRY} }} }}"
FEEDS = {
    "overrideAlerts": ["BREAK_GLASS", "BREAK_GLASS_REFUSED"],
    "limitAlerts": ["DISTINCT_CHILDREN_CAP", "ORGANISATION_RATE_LIMITED", "RATE_LIMITED"],
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("audit-refused-readings")
    records = {
        "health": [health_record(CHILD, record_id="H-63")],
        "social_care": [],
        "education": [],
    }
    with reference_stack(tmp, records, organisations=DEMO_ORGANISATIONS) as stack:
        yield stack


def _ask(gw: Stack, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    response = gw.post({"query": query, "variables": variables}, token)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _code(body: dict[str, Any]) -> str:
    assert body["data"] is None, body
    return str(body["errors"][0]["extensions"]["code"])


def _social_worker(gw: Stack, name: str) -> tuple[str, str]:
    """A social worker's token and the account their records are kept under."""
    return gw.token("social_worker", "LA-LEEDS", name), f"dev:LA-LEEDS:{name}"


def _auditor(gw: Stack) -> str:
    return gw.token("auditor", "LA-LEEDS-IG", "Ada Auditor")


def _users_trail(gw: Stack, subject: str) -> list[dict[str, Any]]:
    body = _ask(gw, USER_TRAIL, {"subject": subject}, _auditor(gw))
    return body["data"]["userAuditTrail"]  # type: ignore[no-any-return]


def _log_bytes(gw: Stack) -> bytes:
    path = gw.components.audit.path
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _refusal(reading: dict[str, Any] | None, subject: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "role": "social_worker",
        "purposeCode": "AUDIT_REVIEW",
        "outcomeCode": "REFUSED",
        "reading": reading,
    }


def test_a_childs_trail_refused_to_a_social_worker_is_in_that_childs_trail(gateway):
    gateway.lookup("health_visitor", CHILD, "DIRECT_CARE")
    token, subject = _social_worker(gateway, "Nosy Social")

    refused = _ask(gateway, TRAIL, {"nhs": CHILD, "since": SINCE}, token)
    trail = _ask(gateway, TRAIL, {"nhs": CHILD}, _auditor(gateway))["data"]["auditTrail"]

    assert _code(refused) == "FORBIDDEN"
    reading = {"since": "2026-11-29T15:00:00+00:00", "subject": None, "alertKinds": []}
    assert [e for e in trail if e["subject"] == subject] == [_refusal(reading, subject)]
    (row,) = gateway.components.audit.records(subject=subject)
    assert (row["access"]["purpose"], row["outcome"], row["error_code"]) == (
        "AUDIT_REVIEW",
        "REFUSED",
        "FORBIDDEN",
    )
    assert row["access"]["child_ref"] == gateway.components.pseudonymiser.refs("nhs", CHILD)[0]
    assert CHILD not in json.dumps(row)
    assert CHILD.encode() not in _log_bytes(gateway)


def test_a_users_trail_refused_to_a_social_worker_is_in_the_askers_trail(gateway):
    token, subject = _social_worker(gateway, "Curious Colleague")

    refused = _ask(gateway, USER_TRAIL, {"subject": "dev:ORG1:Uma User"}, token)

    assert _code(refused) == "FORBIDDEN"
    reading = {"since": None, "subject": "dev:ORG1:Uma User", "alertKinds": []}
    assert _users_trail(gateway, subject) == [_refusal(reading, subject)]
    (row,) = gateway.components.audit.records(subject=subject)
    assert row["error_code"] == "FORBIDDEN"


def test_a_users_trail_asked_for_by_a_childs_nhs_number_is_refused_without_keeping_it(gateway):
    """No account reads as CHILD: an auditor is told so (BAD_USER_INPUT); anyone else is told
    FORBIDDEN as for any account - learning nothing of which accounts exist - and the refusal is
    recorded without the NHS number."""
    token, subject = _social_worker(gateway, "Pasting Social")

    refused = _ask(gateway, USER_TRAIL, {"subject": CHILD}, token)

    assert _code(refused) == "FORBIDDEN"
    reading = {"since": None, "subject": None, "alertKinds": []}
    assert _users_trail(gateway, subject) == [_refusal(reading, subject)]
    assert CHILD.encode() not in _log_bytes(gateway)


@pytest.mark.parametrize("feed", sorted(FEEDS))
def test_an_alerts_feed_refused_to_a_social_worker_is_recorded_and_raises_no_alert(gateway, feed):
    token, subject = _social_worker(gateway, f"Alert Watcher {feed}")

    refused = _ask(gateway, f"{{ {feed} {{ auditId }} }}", {}, token)
    alerts = {
        name: _ask(gateway, f"{{ {name} {{ subject }} }}", {}, _auditor(gateway))["data"][name]
        for name in FEEDS
    }

    assert _code(refused) == "FORBIDDEN"
    reading = {"since": None, "subject": None, "alertKinds": FEEDS[feed]}
    assert _users_trail(gateway, subject) == [_refusal(reading, subject)]
    # No alert kind is for it: neither a break-glass attempt nor a usage limit.
    assert all(a["subject"] != subject for feed_alerts in alerts.values() for a in feed_alerts)


def test_the_undelivered_notifications_refused_to_a_social_worker_are_recorded(gateway):
    token, subject = _social_worker(gateway, "Outbox Peeker")

    refused = _ask(gateway, "{ undeliveredNotifications { auditId } }", {}, token)

    assert _code(refused) == "FORBIDDEN"
    assert _users_trail(gateway, subject) == [_refusal(None, subject)]


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        (TRAIL, {"nhs": "123"}, "INVALID_NHS_NUMBER"),
        (TRAIL, {"nhs": CHILD[:-1] + str((int(CHILD[-1]) + 1) % 10)}, "INVALID_NHS_NUMBER"),
        (USER_TRAIL, {"subject": "dev:ORG1:Uma\u202eUser"}, "BAD_USER_INPUT"),
        (USER_TRAIL, {"subject": "x" * 257}, "BAD_USER_INPUT"),
    ],
    ids=["short NHS number", "bad check digit", "direction character", "too long"],
)
def test_invalid_input_is_refused_as_such_and_records_nothing(gateway, query, variables, code):
    token, subject = _social_worker(gateway, "Typo Social")

    body = _ask(gateway, query, variables, token)

    assert _code(body) == code
    assert gateway.components.audit.records(subject=subject) == []


def test_a_refused_reading_is_still_forbidden_when_the_log_cannot_take_it(gateway):
    """Best effort, as the record of a lookup or trail reading refused at a usage limit: nothing
    is read either way, and the caller is told why it was refused, not of an outage."""
    token, subject = _social_worker(gateway, "Locked Out")
    blocker = sqlite3.connect(gateway.components.audit.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        body = _ask(gateway, TRAIL, {"nhs": CHILD}, token)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert _code(body) == "FORBIDDEN"
    assert gateway.components.audit.records(subject=subject) == []
