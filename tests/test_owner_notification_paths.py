"""Owner notification, path by path. The local authority responsible for a child on a protection
plan or looked after is told of every lookup of the child - exactly once, with no case content and
no identifier it does not hold - whichever way the child was looked up, and reads those accesses
back in accessHistory; an agency whose receiver is down is retried, dead-lettered and listed, never
holding up a lookup's answer.

Real gateway, real Rego bundle, reference connectors (and a second local authority) on loopback
receiving signed notifications, the real SQLite audit log and outbox.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.app import create_connector_app
from connectors.check_digits import upn_check_letter
from connectors.notifications import Notification, NotificationLog
from connectors.protocol import Address, Identifiers, Indicators, PersonName, RecordFlags
from connectors.records import FileBackend
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.serving import BackgroundServer, free_port
from connectors.trust import ensure_key_pair, load_public_key
from gateway.audit import OutboxState, SqliteOutbox
from gateway.demo import reference_source
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import FAST_NOTIFICATIONS as FAST
from tests.stack import Stack, eventually, gateway_verifier, running_gateway, write_records

REASON = "Child reported missing; police at the door need the current address now."

ON_PLAN = synthetic_nhs(61)
BY_UPN = synthetic_nhs(62)
BY_UPN_UPN = upn_check_letter("801200006201") + "801200006201"
SECOND_ROUND = synthetic_nhs(63)
SECOND_ROUND_UPN = upn_check_letter("801200006301") + "801200006301"
LOOKED_AFTER_B = synthetic_nhs(64)
BY_SEARCH = synthetic_nhs(65)
HIDDEN = synthetic_nhs(66)
FOR_CACHE = synthetic_nhs(67)
FOR_OUTAGE = synthetic_nhs(68)

SEARCH = """query($d: DemographicsInput!, $p: Purpose!) {
  child(identify: {demographics: $d}, purpose: $p) { outcome auditId } }"""
BY_SEARCH_PERSON = {
    "givenName": "Zara",
    "familyName": "Quill",
    "dateOfBirth": "2018-05-06",
    "postcode": "LS7 3BD",
}
HIDDEN_PERSON = {
    "givenName": "Yusuf",
    "familyName": "Reed",
    "dateOfBirth": "2017-01-02",
    "postcode": "LS8 4EF",
}
HISTORY = """query($nhs: String, $upn: String) { accessHistory(nhsNumber: $nhs, upn: $upn) {
  more accesses { auditId at subject name role organisation purpose justification outcome
  override reasons } } }"""
UNDELIVERED = """{ undeliveredNotifications { auditId agency attempts lastError } }"""

CASE_CONTENT = (
    "CAMHS",
    "Dr Mind",
    "Leeds CAMHS",
    "Test Street",
    "LS6 2AB",
    "Sam Social",
    "07700",
    "Amelia",
    "Hart",
    "Test Surgery",
    "A81001",
)


def _la_id(nhs: str) -> str:
    """A local record id that does not hold the NHS number."""
    return f"LA-{nhs[-3:]}"


def _person(given: str, family: str, born: str, postcode: str) -> dict[str, Any]:
    return {
        "name": PersonName(given=given, family=family),
        "date_of_birth": date.fromisoformat(born),
        "address": Address(lines=["9 Other Road", "Leeds"], postcode=postcode),
    }


def agency_records() -> dict[str, list[Any]]:
    zara = _person("Zara", "Quill", "2018-05-06", "LS7 3BD")
    yusuf = _person("Yusuf", "Reed", "2017-01-02", "LS8 4EF")
    plain = (ON_PLAN, BY_UPN, SECOND_ROUND, LOOKED_AFTER_B, FOR_CACHE, FOR_OUTAGE)
    return {
        "health": [
            *(health_record(nhs, record_id="H-" + _la_id(nhs)) for nhs in plain),
            health_record(BY_SEARCH, record_id="H-ZQ", **zara),
            health_record(HIDDEN, record_id="H-YR", **yusuf),
        ],
        "education": [
            school_record(
                BY_UPN,
                record_id="S-UPN",
                identifiers=Identifiers(nhs_number=BY_UPN, upn=BY_UPN_UPN),
            ),
            school_record(
                SECOND_ROUND,
                record_id="S-2R",
                identifiers=Identifiers(nhs_number=SECOND_ROUND, upn=SECOND_ROUND_UPN),
            ),
        ],
        "social_care": [
            *(
                social_care_record(
                    nhs,
                    record_id=_la_id(nhs),
                    identifiers=Identifiers(nhs_number=nhs, local_id=_la_id(nhs)),
                )
                for nhs in (ON_PLAN, BY_UPN, FOR_CACHE, FOR_OUTAGE)
            ),
            # Holds the child under the school's UPN only: reached in the second round.
            social_care_record(
                None,
                record_id="LA-2R",
                identifiers=Identifiers(upn=SECOND_ROUND_UPN, local_id="LA-2R"),
            ),
            social_care_record(
                BY_SEARCH,
                record_id="LA-ZQ",
                identifiers=Identifiers(nhs_number=BY_SEARCH, local_id="LA-ZQ"),
                **zara,
            ),
            social_care_record(
                HIDDEN,
                record_id="LA-YR",
                identifiers=Identifiers(nhs_number=HIDDEN, local_id="LA-YR"),
                flags=RecordFlags(shielded=True),
                **yusuf,
            ),
        ],
        "social_care_b": [
            social_care_record(
                LOOKED_AFTER_B,
                record_id="LAB-1",
                identifiers=Identifiers(nhs_number=LOOKED_AFTER_B, local_id="LAB-1"),
                indicators=Indicators(looked_after=True, child_protection_plan=False),
                involvements=[],
            )
        ],
    }


ORGANISATIONS = {
    "social_care": ("LA-LEEDS",),
    "social_care_b": ("LA-BRAD",),
    "health": ("RR8",),
    "education": ("URN-107000",),
}


@pytest.fixture(scope="module")
def gateway_key(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gateway-key")
    return ensure_key_pair(tmp / "gateway.pem", tmp / "gateway.pub.pem")


def _app(name: str, path: Path, gateway_key: Path, sink: NotificationLog, latency_ms: float = 0):
    verifier = gateway_verifier(load_public_key(gateway_key.with_suffix(".pub.pem")))
    if name == "social_care_b":  # a second local authority, on the social care profile
        profile = REFERENCE_AGENCIES["social_care"]
        return create_connector_app(
            FileBackend.from_jsonl(path, fields=profile.provides),
            source=name,
            verifier=verifier,
            notifications=sink,
        )
    return create_reference_app(name, path, latency_ms, verifier=verifier, notifications=sink)


def _source(name: str, url: str, **overrides: Any) -> Any:
    source = reference_source(
        "social_care" if name == "social_care_b" else name,
        url,
        organisations=ORGANISATIONS[name],
    )
    return source.model_copy(update={"name": name, **overrides})


@contextlib.contextmanager
def agencies(
    tmp: Path,
    gateway_key: Path,
    latency_ms: dict[str, float] | None = None,
    notification_urls: dict[str, str] | None = None,
) -> Iterator[tuple[list[Any], dict[str, NotificationLog]]]:
    sinks = {name: NotificationLog() for name in agency_records()}
    with contextlib.ExitStack() as stack:
        sources = []
        for name, records in agency_records().items():
            path = write_records(tmp / f"{name}.jsonl", records)
            app = _app(name, path, gateway_key, sinks[name], (latency_ms or {}).get(name, 0))
            server = stack.enter_context(BackgroundServer(app))
            extra = {}
            if name in (notification_urls or {}):
                extra["notification_url"] = (notification_urls or {})[name]
            sources.append(_source(name, server.url, **extra))
        yield sources, sinks


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gateway_key) -> Iterator[tuple[Stack, dict[str, NotificationLog]]]:
    tmp = tmp_path_factory.mktemp("owner-notification")
    with (
        agencies(tmp, gateway_key) as (sources, sinks),
        running_gateway(tmp, sources, request_signing_key_file=gateway_key, **FAST) as gw,
    ):
        yield gw, sinks


def kept_for(sink: NotificationLog, audit_id: str) -> list[Notification]:
    return [n for n in sink.recent(1000) if n.audit_id == audit_id]


def told_once(
    gw: Stack, sinks: dict[str, NotificationLog], audit_id: str, owner: str = "social_care"
) -> Notification:
    """The one notification `owner` got of `audit_id`, checked to be the only one sent anywhere,
    and to carry no identifier, no case content."""
    eventually(lambda: kept_for(sinks[owner], audit_id))
    outbox = eventually(lambda: _entries(gw, audit_id))
    time.sleep(0.3)  # a second message, were one sent, would be in by now
    told = {name: kept_for(sink, audit_id) for name, sink in sinks.items()}
    assert {name: len(n) for name, n in told.items() if n} == {owner: 1}, told
    assert len(outbox) == 1
    (notice,) = told[owner]
    payload = notice.model_dump_json()
    for identifier in (
        ON_PLAN,
        BY_UPN,
        BY_UPN_UPN,
        SECOND_ROUND,
        SECOND_ROUND_UPN,
        LOOKED_AFTER_B,
        BY_SEARCH,
        HIDDEN,
        FOR_CACHE,
        FOR_OUTAGE,
        *CASE_CONTENT,
        "Zara",
        "Quill",
        "Yusuf",
        "Reed",
        "LS7 3BD",
        "LS8 4EF",
    ):
        assert identifier not in payload, (identifier, payload)
    return notice


def _entries(gw: Stack, audit_id: str) -> list[Any]:
    outbox = SqliteOutbox(gw.state_dir / "audit.sqlite3")
    try:
        return [e for e in outbox.entries(audit_id) if e.state is OutboxState.DELIVERED]
    finally:
        outbox.close()


def search(gw: Stack, person: dict[str, Any], role: str = "social_worker") -> dict[str, Any]:
    body = {"query": SEARCH, "variables": {"d": person, "p": "SAFEGUARDING_ENQUIRY"}}
    response = gw.post(body, gw.token(role, "LA-LEEDS" if role == "social_worker" else "ORG1"))
    assert response.status_code == 200, response.text
    assert response.json().get("data"), response.text
    return response.json()["data"]["child"]  # type: ignore[no-any-return]


def history(
    gw: Stack, org: str, nhs: str | None = None, upn: str | None = None, role: str = "social_worker"
) -> dict[str, Any]:
    response = gw.post(
        {"query": HISTORY, "variables": {"nhs": nhs, "upn": upn}}, gw.token(role, org, "Reader")
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- every path of a lookup tells the owner once ------------------------------------------------


def test_by_nhs_number(stack):
    gw, sinks = stack
    child = gw.lookup("ed_clinician", ON_PLAN, "DIRECT_CARE")["data"]["child"]
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.record_id for r in notice.records] == [_la_id(ON_PLAN)]
    assert [r.reasons for r in notice.records] == [["CHILD_PROTECTION_PLAN"]]
    assert notice.accessor.role == "ed_clinician"
    assert notice.purpose == "DIRECT_CARE"


def test_by_upn(stack):
    gw, sinks = stack
    child = gw.lookup_by_upn("health_visitor", BY_UPN_UPN)["data"]["child"]
    assert child["outcome"] == "FOUND"
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.record_id for r in notice.records] == [_la_id(BY_UPN)]


def test_through_the_second_round(stack):
    """Asked by NHS number; social care holds the child only under the school's UPN."""
    gw, sinks = stack
    child = gw.lookup("ed_clinician", SECOND_ROUND, "DIRECT_CARE")["data"]["child"]
    assert child["outcome"] == "FOUND"
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.record_id for r in notice.records] == ["LA-2R"]


def test_by_demographics(stack):
    gw, sinks = stack
    child = search(gw, BY_SEARCH_PERSON)
    assert child["outcome"] == "FOUND"
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.record_id for r in notice.records] == ["LA-ZQ"]


def test_by_demographics_hidden_by_shield_safe_search(stack):
    gw, sinks = stack
    child = search(gw, HIDDEN_PERSON, role="health_visitor")
    assert child["outcome"] == "NOT_FOUND"
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.record_id for r in notice.records] == ["LA-YR"]


def test_a_looked_after_child_tells_its_own_authority_only(stack):
    gw, sinks = stack
    child = gw.lookup("ed_clinician", LOOKED_AFTER_B, "DIRECT_CARE")["data"]["child"]
    notice = told_once(gw, sinks, child["auditId"], owner="social_care_b")
    assert [(r.record_id, r.reasons) for r in notice.records] == [("LAB-1", ["LOOKED_AFTER"])]


def test_break_glass_tells_the_authority_once_with_both_reasons(stack):
    gw, sinks = stack
    child = gw.lookup("police_safeguarding", ON_PLAN, "EMERGENCY_OVERRIDE", REASON)
    audit_id = child["data"]["child"]["auditId"]
    eventually(lambda: kept_for(sinks["social_care"], audit_id))
    eventually(lambda: kept_for(sinks["health"], audit_id))
    time.sleep(0.3)
    (la,) = kept_for(sinks["social_care"], audit_id)
    (health,) = kept_for(sinks["health"], audit_id)
    assert la.records[0].reasons == ["CHILD_PROTECTION_PLAN", "EMERGENCY_OVERRIDE"]
    assert la.justification == REASON
    assert health.justification is None
    assert ON_PLAN not in la.model_dump_json() + health.model_dump_json()


def test_a_lookup_the_policy_refuses_asks_no_one_and_tells_no_one(stack):
    gw, sinks = stack
    # A GP may not break glass: refused before any agency is asked.
    body = gw.lookup("gp", ON_PLAN, "EMERGENCY_OVERRIDE", REASON)
    audit_id = body["data"]["child"]["auditId"] if body.get("data") else None
    time.sleep(0.3)
    if audit_id is not None:
        assert all(kept_for(s, audit_id) == [] for s in sinks.values())


# --- accessHistory --------------------------------------------------------------------------------


def test_the_history_shows_the_authority_who_looked_when_and_why(stack):
    gw, _ = stack
    child = gw.lookup("health_visitor", ON_PLAN, "DIRECT_CARE")["data"]["child"]
    body = history(gw, "LA-LEEDS", nhs=ON_PLAN)
    assert "errors" not in body, body
    accesses = body["data"]["accessHistory"]["accesses"]
    newest = accesses[0]
    assert newest["auditId"] == child["auditId"]
    assert (newest["role"], newest["organisation"], newest["purpose"]) == (
        "health_visitor",
        "ORG1",
        "DIRECT_CARE",
    )
    assert newest["at"]
    assert newest["subject"]
    for personal in CASE_CONTENT:
        assert personal not in json.dumps(body)


def test_a_search_reaching_the_child_is_in_its_history_by_nhs_number(stack):
    gw, _ = stack
    child = search(gw, BY_SEARCH_PERSON)
    body = history(gw, "LA-LEEDS", nhs=BY_SEARCH)
    assert "errors" not in body, body
    ids = [a["auditId"] for a in body["data"]["accessHistory"]["accesses"]]
    assert child["auditId"] in ids


def test_a_hidden_search_is_in_the_shielding_authoritys_history(stack):
    gw, _ = stack
    child = search(gw, HIDDEN_PERSON, role="health_visitor")
    body = history(gw, "LA-LEEDS", nhs=HIDDEN)
    assert "errors" not in body, body
    (entry,) = [
        a for a in body["data"]["accessHistory"]["accesses"] if a["auditId"] == child["auditId"]
    ]
    assert entry["reasons"] == ["CHILD_PROTECTION_PLAN"]
    assert entry["outcome"] == "HIDDEN"  # the authority holds the shield itself


def test_the_second_round_child_is_in_the_history_by_the_authoritys_upn(stack):
    gw, _ = stack
    child = gw.lookup("ed_clinician", SECOND_ROUND, "DIRECT_CARE")["data"]["child"]
    body = history(gw, "LA-LEEDS", upn=SECOND_ROUND_UPN)
    assert "errors" not in body, body
    ids = [a["auditId"] for a in body["data"]["accessHistory"]["accesses"]]
    assert child["auditId"] in ids


def test_another_authority_sees_nothing_of_a_child_not_its_own(stack):
    gw, _ = stack
    gw.lookup("ed_clinician", ON_PLAN, "DIRECT_CARE")
    gw.lookup("ed_clinician", LOOKED_AFTER_B, "DIRECT_CARE")
    assert history(gw, "LA-BRAD", nhs=ON_PLAN)["data"]["accessHistory"]["accesses"] == []
    assert history(gw, "LA-LEEDS", nhs=LOOKED_AFTER_B)["data"]["accessHistory"]["accesses"] == []
    assert history(gw, "LA-BRAD", nhs=LOOKED_AFTER_B)["data"]["accessHistory"]["accesses"]


@pytest.mark.parametrize(
    ("role", "org"), [("health_visitor", "RR8"), ("auditor", "ORG1"), ("social_worker", "ORG9")]
)
def test_an_unrelated_organisation_is_refused(stack, role, org):
    gw, _ = stack
    gw.lookup("ed_clinician", ON_PLAN, "DIRECT_CARE")
    body = history(gw, org, nhs=ON_PLAN, role=role)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_THE_OWNER"


# --- the answer cache, a source timing out --------------------------------------------------


def test_a_lookup_answered_from_the_cache_tells_the_authority_again(tmp_path, gateway_key):
    with (
        agencies(tmp_path, gateway_key) as (sources, sinks),
        running_gateway(
            tmp_path, sources, request_signing_key_file=gateway_key, cache_ttl_s=60, **FAST
        ) as gw,
    ):
        first = gw.lookup("ed_clinician", FOR_CACHE, "DIRECT_CARE")["data"]["child"]
        second = gw.lookup("ed_clinician", FOR_CACHE, "DIRECT_CARE")["data"]["child"]
        assert any(s["cached"] for s in second["sources"]), second["sources"]
        told_once(gw, sinks, first["auditId"])
        told_once(gw, sinks, second["auditId"])


def test_a_source_timing_out_does_not_stop_the_authority_being_told(tmp_path, gateway_key):
    with (
        agencies(tmp_path, gateway_key, latency_ms={"health": 2_500}) as (sources, sinks),
        running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw,
    ):
        child = gw.lookup("ed_clinician", FOR_OUTAGE, "DIRECT_CARE")["data"]["child"]
        statuses = {s["source"]: s["status"] for s in child["sources"]}
        assert statuses["health"] == "TIMED_OUT"
        told_once(gw, sinks, child["auditId"])


# --- the authority's receiver down ------------------------------------------------------------


def test_a_dead_receiver_is_retried_dead_lettered_listed_and_never_holds_up_a_lookup(
    tmp_path, gateway_key
):
    dead = f"http://127.0.0.1:{free_port()}/v1/notifications"
    with (
        agencies(tmp_path, gateway_key, notification_urls={"social_care": dead}) as (sources, _),
        running_gateway(
            tmp_path,
            sources,
            request_signing_key_file=gateway_key,
            notification_max_attempts=3,
            **FAST,
        ) as gw,
    ):
        started = time.monotonic()
        child = gw.lookup("ed_clinician", FOR_OUTAGE, "DIRECT_CARE")["data"]["child"]
        took = time.monotonic() - started
        assert child["outcome"] == "FOUND"
        assert took < 2.0
        audit_id = child["auditId"]
        outbox = SqliteOutbox(gw.state_dir / "audit.sqlite3")
        try:
            (letter,) = eventually(
                lambda: [e for e in outbox.entries(audit_id) if e.state is OutboxState.DEAD]
            )
        finally:
            outbox.close()
        assert letter.attempts == 3
        assert letter.last_error == "UNREACHABLE"
        listed = gw.post({"query": UNDELIVERED}, gw.token("auditor")).json()
        assert "errors" not in listed, listed
        assert {
            "auditId": audit_id,
            "agency": "social_care",
            "attempts": 3,
            "lastError": "UNREACHABLE",
        } in listed["data"]["undeliveredNotifications"]
        # The next lookup is no slower for the dead letter.
        started = time.monotonic()
        again = gw.lookup("ed_clinician", FOR_OUTAGE, "DIRECT_CARE")["data"]["child"]
        assert again["outcome"] == "FOUND"
        assert time.monotonic() - started < 2.0


def test_a_lookup_with_no_fields_granted_still_tells_the_authority(stack):
    """The LA's shielding administrator is granted no field: the plan still asks social care
    for the obligation's indicators, and the authority is told."""
    gw, sinks = stack
    child = gw.lookup("la_shielding_admin", ON_PLAN, "SHIELDING_ADMINISTRATION")["data"]["child"]
    notice = told_once(gw, sinks, child["auditId"])
    assert [r.reasons for r in notice.records] == [["CHILD_PROTECTION_PLAN"]]


def test_a_lookup_whose_audit_fails_tells_no_one_and_answers_nothing(stack):
    gw, sinks = stack
    before = {name: len(sink.recent(1000)) for name, sink in sinks.items()}
    blocker = sqlite3.connect(gw.components.audit.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        body = gw.lookup("ed_clinician", ON_PLAN, "DIRECT_CARE")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    time.sleep(0.5)
    assert {name: len(sink.recent(1000)) for name, sink in sinks.items()} == before
