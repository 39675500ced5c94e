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
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.app import MAX_BODY_BYTES, create_connector_app
from connectors.notifications import (
    NOTIFICATIONS_PATH,
    RECENT_NOTIFICATIONS_PATH,
    AccessedRecord,
    Accessor,
    Notification,
    NotificationLog,
    NotificationReason,
    NotificationReceipt,
)
from connectors.openapi import openapi_document
from connectors.protocol import (
    ErrorCode,
    ErrorResponse,
    Identifiers,
    Indicators,
    LookupRequest,
    RecordFlags,
)
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer, free_port
from connectors.trust import (
    AnswerSigner,
    RequestVerifier,
    StaticKey,
    ensure_key_pair,
    load_public_key,
)
from gateway.audit import (
    Access,
    AuditRecord,
    AuditUnavailable,
    NotificationDispatcher,
    Outbox,
    OutboxMessage,
    OutboxState,
    RetryPolicy,
    SqliteAuditStore,
    owner_notifications,
)
from gateway.config import SourceConfig
from gateway.decide import decide
from gateway.demo import reference_source
from gateway.match import MatchResult
from gateway.policy import PolicyError, RegoPolicyEngine
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.types import (
    Caller,
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    OwnerNotice,
    Plan,
    Purpose,
)
from tests.factories import (
    health_record,
    lookup_context,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import running_gateway, write_records
from tests.test_policy_bundle import POLICY_DIR, write_bundle

GATEWAY = "childlookup-gateway"
GATEWAY_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNER = RequestSigner(GATEWAY_KEY, issuer=GATEWAY)
REASON = "Child reported missing; police at the door need the current address now."

ON_A_PLAN = synthetic_nhs(31)
ORDINARY = synthetic_nhs(32)
SHIELDED = synthetic_nhs(33)

FAST = {
    "notification_retry_base_s": 0.05,
    "notification_retry_max_s": 0.2,
    "notification_poll_s": 0.05,
    "notification_timeout_ms": 1_000,
}
"""Retry timings short enough for a test to watch several attempts."""

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 15.0) -> T:
    """Poll until `check` returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
    return value


def notification(message_id: str = "m-1", **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "message_id": message_id,
        "audit_id": "a-1",
        "at": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "accessor": Accessor(
            subject="dev:RX1:eddie", name="Eddie Clinician", role="ed_clinician", organisation="RX1"
        ),
        "purpose": "DIRECT_CARE",
        "justification": None,
        "records": [
            AccessedRecord(
                record_id="LA-000001", reasons=[NotificationReason.CHILD_PROTECTION_PLAN]
            )
        ],
    }
    return Notification(**(fields | overrides))


class NoRecords:
    async def lookup(self, request: LookupRequest) -> list[Any]:
        return []


def verifier_for(key: ec.EllipticCurvePublicKey) -> RequestVerifier:
    return RequestVerifier(StaticKey(key), issuer=GATEWAY)


@contextlib.contextmanager
def receiver(sink: Any, signer: AnswerSigner | None = None) -> Iterator[httpx.Client]:
    """The social care connector receiving notifications signed by GATEWAY_KEY."""
    app = create_connector_app(
        NoRecords(),
        source="social_care",
        verifier=verifier_for(GATEWAY_KEY.public_key()),
        signer=signer,
        notifications=sink,
    )
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def send(client: httpx.Client, body: bytes, authorization: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return client.post(NOTIFICATIONS_PATH, content=body, headers=headers)


def signed(body: bytes, audience: str = "social_care") -> str:
    return SIGNER.authorization(audience, body)


# --- the receiver ---------------------------------------------------------------------------------


def test_a_signed_notification_is_kept_and_acknowledged():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with receiver(sink) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 200
    assert NotificationReceipt.model_validate_json(response.content).duplicate is False
    assert sink.recent(10) == [notification()]


def test_a_redelivery_is_acknowledged_but_kept_once():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with receiver(sink) as client:
        first = send(client, body, signed(body))
        again = send(client, body, signed(body))  # a fresh signature, as each attempt has

    assert NotificationReceipt.model_validate_json(first.content).duplicate is False
    assert NotificationReceipt.model_validate_json(again.content).duplicate is True
    assert len(sink.recent(10)) == 1


def _forged(body: bytes) -> str:
    return signed(notification(audit_id="a-forged").model_dump_json().encode())


def _wrong_key(body: bytes) -> str:
    return RequestSigner(ec.generate_private_key(ec.SECP256R1()), issuer=GATEWAY).authorization(
        "social_care", body
    )


def _expired(body: bytes) -> str:
    claims = jwt.decode(signed(body).removeprefix("Bearer "), options={"verify_signature": False})
    stale = claims | {"iat": claims["iat"] - 120, "exp": claims["exp"] - 120}
    return "Bearer " + jwt.encode(stale, GATEWAY_KEY, algorithm="ES256")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda body: None, id="unsigned"),
        pytest.param(_forged, id="signature-over-another-body"),
        pytest.param(
            lambda body: signed(body, audience="health"), id="addressed-to-another-agency"
        ),
        pytest.param(_wrong_key, id="signed-by-another-key"),
        pytest.param(_expired, id="expired"),
    ],
)
def test_a_notification_not_signed_by_the_gateway_for_this_agency_is_refused(authorization):
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with receiver(sink) as client:
        response = send(client, body, authorization(body))

    assert response.status_code == 401
    assert (
        ErrorResponse.model_validate_json(response.content).error.code is ErrorCode.UNAUTHENTICATED
    )
    assert sink.recent(10) == []


def test_a_replayed_notification_token_is_refused():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    token = signed(body)
    with receiver(sink) as client:
        assert send(client, body, token).status_code == 200
        replay = send(client, body, token)

    assert replay.status_code == 401
    assert "replay" in ErrorResponse.model_validate_json(replay.content).error.message


def test_a_malformed_notification_is_refused_with_a_clear_error():
    body = json.dumps({"message_id": "m-1", "nhs_number": "9434765919"}).encode()
    with receiver(NotificationLog()) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 400
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.message.startswith("Invalid notification:")
    assert "9434765919" not in response.text


class FailingOnce(NotificationLog):
    """An agency store that is down for the first notification."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def keep(self, notification: Notification) -> bool:
        if not self.failed:
            self.failed = True
            raise OSError("case system unavailable")
        return await super().keep(notification)


def test_an_agency_store_failure_asks_the_gateway_to_try_again():
    sink = FailingOnce()
    body = notification().model_dump_json().encode()
    with receiver(sink) as client:
        refused = send(client, body, signed(body))
        retried = send(client, body, signed(body))

    assert refused.status_code == 503
    assert ErrorResponse.model_validate_json(refused.content).error.code is ErrorCode.UNAVAILABLE
    assert retried.status_code == 200
    assert len(sink.recent(10)) == 1


class Overlapping(NotificationLog):
    """An agency store that notices being called while it is still busy."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = 0
        self.most_busy = 0

    async def keep(self, notification: Notification) -> bool:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        await asyncio.sleep(0.1)
        self.busy -= 1
        return await super().keep(notification)


@pytest.mark.anyio
async def test_the_agency_store_is_never_called_concurrently():
    # So a store need not guard its own duplicate check against a redelivery racing the original.
    sink = Overlapping()
    bodies = [notification(f"m-{i}").model_dump_json().encode() for i in range(3)]
    with receiver(sink) as sync_client:
        async with httpx.AsyncClient(base_url=sync_client.base_url) as client:
            responses = await asyncio.gather(
                *(
                    client.post(NOTIFICATIONS_PATH, content=b, headers={"authorization": signed(b)})
                    for b in bodies
                )
            )

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sink.most_busy == 1


def test_an_oversized_notification_is_refused_before_it_is_read():
    sink = NotificationLog()
    body = notification(justification="x" * MAX_BODY_BYTES).model_dump_json().encode()
    with receiver(sink) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 413
    assert sink.recent(10) == []


def test_the_published_contract_lists_every_status_the_receiver_answers_with():
    # 200 and each status the tests above provoke: 400, 401, 413, 503.
    responses = openapi_document()["paths"][NOTIFICATIONS_PATH]["post"]["responses"]

    assert set(responses) == {"200", "400", "401", "413", "503"}


def test_a_receiver_without_a_verifier_is_refused_at_start_up():
    with pytest.raises(ValueError, match="verifier"):
        create_connector_app(NoRecords(), source="social_care", notifications=NotificationLog())


def test_recent_accesses_are_listed_to_the_agencys_own_host():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with receiver(sink) as client:
        send(client, body, signed(body))
        local = client.get(RECENT_NOTIFICATIONS_PATH)

    assert local.status_code == 200
    assert [n["message_id"] for n in local.json()["notifications"]] == ["m-1"]
    assert local.json()["notifications"][0]["accessor"]["name"] == "Eddie Clinician"


@pytest.mark.anyio
async def test_recent_accesses_are_refused_to_any_other_host():
    sink = NotificationLog()
    await sink.keep(notification())
    app = create_connector_app(
        NoRecords(),
        source="social_care",
        verifier=verifier_for(GATEWAY_KEY.public_key()),
        notifications=sink,
    )
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://connector") as remote:
        response = await remote.get(RECENT_NOTIFICATIONS_PATH)

    assert response.status_code == 403
    assert ErrorResponse.model_validate_json(response.content).error.code is ErrorCode.FORBIDDEN
    assert "Eddie" not in response.text


@pytest.mark.anyio
async def test_a_notification_log_file_remembers_what_it_kept_across_a_restart(tmp_path):
    path = tmp_path / "notifications.jsonl"
    assert await NotificationLog(path).keep(notification("m-1")) is True

    restarted = NotificationLog(path)

    assert await restarted.keep(notification("m-1")) is False
    assert await restarted.keep(notification("m-2")) is True
    assert [n.message_id for n in NotificationLog(path).recent(10)] == ["m-2", "m-1"]


# --- the outbox -----------------------------------------------------------------------------------

ACCESS = Access(
    at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
    subject="dev:RX1:eddie",
    name="Eddie Clinician",
    role="ed_clinician",
    organisation="RX1",
    purpose="DIRECT_CARE",
    justification=None,
    child_ref="nhs:0123",
)


def audit_record(audit_id: str) -> AuditRecord:
    return AuditRecord(
        access=ACCESS,
        audit_id=audit_id,
        request_id="r-" + audit_id,
        outcome="FOUND",
        denial=None,
        error_code=None,
        policy_revision="rev-1",
    )


def message(message_id: str, audit_id: str = "a-1", source: str = "social_care") -> OutboxMessage:
    body = notification(message_id, audit_id=audit_id).model_dump_json().encode()
    return OutboxMessage(message_id, source, audit_id, body, created_at=time.time())


@pytest.fixture
def store(tmp_path):
    audit = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=b"c" * 32)
    outbox = Outbox(audit.path)
    yield audit, outbox
    outbox.close()
    audit.close()


@pytest.mark.anyio
async def test_notifications_are_queued_exactly_when_their_audit_record_is_committed(store):
    audit, outbox = store
    await audit.append(audit_record("a-1"), [message("m-1")])

    with pytest.raises(AuditUnavailable):
        # The same audit id again fails the audit write, and takes its notification with it.
        await audit.append(audit_record("a-1"), [message("m-2")])

    assert [(e.message_id, e.state) for e in outbox.entries()] == [("m-1", OutboxState.PENDING)]
    assert [r["audit_id"] for r in audit.records()] == ["a-1"]


@pytest.mark.anyio
async def test_a_claimed_message_is_hidden_from_other_dispatchers_until_its_lease_ends(store):
    audit, outbox = store
    await audit.append(audit_record("a-1"), [message("m-1")])
    now = time.time()

    first = outbox.claim(now, lease_s=10, limit=5)
    meanwhile = outbox.claim(now + 5, lease_s=10, limit=5)
    after_lease = outbox.claim(now + 11, lease_s=10, limit=5)

    assert [(m.message_id, m.attempts) for m in first] == [("m-1", 1)]
    assert meanwhile == []
    assert [(m.message_id, m.attempts) for m in after_lease] == [("m-1", 2)]


@pytest.mark.anyio
async def test_delivery_erases_the_payload_and_a_dead_letter_keeps_it(store):
    audit, outbox = store
    await audit.append(audit_record("a-1"), [message("m-1"), message("m-2", source="health")])

    outbox.delivered("m-1", time.time())
    outbox.dead("m-2", "UNREACHABLE", time.time())

    delivered, dead = outbox.entries()
    assert (delivered.state, delivered.payload) == (OutboxState.DELIVERED, None)
    assert (dead.state, dead.last_error) == (OutboxState.DEAD, "UNREACHABLE")
    assert Notification.model_validate_json(dead.payload or b"").message_id == "m-2"
    assert outbox.claim(time.time() + 3600, lease_s=1, limit=5) == []


def test_backoff_doubles_with_jitter_up_to_its_cap():
    retry = RetryPolicy(timeout_s=1, base_s=1, max_s=10, max_attempts=5, max_age_s=60, poll_s=1)
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (500, 10)]:
        delays = [retry.backoff(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


# --- composing notifications ----------------------------------------------------------------------


def _matched(record: Any, source: str) -> MatchedRecord:
    return MatchedRecord(record.record_id, source, record, MatchMethod.NHS_NUMBER)


def test_each_agency_gets_one_message_naming_only_its_own_records():
    la = _matched(social_care_record(ON_A_PLAN, record_id="LA-7"), "social_care")
    health = _matched(health_record(ON_A_PLAN, record_id="H-7"), "health")
    notices = [
        OwnerNotice(la, (NotificationReason.CHILD_PROTECTION_PLAN,)),
        OwnerNotice(health, (NotificationReason.EMERGENCY_OVERRIDE,)),
    ]

    composed = owner_notifications(ACCESS, "a-9", notices)

    by_source = {c.message.source: c for c in composed}
    assert set(by_source) == {"social_care", "health"}
    la_message = Notification.model_validate_json(by_source["social_care"].message.payload)
    assert [r.record_id for r in la_message.records] == ["LA-7"]
    assert la_message.accessor.role == "ed_clinician"
    assert la_message.audit_id == "a-9"
    assert ON_A_PLAN not in by_source["social_care"].message.payload.decode()
    assert "H-7" not in by_source["social_care"].message.payload.decode()
    assert by_source["social_care"].audit.reasons == ["CHILD_PROTECTION_PLAN"]


# --- the policy obligation, through the decide stage ----------------------------------------------


@pytest.mark.anyio
async def test_decide_carries_the_obligation_to_notify_the_holder_of_a_plan(tmp_path):
    policy = RegoPolicyEngine.from_directory(POLICY_DIR)
    la = _matched(social_care_record(ON_A_PLAN), "social_care")
    health = _matched(health_record(ON_A_PLAN), "health")
    caller = Caller("dev:RR8:hana", "Hana", "health_visitor", "RR8")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=ON_A_PLAN)
    lookup = lookup_context(query, caller, policy=policy)

    release = await decide(lookup, _plan(), _matching(health, la))

    # The health visitor may not see the plan for direct care: given the indicator, the stage
    # withholds it and still obliges the gateway to tell the local authority.
    assert all(r.record.indicators is None for r in release.records)
    assert release.notify == (OwnerNotice(la, (NotificationReason.CHILD_PROTECTION_PLAN,)),)


@pytest.mark.anyio
async def test_an_obligation_naming_a_record_the_lookup_lacks_releases_nothing(tmp_path):
    release = (
        "package childlookup.release\n\nimport rego.v1\n\n"
        'decision := {"released": [], "withheld": [],'
        ' "notify": [{"record": "7", "reason": "LOOKED_AFTER"}]}\n'
    )
    plan = (POLICY_DIR / "plan.rego").read_text()
    write_bundle(tmp_path, {"plan.rego": plan, "release.rego": release})
    policy = RegoPolicyEngine.from_directory(tmp_path)
    caller = Caller("dev:RX1:eddie", "Eddie", "ed_clinician", "RX1")
    query = LookupQuery(purpose=Purpose.DIRECT_CARE, nhs_number=ON_A_PLAN)
    lookup = lookup_context(query, caller, policy=policy)
    la = _matched(social_care_record(ON_A_PLAN), "social_care")

    with pytest.raises(PolicyError, match="names a record the lookup lacks"):
        await decide(lookup, _plan(), _matching(la))


def _plan() -> Plan:
    """A plan that asked for nothing more than the records hold, with no shield authority."""
    return Plan(True, None, frozenset(), (), "plan-1")


def _matching(*matched: MatchedRecord) -> MatchResult:
    return MatchResult(answers=(), matched=matched, unmatched={}, possible={})


# --- the dispatcher against receivers that misbehave ----------------------------------------------


def _fake_receiver(answer: Callable[[bytes], Response]) -> Starlette:
    async def receive(request: Request) -> Response:
        return answer(await request.body())

    return Starlette(routes=[Route(NOTIFICATIONS_PATH, receive, methods=["POST"])])


def _receipt_for(message_id: str) -> Callable[[bytes], Response]:
    return lambda body: JSONResponse({"message_id": message_id, "duplicate": False})


async def _deliver_once(tmp_path: Path, url: str, verifiers: dict[str, AnswerVerifier]) -> Any:
    audit = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=b"c" * 32)
    outbox = Outbox(audit.path)
    try:
        await audit.append(audit_record("a-1"), [message("m-1")])
        retry = RetryPolicy(
            timeout_s=5, base_s=60, max_s=60, max_attempts=5, max_age_s=3600, poll_s=60
        )
        source = reference_source("social_care", url)
        async with httpx.AsyncClient() as client:
            dispatcher = NotificationDispatcher(outbox, client, SIGNER, [source], retry, verifiers)
            await dispatcher.deliver_due()
        return outbox.entries()[0]
    finally:
        outbox.close()
        audit.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_receipt_for("another-message"), "BAD_RECEIPT"),
        (lambda body: Response("ok"), "BAD_RECEIPT"),
        (lambda body: Response(status_code=404), "HTTP_404"),
    ],
)
async def test_only_a_receipt_for_the_message_counts_as_delivery(tmp_path, answer, error):
    with BackgroundServer(_fake_receiver(answer)) as server:
        entry = await _deliver_once(tmp_path, server.url, {})

    assert (entry.state, entry.last_error, entry.attempts) == (OutboxState.PENDING, error, 1)
    assert entry.payload is not None


@pytest.mark.anyio
async def test_a_receipt_not_signed_by_an_agency_with_an_answer_key_is_not_delivery(tmp_path):
    agency_key = ec.generate_private_key(ec.SECP256R1())
    impostor = AnswerSigner(ec.generate_private_key(ec.SECP256R1()))
    verifiers = {"social_care": AnswerVerifier(StaticKey(agency_key.public_key()))}
    with receiver(NotificationLog(), signer=impostor) as client:
        entry = await _deliver_once(tmp_path, str(client.base_url), verifiers)
    with receiver(NotificationLog(), signer=AnswerSigner(agency_key)) as client:
        trusted = await _deliver_once(tmp_path / "trusted", str(client.base_url), verifiers)

    assert (entry.state, entry.last_error) == (OutboxState.PENDING, "RECEIPT_NOT_TRUSTED")
    assert trusted.state is OutboxState.DELIVERED


# --- end to end: the gateway, its outbox and the agencies -----------------------------------------


@pytest.fixture(scope="module")
def gateway_key(tmp_path_factory) -> Path:
    """The gateway's request-signing key, shared with the agencies out of band."""
    tmp = tmp_path_factory.mktemp("gateway-key")
    return ensure_key_pair(tmp / "gateway.pem", tmp / "gateway.pub.pem")


def agency_app(name: str, records: Path, gateway_key: Path, sink: Any) -> Starlette:
    public = load_public_key(gateway_key.with_suffix(".pub.pem"))
    return create_reference_app(name, records, verifier=verifier_for(public), notifications=sink)


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


def audited(stack: Any, audit_id: str) -> dict[str, Any]:
    return next(r for r in stack.components.audit.records() if r["audit_id"] == audit_id)


def entries(tmp: Path, audit_id: str) -> list[Any]:
    outbox = Outbox(tmp / "audit.sqlite3")
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
        record = audited(gw, audit_id)

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
    assert {n[0].justification for n in told.values()} == {REASON}


def test_an_ordinary_lookup_tells_no_one(tmp_path, agencies, gateway_key):
    sources, sinks = agencies
    with running_gateway(tmp_path, sources, request_signing_key_file=gateway_key, **FAST) as gw:
        lookup = gw.lookup("social_worker", ORDINARY)["data"]["child"]
        record = audited(gw, lookup["auditId"])

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
