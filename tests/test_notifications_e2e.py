"""Owner notification: the agency holding a record of a child on a protection plan or looked after,
or any record shown in a break-glass override, is told who looked - through a durable outbox that
outlives a dead receiver and a restarted gateway, signed, delivered once per agency as far as the
agency can tell, and erased once delivered.

Receivers are real connector apps on loopback, the policy is the real Rego bundle, the outbox is
the real audit database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from connectors.notifications import (
    NOTIFICATIONS_PATH,
    RECENT_NOTIFICATIONS_PATH,
    AccessedRecord,
    Notification,
    NotificationLog,
    NotificationReason,
)
from connectors.protocol import Identifiers, Indicators, RecordFlags
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer, free_port
from connectors.trust import ensure_key_pair, load_public_key
from gateway.audit import (
    OutboxState,
    SqliteAuditStore,
    SqliteOutbox,
    checkpoint_keys,
    ensure_checkpoint_key,
)
from gateway.cli import main
from gateway.config import Settings, SourceConfig
from gateway.demo import reference_source
from resolvers.mapping import audit_entry
from tests.factories import (
    audit_record,
    health_record,
    notifying_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import FAST_NOTIFICATIONS as FAST
from tests.stack import eventually, gateway_verifier, running_gateway, write_records

REASON = "Child reported missing; police at the door need the current address now."

ON_A_PLAN = synthetic_nhs(31)
ORDINARY = synthetic_nhs(32)
SHIELDED = synthetic_nhs(33)


@pytest.fixture(scope="module")
def gateway_key(tmp_path_factory) -> Path:
    """The gateway's request-signing key, shared with the agencies out of band."""
    tmp = tmp_path_factory.mktemp("gateway-key")
    return ensure_key_pair(tmp / "gateway.pem", tmp / "gateway.pub.pem")


def agency_app(name: str, records: Path, gateway_key: Path, sink: Any) -> Starlette:
    public = load_public_key(gateway_key.with_suffix(".pub.pem"))
    return create_reference_app(
        name, records, verifier=gateway_verifier(public), notifications=sink
    )


LA_IDS = Identifiers(nhs_number=ON_A_PLAN, local_id="LA-CP-1")


def agency_records() -> dict[str, list[Any]]:
    return {
        "health": [
            health_record(ON_A_PLAN, record_id="H-CP"),
            health_record(ORDINARY, record_id="H-ORD"),
            health_record(SHIELDED, record_id="H-SH"),
        ],
        "education": [school_record(SHIELDED, identifiers=Identifiers(nhs_number=SHIELDED))],
        "social_care": [
            social_care_record(ON_A_PLAN, record_id="LA-CP-1", identifiers=LA_IDS),
            social_care_record(
                ORDINARY, record_id="LA-ORD-1", indicators=Indicators(child_in_need=True)
            ),
            social_care_record(
                SHIELDED,
                record_id="LA-SH-1",
                indicators=Indicators(child_in_need=True),
                flags=RecordFlags(shielded=True),
            ),
        ],
    }


@pytest.fixture(scope="module")
def agencies(tmp_path_factory, gateway_key):
    """The three reference agencies, each receiving notifications; yields (sources, sinks)."""
    tmp = tmp_path_factory.mktemp("agencies")
    sinks = {name: NotificationLog() for name in ("health", "education", "social_care")}
    with contextlib.ExitStack() as stack:
        sources = []
        for name, records in agency_records().items():
            app = agency_app(
                name, write_records(tmp / f"{name}.jsonl", records), gateway_key, sinks[name]
            )
            server = stack.enter_context(BackgroundServer(app))
            sources.append(reference_source(name, server.url))
        yield sources, sinks


def entries(tmp: Path, audit_id: str) -> list[Any]:
    outbox = SqliteOutbox(tmp / "audit.sqlite3")
    try:
        return outbox.entries(audit_id)
    finally:
        outbox.close()


def kept_for(sink: NotificationLog, audit_id: str) -> list[Notification]:
    return [n for n in sink.recent(1000) if n.audit_id == audit_id]


def test_the_local_authority_is_told_when_a_child_on_a_plan_is_looked_up(
    tmp_path, agencies, gateway_key
):
    sources, sinks = agencies
    with running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw:
        lookup = gw.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"]
        audit_id = lookup["auditId"]
        told = eventually(lambda: kept_for(sinks["social_care"], audit_id))
        record = gw.audited(audit_id)

    assert lookup["child"]["indicators"]["childProtectionPlan"]["value"] is True
    (notice,) = told
    assert notice.accessor.role == "ed_clinician"
    assert notice.accessor.organisation == "ORG1"
    assert notice.purpose == "DIRECT_CARE"
    assert notice.records == [
        AccessedRecord(record_id="LA-CP-1", reasons=[NotificationReason.CHILD_PROTECTION_PLAN])
    ]
    assert ON_A_PLAN not in notice.model_dump_json()
    assert kept_for(sinks["health"], audit_id) == []
    assert record["notified"] == [
        {
            "source": "social_care",
            "reasons": ["CHILD_PROTECTION_PLAN"],
            "message_id": notice.message_id,
            "told_why": True,
        }
    ]
    (entry,) = eventually(
        lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DELIVERED]
    )
    assert entry.payload is None


def test_the_local_authority_is_told_even_when_the_caller_may_not_see_the_plan(
    tmp_path, agencies, gateway_key
):
    sources, sinks = agencies
    with running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw:
        lookup = gw.lookup("health_visitor", ON_A_PLAN, "DIRECT_CARE")["data"]["child"]
        ordinary = gw.lookup("health_visitor", ORDINARY, "DIRECT_CARE")["data"]["child"]
        told = eventually(lambda: kept_for(sinks["social_care"], lookup["auditId"]))

    assert told[0].records == [
        AccessedRecord(record_id="LA-CP-1", reasons=[NotificationReason.CHILD_PROTECTION_PLAN])
    ]
    assert lookup["child"]["indicators"]["childProtectionPlan"] is None
    # Withheld alike whether or not the child has a plan: the response gives nothing away.
    withheld = [
        [w for w in answer["withheld"] if w["field"] in ("child_protection_plan", "looked_after")]
        for answer in (lookup, ordinary)
    ]
    assert withheld[0] == withheld[1]
    assert {w["field"] for w in withheld[0]} == {"child_protection_plan", "looked_after"}


def test_an_override_tells_every_agency_whose_record_was_shown(tmp_path, agencies, gateway_key):
    sources, sinks = agencies
    with running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw:
        lookup = gw.lookup("police_safeguarding", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
        audit_id = lookup["data"]["child"]["auditId"]
        told = {
            name: eventually(lambda sink=sink: kept_for(sink, audit_id))
            for name, sink in sinks.items()
        }

    assert lookup["data"]["child"]["child"]["address"] is not None  # the shield was lifted
    assert told["social_care"][0].records == [
        AccessedRecord(record_id="LA-SH-1", reasons=[NotificationReason.EMERGENCY_OVERRIDE])
    ]
    assert told["health"][0].records[0].record_id == "H-SH"
    assert told["education"][0].records[0].record_id == "E1"
    # Why the shield was lifted goes to the authority holding it alone: the reason is often the
    # very story the shield protects.
    assert {name: n[0].justification for name, n in told.items()} == {
        "social_care": REASON,
        "health": None,
        "education": None,
    }


def test_an_ordinary_lookup_tells_no_one(tmp_path, agencies, gateway_key):
    sources, sinks = agencies
    with running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw:
        lookup = gw.lookup("social_worker", ORDINARY)["data"]["child"]
        record = gw.audited(lookup["auditId"])

    assert lookup["outcome"] == "FOUND"
    assert lookup["child"]["indicators"]["childInNeed"]["value"] is True
    assert record["notified"] == []
    assert entries(tmp_path, lookup["auditId"]) == []
    assert all(kept_for(sink, lookup["auditId"]) == [] for sink in sinks.values())


def test_a_notification_survives_a_dead_receiver_and_a_gateway_restart(tmp_path, gateway_key):
    """The agency's receiver is down when a child on a plan is looked up; the gateway keeps trying,
    is stopped, and a new gateway on the same audit database delivers the message - once - when
    the receiver comes back on the same address."""
    records = agency_records()
    social_care_file = write_records(tmp_path / "social_care.jsonl", records["social_care"])
    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    received = tmp_path / "received.jsonl"
    lookups = agency_app("social_care", social_care_file, gateway_key, NotificationLog())
    with BackgroundServer(lookups) as social_care:
        # The agency receives notifications on a host of its own, which is down for now.
        source = SourceConfig.model_validate(
            reference_source("social_care", social_care.url).model_dump()
            | {"notification_url": receiver_url + NOTIFICATIONS_PATH}
        )
        settings = {"request_signing_key_file": gateway_key, **FAST}
        with running_gateway(tmp_path, [source], **settings) as first:
            audit_id = first.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"][
                "auditId"
            ]
            (waiting,) = eventually(
                lambda: [e for e in entries(tmp_path, audit_id) if e.attempts >= 2]
            )
        (stopped,) = entries(tmp_path, audit_id)

        log = NotificationLog(received)
        receiver_app = agency_app("social_care", social_care_file, gateway_key, log)
        with (
            BackgroundServer(receiver_app, port=receiver_port),
            running_gateway(tmp_path, [source], **settings),
        ):
            (delivered,) = eventually(
                lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DELIVERED]
            )
            recent = httpx.get(receiver_url + RECENT_NOTIFICATIONS_PATH).json()

    assert (waiting.state, waiting.last_error) == (OutboxState.PENDING, "UNREACHABLE")
    assert stopped.state is OutboxState.PENDING
    assert delivered.payload is None
    assert delivered.attempts > stopped.attempts
    (kept,) = NotificationLog(received).recent(10)  # read back from the agency's file
    assert kept.message_id == delivered.message_id
    assert kept.audit_id == audit_id
    assert kept.records == [
        AccessedRecord(record_id="LA-CP-1", reasons=[NotificationReason.CHILD_PROTECTION_PLAN])
    ]
    assert [n["message_id"] for n in recent["notifications"]] == [kept.message_id]


class SlowToKeepTheFirst(NotificationLog):
    """An agency store so slow with the first notification that the gateway stops waiting for
    the acknowledgement and sends the message again."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self._delay_s = delay_s
        self.calls = 0
        self.duplicates = 0

    async def keep(self, notification: Notification) -> bool:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(self._delay_s)
        kept = await super().keep(notification)
        self.duplicates += not kept
        return kept


def test_a_message_sent_again_after_a_lost_acknowledgement_is_kept_once(tmp_path, gateway_key):
    records = agency_records()
    sink = SlowToKeepTheFirst(delay_s=1.0)
    app = agency_app(
        "social_care",
        write_records(tmp_path / "social_care.jsonl", records["social_care"]),
        gateway_key,
        sink,
    )
    settings = {"request_signing_key_file": gateway_key, **FAST, "notification_timeout_ms": 200}
    with BackgroundServer(app) as social_care:
        source = reference_source("social_care", social_care.url)
        with running_gateway(tmp_path, [source], **settings) as gw:
            audit_id = gw.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"][
                "auditId"
            ]
            (delivered,) = eventually(
                lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DELIVERED]
            )

    assert delivered.attempts >= 2
    assert sink.duplicates >= 1
    assert [n.message_id for n in kept_for(sink, audit_id)] == [delivered.message_id]


class Alerts(logging.Handler):
    """Collects alert records whatever the logging configuration, as an alert feed would."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def alerts() -> Iterator[Alerts]:
    handler = Alerts()
    logger = logging.getLogger("childlookup.alerts")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_an_undeliverable_notification_is_dead_lettered_with_an_alert_naming_no_child(
    tmp_path, agencies, gateway_key, alerts
):
    sources, _ = agencies
    dead_end = f"http://127.0.0.1:{free_port()}{NOTIFICATIONS_PATH}"
    sources = [
        SourceConfig.model_validate(s.model_dump() | {"notification_url": dead_end})
        for s in sources
    ]
    settings = {"request_signing_key_file": gateway_key, **FAST, "notification_max_attempts": 3}
    with running_gateway(tmp_path, sources, **settings) as gw:
        audit_id = gw.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"]["auditId"]
        (dead,) = eventually(
            lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DEAD]
        )
        (alert,) = eventually(
            lambda: [
                a for a in alerts.records if getattr(a, "event", "") == "notification_dead_letter"
            ]
        )

    assert (dead.attempts, dead.last_error) == (3, "UNREACHABLE")
    assert dead.payload is not None  # kept, so the local authority can still be told
    assert alert.context == {  # type: ignore[attr-defined]
        "message_id": dead.message_id,
        "audit_id": audit_id,
        "source": "social_care",
        "attempts": 3,
        "error": "UNREACHABLE",
    }
    said = alert.getMessage() + json.dumps(alert.context)  # type: ignore[attr-defined]
    for personal in (ON_A_PLAN, "LA-CP-1", "Amelia", "Test User"):
        assert personal not in said


UNDELIVERED = (
    "{ undeliveredNotifications { auditId agency attempts lastError queuedAt givenUpAt } }"
)


@pytest.mark.anyio
async def test_an_operator_closes_a_dead_letter_passed_on_by_other_means(
    tmp_path, capsys, monkeypatch
):
    """An agency that left the federation is told by phone; `passed-on` closes its dead letter,
    erasing the payload and keeping how it was told on the receipt, so it leaves the dead
    letters (and the auditors' list) and is never sent after all. Each close is written to the
    hash-chained log with it, signed into a checkpoint with the gateways' own key - which the
    command only ever loads: without it, nothing is closed."""
    settings = Settings(state_dir=tmp_path)
    store = SqliteAuditStore(
        settings.resolved_audit_db(), checkpoint_key=checkpoint_keys(settings, create=True)
    )
    for i in range(98):  # the first close is then the 100th record: a checkpoint's
        await store.append(audit_record(f"a-{i}"))
    await store.append(*notifying_record("a-last", "m-0", "m-1"))
    store.seal()  # as a running gateway does
    store.close()
    outbox = SqliteOutbox(settings.resolved_audit_db())
    for message_id in ("m-0", "m-1"):
        outbox.dead(message_id, "UNREACHABLE", 1.0)
    outbox.close()
    state = ["--state-dir", str(tmp_path)]
    how = "  Phoned the\nduty manager, 29 Nov 10:40 (J. Smith)  "
    by = ["--by", " Jo \u202e Smith\u200b "]  # kept as it reads: no right-to-left override
    key = settings.resolved_checkpoint_key_file()

    key.rename(key.with_suffix(".away"))  # not the gateways' environment: no key, no close
    assert main(["notifications", "passed-on", "m-0", "--how", how, *by, *state]) == 2
    assert str(key) in capsys.readouterr().err
    assert not key.exists()  # none made on the spot
    key.with_suffix(".away").rename(key)
    stale = ensure_checkpoint_key(tmp_path / "elsewhere" / "audit-checkpoint.pem")
    monkeypatch.setenv("CHILDLOOKUP_AUDIT_CHECKPOINT_KEY_FILE", str(stale))
    assert main(["notifications", "passed-on", "m-0", "--how", how, *by, *state]) == 2
    assert "did not sign the log's latest checkpoint" in capsys.readouterr().err
    monkeypatch.delenv("CHILDLOOKUP_AUDIT_CHECKPOINT_KEY_FILE")

    assert main(["notifications", "passed-on", "m-0", "m-9", "--how", how, *by, *state]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [{"message_id": "m-0"}]
    assert "m-9" in err
    assert main(["notifications", "passed-on", "m-1", "--how", "  ", *by, *state]) == 2
    assert "--how" in capsys.readouterr().err
    assert main(["notifications", "passed-on", "m-1", "--how", how, "--by", " ", *state]) == 2
    assert "--by" in capsys.readouterr().err
    naming = f"Phoned about {synthetic_nhs(3)[:3]}-{synthetic_nhs(3)[3:6]}-{synthetic_nhs(3)[6:]}"
    assert main(["notifications", "passed-on", "m-1", "--how", naming, *by, *state]) == 2
    assert "must not name the child" in capsys.readouterr().err
    assert main(["notifications", "list", *state]) == 0
    assert [json.loads(line)["message_id"] for line in capsys.readouterr().out.splitlines()] == [
        "m-1"
    ]
    assert main(["notifications", "list", "--state", "DELIVERED", *state]) == 0
    (closed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert closed["passed_on"] == "Phoned the duty manager, 29 Nov 10:40 (J. Smith)"
    assert main(["notifications", "show", "m-0", *state]) == 0
    assert json.loads(capsys.readouterr().out)["notification"] is None  # erased

    # The close is in the log, which verifies with the gateways' keys, its checkpoint included.
    assert main(["audit", "query", "--user", "operator:Jo Smith", *state]) == 0
    (close,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert close["request_id"] == "m-0"
    assert close["access"] | {"at": None} == {
        "at": None,
        "subject": "operator:Jo Smith",
        "name": "Jo Smith",
        "role": "operator",
        "organisation": settings.gateway_id,
        "purpose": "OPERATIONS",
        "justification": "Phoned the duty manager, 29 Nov 10:40 (J. Smith)",
        "child_ref": None,
    }
    assert [(s["source"], s["error_code"]) for s in close["sources"]] == [
        ("social_care", "UNREACHABLE")
    ]
    assert main(["audit", "verify", *state]) == 0
    assert "100 records, 2 checkpoints verified" in capsys.readouterr().out
    entry = audit_entry(close)  # as an auditor reads it in the operator's userAuditTrail
    assert (entry.purpose_code.value, entry.outcome_code.value) == (
        "OPERATIONS",
        "NOTIFICATION_PASSED_ON",
    )


def test_a_dead_letter_is_listed_shown_and_once_resent_delivered_by_the_running_gateway(
    tmp_path, agencies, gateway_key, capsys
):
    """The operator's way through a dead letter: `notifications list` finds it, `show` gives the
    message to pass on by other means, and once the agency's endpoint is mended, `resend` queues
    it again and the running gateway delivers it. Meanwhile auditors see it among the
    undelivered notifications (naming the lookup and the agency, not the child); no one else
    may."""
    sources, _ = agencies
    port = free_port()
    mended = f"http://127.0.0.1:{port}{NOTIFICATIONS_PATH}"
    sources = [
        SourceConfig.model_validate(s.model_dump() | {"notification_url": mended}) for s in sources
    ]
    settings = {"request_signing_key_file": gateway_key, **FAST, "notification_max_attempts": 2}
    state = ["--state-dir", str(tmp_path)]
    sink = NotificationLog()
    records = write_records(tmp_path / "la.jsonl", agency_records()["social_care"])
    with running_gateway(tmp_path, sources, **settings) as gw:
        audit_id = gw.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"]["auditId"]
        (dead,) = eventually(
            lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DEAD]
        )
        capsys.readouterr()
        undelivered = gw.post({"query": UNDELIVERED}, gw.token("auditor")).json()
        refused = gw.post({"query": UNDELIVERED}, gw.token("ed_clinician")).json()

        assert main(["notifications", "list", *state]) == 0
        (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert main(["notifications", "show", dead.message_id, *state]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert main(["notifications", "resend", "not-a-message", *state]) == 1
        assert capsys.readouterr().out == ""
        with BackgroundServer(agency_app("social_care", records, gateway_key, sink), port=port):
            assert main(["notifications", "resend", "--all", *state]) == 0
            resent = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            (delivered,) = eventually(
                lambda: [e for e in entries(tmp_path, audit_id) if e.state is OutboxState.DELIVERED]
            )
        assert main(["notifications", "list", *state]) == 0
        assert capsys.readouterr().out == ""  # no dead letter left
        after = gw.post({"query": UNDELIVERED}, gw.token("auditor")).json()
        reviews = [
            r for r in gw.components.audit.records() if r["access"]["purpose"] == "AUDIT_REVIEW"
        ]

    (listed_for_auditors,) = undelivered["data"]["undeliveredNotifications"]
    assert listed_for_auditors | {"queuedAt": None, "givenUpAt": None} == {
        "auditId": audit_id,
        "agency": "social_care",
        "attempts": 2,
        "lastError": "UNREACHABLE",
        "queuedAt": None,
        "givenUpAt": None,
    }
    queued, given_up = (
        datetime.fromisoformat(listed_for_auditors[at]) for at in ("queuedAt", "givenUpAt")
    )
    assert queued.timestamp() == pytest.approx(dead.queued_at, abs=0.001)
    assert given_up.timestamp() == pytest.approx(dead.finished_at, abs=0.001)
    assert ON_A_PLAN not in json.dumps(undelivered)
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert after == {"data": {"undeliveredNotifications": []}}
    # The clinician's attempt is on the record too, refused.
    assert [(r["access"]["role"], r["outcome"]) for r in reviews] == [
        ("auditor", "UNDELIVERED_VIEWED"),
        ("ed_clinician", "REFUSED"),
        ("auditor", "UNDELIVERED_VIEWED"),
    ]

    assert listed | {"queued_at": None, "finished_at": None} == {
        "message_id": dead.message_id,
        "audit_id": audit_id,
        "source": "social_care",
        "state": "DEAD",
        "attempts": 2,
        "last_error": "UNREACHABLE",
        "queued_at": None,
        "finished_at": None,
        "passed_on": None,
    }
    assert listed["finished_at"] is not None
    for personal in (ON_A_PLAN, "LA-CP-1"):  # the listing shows where it stands, not what
        assert personal not in json.dumps(listed)
    assert shown["notification"]["message_id"] == dead.message_id
    assert [r["record_id"] for r in shown["notification"]["records"]] == ["LA-CP-1"]
    assert resent == [{"message_id": dead.message_id}]
    assert (delivered.message_id, delivered.payload) == (dead.message_id, None)
    assert [n.message_id for n in kept_for(sink, audit_id)] == [dead.message_id]


def test_a_search_hidden_for_shielding_still_tells_the_authority_of_a_child_on_a_plan(
    tmp_path, gateway_key
):
    """The caller hears nobody was found (shield-safe search), but the child was reached: the
    authority holding the plan is told as for any lookup, and the audit keeps the child shielded,
    where it had said not shielded and told no one."""
    shielded_on_plan = synthetic_nhs(41)
    records = {
        "health": [health_record(shielded_on_plan, record_id="H-SP")],
        "education": [],
        "social_care": [
            social_care_record(
                shielded_on_plan,
                record_id="LA-SP-1",
                indicators=Indicators(child_protection_plan=True),
                flags=RecordFlags(shielded=True),
            )
        ],
    }
    sinks = {name: NotificationLog() for name in records}
    search = """query($d: DemographicsInput!) {
      child(identify: {demographics: $d}, purpose: SAFEGUARDING_ENQUIRY) { outcome auditId } }"""
    known = {
        "givenName": "Amelia",
        "familyName": "Hart",
        "dateOfBirth": "2019-03-04",
        "postcode": "LS6 2AB",
    }
    with contextlib.ExitStack() as stack:
        sources = [
            reference_source(
                name,
                stack.enter_context(
                    BackgroundServer(
                        agency_app(
                            name,
                            write_records(tmp_path / f"{name}.jsonl", held),
                            gateway_key,
                            sinks[name],
                        )
                    )
                ).url,
            )
            for name, held in records.items()
        ]
        gw = stack.enter_context(
            running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST)
        )
        answer = gw.post({"query": search, "variables": {"d": known}}, gw.token("social_worker"))
        child = answer.json()["data"]["child"]
        told = eventually(lambda: kept_for(sinks["social_care"], child["auditId"]))
        audited = gw.audited(child["auditId"])

    assert child["outcome"] == "NOT_FOUND"
    assert told[0].records == [
        AccessedRecord(record_id="LA-SP-1", reasons=[NotificationReason.CHILD_PROTECTION_PLAN])
    ]
    assert audited["outcome"] == "HIDDEN"
    assert audited["child_flags"]["shielded"] is True
