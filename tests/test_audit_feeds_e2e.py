"""The auditors' feeds in GraphQL: the override alerts (break-glass lookups, naming no child) and
one user's trail since a time - each for auditors only, and each reading itself audited. Real
gateway, real Rego bundle, reference connectors on loopback, the real audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import resolvers.query
from connectors.protocol import Identifiers
from gateway.demo import DEMO_ORGANISATIONS
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_stack

REASON = "Child reported missing; police at the door need the current address now."
CHILD = synthetic_nhs(51)

LOOKUP = """query($nhs: String!, $purpose: Purpose!, $why: String) {
  child(identify: {nhsNumber: $nhs}, purpose: $purpose, justification: $why) { auditId } }"""
ALERTS = """query($since: DateTime) { overrideAlerts(since: $since) {
  at kind auditId subject role organisation justification } }"""
USER_TRAIL = """query($subject: String!, $since: DateTime) {
  userAuditTrail(subject: $subject, since: $since) {
    auditId at subject purposeCode outcomeCode flaggedForInvestigation } }"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("audit-feeds")
    records = {
        "health": [health_record(CHILD, record_id=f"H-{CHILD}")],
        "social_care": [
            social_care_record(
                CHILD, record_id="LA-1", identifiers=Identifiers(nhs_number=CHILD, local_id="LA-1")
            )
        ],
        "education": [],
    }
    with reference_stack(tmp, records, organisations=DEMO_ORGANISATIONS) as stack:
        yield stack


def _ask(gw: Stack, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    response = gw.post({"query": query, "variables": variables}, token)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _look_up(gw: Stack, name: str, purpose: str = "DIRECT_CARE", why: str | None = None) -> str:
    """A lookup of CHILD by a user called `name`; its audit id."""
    role = "police_safeguarding" if purpose == "EMERGENCY_OVERRIDE" else "health_visitor"
    token = gw.token(role, "ORG1", name)
    body = _ask(gw, LOOKUP, {"nhs": CHILD, "purpose": purpose, "why": why}, token)
    return str(body["data"]["child"]["auditId"])


def _auditor(gw: Stack, name: str = "Ada Auditor") -> str:
    return gw.token("auditor", "LA-LEEDS-IG", name)


def test_the_alerts_feed_lists_a_break_glass_lookup_and_names_no_child(gateway):
    ordinary = _look_up(gateway, "Olive Ordinary")
    broken = _look_up(gateway, "Pat Police", "EMERGENCY_OVERRIDE", REASON)

    response = gateway.post({"query": ALERTS, "variables": {}}, _auditor(gateway))
    alerts = response.json()["data"]["overrideAlerts"]

    (alert,) = [a for a in alerts if a["auditId"] == broken]
    assert (alert["kind"], alert["subject"], alert["role"], alert["organisation"]) == (
        "BREAK_GLASS",
        "dev:ORG1:Pat Police",
        "police_safeguarding",
        "ORG1",
    )
    assert alert["justification"] == REASON
    assert ordinary not in {a["auditId"] for a in alerts}
    assert CHILD not in response.text


def test_the_alerts_feed_lists_a_refused_break_glass_attempt(gateway):
    token = gateway.token("health_visitor", "ORG1", "Hal Visitor")
    body = _ask(
        gateway, LOOKUP, {"nhs": CHILD, "purpose": "EMERGENCY_OVERRIDE", "why": REASON}, token
    )
    refused = str(body["data"]["child"]["auditId"])

    response = gateway.post({"query": ALERTS, "variables": {}}, _auditor(gateway))

    (alert,) = [a for a in response.json()["data"]["overrideAlerts"] if a["auditId"] == refused]
    assert (alert["kind"], alert["subject"], alert["role"]) == (
        "BREAK_GLASS_REFUSED",
        "dev:ORG1:Hal Visitor",
        "health_visitor",
    )
    assert CHILD not in response.text


def test_the_alerts_feed_starts_at_since(gateway):
    broken = _look_up(gateway, "Pat Police", "EMERGENCY_OVERRIDE", REASON)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    since_later = _ask(gateway, ALERTS, {"since": later}, _auditor(gateway))
    everything = _ask(gateway, ALERTS, {}, _auditor(gateway))

    assert since_later["data"]["overrideAlerts"] == []
    assert broken in {a["auditId"] for a in everything["data"]["overrideAlerts"]}


def test_the_alerts_feed_and_trails_give_at_most_their_maximum_and_read_on_from_the_last(
    gateway, monkeypatch
):
    monkeypatch.setattr(resolvers.query, "MAX_READ", 2)
    start = datetime.now(UTC).isoformat()
    broken = [_look_up(gateway, "Max Reader", "EMERGENCY_OVERRIDE", REASON) for _ in range(3)]
    subject = {"subject": "dev:ORG1:Max Reader"}

    alerts = _ask(gateway, ALERTS, {"since": start}, _auditor(gateway))["data"]["overrideAlerts"]
    trail = _ask(gateway, USER_TRAIL, subject, _auditor(gateway))["data"]["userAuditTrail"]
    read_on = {"since": trail[-1]["at"]}
    rest = _ask(gateway, USER_TRAIL, subject | read_on, _auditor(gateway))["data"]

    assert [a["auditId"] for a in alerts] == broken[:2]
    assert [e["auditId"] for e in trail] == broken[:2]
    assert [e["auditId"] for e in rest["userAuditTrail"]] == broken[1:]


def test_a_users_trail_holds_their_accesses_only_from_since_on(gateway):
    first = _look_up(gateway, "Uma User")
    _look_up(gateway, "Someone Else")
    between = datetime.now(UTC).isoformat()
    second = _look_up(gateway, "Uma User")

    every = _ask(gateway, USER_TRAIL, {"subject": "dev:ORG1:Uma User"}, _auditor(gateway))
    since = _ask(
        gateway, USER_TRAIL, {"subject": "dev:ORG1:Uma User", "since": between}, _auditor(gateway)
    )

    entries = every["data"]["userAuditTrail"]
    assert [e["auditId"] for e in entries] == [first, second]  # oldest first
    assert {e["subject"] for e in entries} == {"dev:ORG1:Uma User"}
    assert [e["auditId"] for e in since["data"]["userAuditTrail"]] == [second]


@pytest.mark.parametrize("query", [ALERTS, USER_TRAIL], ids=["alerts", "a user's trail"])
def test_anyone_but_an_auditor_is_refused(gateway, query):
    token = gateway.token("social_worker", "LA-LEEDS", "Sam Social")

    body = _ask(gateway, query, {"subject": "dev:ORG1:Uma User"}, token)

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_each_reading_is_itself_on_the_readers_trail_with_what_it_covered(gateway):
    reader = _auditor(gateway, "Rita Reader")
    since = "2026-11-29T16:00:00+01:00"
    _ask(gateway, ALERTS, {}, reader)
    _ask(gateway, USER_TRAIL, {"subject": "dev:ORG1:Uma User", "since": since}, reader)
    _ask(gateway, "{ undeliveredNotifications { auditId } }", {}, reader)
    _ask(
        gateway, "{ auditTrail(nhsNumber: $n) { auditId } }".replace("$n", f'"{CHILD}"'), {}, reader
    )
    own_trail = """query($subject: String!) { userAuditTrail(subject: $subject) {
      purposeCode outcomeCode reading { since subject alertKinds } } }"""

    own = _ask(gateway, own_trail, {"subject": "dev:LA-LEEDS-IG:Rita Reader"}, _auditor(gateway))

    assert own["data"]["userAuditTrail"] == [
        {
            "purposeCode": "AUDIT_REVIEW",
            "outcomeCode": "ALERTS_VIEWED",
            "reading": {
                "since": None,
                "subject": None,
                "alertKinds": ["BREAK_GLASS", "BREAK_GLASS_REFUSED"],
            },
        },
        {
            "purposeCode": "AUDIT_REVIEW",
            "outcomeCode": "USER_TRAIL_VIEWED",
            "reading": {
                "since": "2026-11-29T15:00:00+00:00",
                "subject": "dev:ORG1:Uma User",
                "alertKinds": [],
            },
        },
        {"purposeCode": "AUDIT_REVIEW", "outcomeCode": "UNDELIVERED_VIEWED", "reading": None},
        {
            "purposeCode": "AUDIT_REVIEW",
            "outcomeCode": "AUDIT_TRAIL_VIEWED",
            "reading": {"since": None, "subject": None, "alertKinds": []},
        },
    ]


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_since_utc_cannot_hold_reads_from_the_first_or_last_time_there_is(gateway, since):
    _look_up(gateway, "Ursula Since")
    subject = {"subject": "dev:ORG1:Ursula Since", "since": since}

    body = _ask(gateway, USER_TRAIL, subject, _auditor(gateway))

    assert "errors" not in body
    entries = body["data"]["userAuditTrail"]
    assert bool(entries) is since.startswith("0001")


@pytest.mark.parametrize(
    "subject", ["dev:ORG1:Uma\u202eUser", "dev:ORG1:Uma\tUser", "x" * 257, "", " dev:ORG1:Uma"]
)
def test_a_users_trail_is_asked_for_by_an_account_as_the_log_shows_one(gateway, subject):
    """The account asked for is written to the log with the reading."""
    body = _ask(gateway, USER_TRAIL, {"subject": subject}, _auditor(gateway))

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
