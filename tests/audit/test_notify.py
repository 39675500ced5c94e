"""Owner notifications: one message per agency composed from a lookup's notices, and the
dispatcher delivering them from the outbox - its retry timing, and what counts as delivery when a
receiver misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.notifications import (
    NOTIFICATIONS_PATH,
    Notification,
    NotificationLog,
    NotificationReason,
)
from connectors.serving import BackgroundServer
from connectors.trust import AnswerSigner, StaticKey
from gateway.audit import (
    NotificationDispatcher,
    OutboxState,
    RetryPolicy,
    SqliteAuditStore,
    SqliteOutbox,
    owner_notifications,
)
from gateway.audit.notify import MAX_RECEIPT_BYTES
from gateway.demo import reference_source
from gateway.signing import AnswerVerifier
from gateway.transport import ConnectorTransport
from gateway.types import OwnerNotice
from tests.factories import (
    CHECKPOINT_KEY,
    access,
    audit_record,
    health_record,
    matched,
    outbox_message,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import GATEWAY_SIGNER, notification_receiver

ON_A_PLAN = synthetic_nhs(31)
ACCESS = access(
    subject="dev:RX1:eddie",
    name="Eddie Clinician",
    role="ed_clinician",
    organisation="RX1",
    purpose="DIRECT_CARE",
    justification=None,
    child_ref="nhs:0123",
)


def test_backoff_doubles_with_jitter_up_to_its_cap():
    retry = RetryPolicy(timeout_s=1, base_s=1, max_s=10, max_attempts=5, max_age_s=60, poll_s=1)
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (500, 10)]:
        delays = [retry.backoff(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


# --- composing notifications ----------------------------------------------------------------------


def test_each_agency_gets_one_message_naming_only_its_own_records():
    la = matched(social_care_record(ON_A_PLAN, record_id="LA-7"), "social_care")
    health = matched(health_record(ON_A_PLAN, record_id="H-7"), "health")
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


# --- the dispatcher against receivers that misbehave ----------------------------------------------


def _fake_receiver(answer: Callable[[bytes], Response]) -> Starlette:
    async def receive(request: Request) -> Response:
        return answer(await request.body())

    return Starlette(routes=[Route(NOTIFICATIONS_PATH, receive, methods=["POST"])])


_RECEIPT = b'{"message_id": "m-1", "duplicate": false}'


def _receipt_for(message_id: str) -> Callable[[bytes], Response]:
    return lambda body: JSONResponse({"message_id": message_id, "duplicate": False})


async def _deliver_once(tmp_path: Path, url: str, verifiers: dict[str, AnswerVerifier]) -> Any:
    audit = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    outbox = SqliteOutbox(audit.path)
    try:
        await audit.append(audit_record("a-1"), [outbox_message("m-1")])
        retry = RetryPolicy(
            timeout_s=5, base_s=60, max_s=60, max_attempts=5, max_age_s=3600, poll_s=60
        )
        source = reference_source("social_care", url)
        async with ConnectorTransport() as transport:
            dispatcher = NotificationDispatcher(
                outbox, transport, GATEWAY_SIGNER, [source], retry, verifiers
            )
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
        # The right receipt, padded past MAX_RECEIPT_BYTES: not read on, so not a receipt.
        (lambda body: Response(_RECEIPT.ljust(MAX_RECEIPT_BYTES + 1)), "BAD_RECEIPT"),
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
    with notification_receiver(NotificationLog(), signer=impostor) as client:
        entry = await _deliver_once(tmp_path, str(client.base_url), verifiers)
    with notification_receiver(NotificationLog(), signer=AnswerSigner(agency_key)) as client:
        trusted = await _deliver_once(tmp_path / "trusted", str(client.base_url), verifiers)

    assert (entry.state, entry.last_error) == (OutboxState.PENDING, "RECEIPT_NOT_TRUSTED")
    assert trusted.state is OutboxState.DELIVERED


# --- several gateway processes, one outbox ----------------------------------------------------


class CountingLog(NotificationLog):
    """A receiver's log that also counts every delivery, the repeated ones included."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[str] = []

    async def keep(self, notification: Notification) -> bool:
        self.received.append(notification.message_id)
        return await super().keep(notification)


@pytest.mark.anyio
async def test_three_dispatchers_on_one_outbox_deliver_every_notice_exactly_once(backend, store):
    queued = []
    for lookup in range(40):
        messages = [outbox_message(f"m-{lookup}-{i}", f"a-{lookup}") for i in range(3)]
        await store.append(audit_record(f"a-{lookup}"), messages)
        queued += [m.message_id for m in messages]
    retry = RetryPolicy(timeout_s=5, base_s=60, max_s=60, max_attempts=5, max_age_s=3600, poll_s=60)
    receiver = CountingLog()
    outboxes = [backend.open_outbox() for _ in range(3)]
    try:
        with notification_receiver(receiver) as agency:
            source = reference_source("social_care", str(agency.base_url))
            async with ConnectorTransport() as transport:
                dispatchers = [
                    NotificationDispatcher(outbox, transport, GATEWAY_SIGNER, [source], retry, {})
                    for outbox in outboxes
                ]
                await asyncio.gather(*(d.deliver_due() for d in dispatchers))
        entries = outboxes[0].entries()
    finally:
        for outbox in outboxes:
            outbox.close()

    assert sorted(receiver.received) == sorted(queued)
    assert {(e.state, e.attempts) for e in entries} == {(OutboxState.DELIVERED, 1)}
