"""Owner notification: composing the notices a lookup obliges, and delivering them from the outbox.

The policy says which matched records' holders must be told of a lookup (a child on a protection
plan or looked after, any break-glass override). The audit stage turns those obligations into one
`Notification` per agency (`owner_notifications`) and queues them with the audit record. The
`NotificationDispatcher`, a background task of the gateway, then delivers them: woken when a
lookup queues one, and polling otherwise, so messages left by a gateway that stopped or crashed are
delivered by the next one.

Delivery is at least once. Each attempt is signed afresh as the gateway signs lookups (audience =
the agency, new `jti`, body hash, 30 s expiry), and the agency acknowledges with a receipt naming
the message id, signed when the source is configured with an answer key; the message id is the
same on every attempt, so the agency keeps each notification once. Failed attempts back off
exponentially with jitter; past the attempt or age limit a message is dead-lettered and an alert
raised that names the lookup's audit id, never the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from pydantic import ValidationError

from connectors.notifications import (
    NOTIFICATIONS_PATH,
    AccessedRecord,
    Accessor,
    Notification,
    NotificationReason,
    NotificationReceipt,
)
from connectors.protocol import random_id
from connectors.trust import TrustError
from gateway import metrics
from gateway.audit.outbox import Outbox, OutboxMessage
from gateway.audit.types import Access, AuditNotice
from gateway.config import Settings, SourceConfig
from gateway.exchange import Malformed, Reply, post_capped
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.transport import ConnectorTransport
from gateway.types import OwnerNotice

BATCH: Final = 32
"""Messages claimed and sent concurrently at a time."""
LEASE_MARGIN_S: Final = 5.0
"""How long past its timeout a claimed message stays hidden from other dispatchers."""
MAX_RECEIPT_BYTES: Final = 16 * 1024
"""A receipt is a message id and a flag; an agency answering more is not answering in protocol."""
STATS_EVERY_S: Final = 1.0
"""The outbox's figures for /metrics are read at most this often."""

_log = logging.getLogger("childlookup.notify")
_alerts = logging.getLogger("childlookup.alerts")


@dataclass(frozen=True)
class OwnerNotification:
    """One agency told of one lookup: the message to queue, and the audit record's note of it."""

    message: OutboxMessage
    audit: AuditNotice


def owner_notifications(
    access: Access, audit_id: str, notices: Sequence[OwnerNotice]
) -> tuple[OwnerNotification, ...]:
    """One message per agency told of this lookup, naming only that agency's own records. The
    practitioner's justification goes only to an agency responsible for the child (`_responsible`):
    an override's reason is often the very story a shield protects - where the child was taken -
    and a school or practice told of the override has no need of it."""
    by_source: dict[str, list[OwnerNotice]] = {}
    for notice in notices:
        by_source.setdefault(notice.matched.source, []).append(notice)
    now = time.time()
    composed = []
    for source, held in by_source.items():
        told_why = _responsible(held)
        notification = Notification(
            message_id=random_id(),
            audit_id=audit_id,
            at=access.at,
            accessor=Accessor(
                subject=access.subject,
                name=access.name,
                role=access.role,
                organisation=access.organisation,
            ),
            purpose=access.purpose,
            justification=access.justification if told_why else None,
            records=[
                AccessedRecord(record_id=n.matched.record.record_id, reasons=list(n.reasons))
                for n in held
            ],
        )
        payload = notification.model_dump_json().encode()
        reasons = sorted({reason.value for n in held for reason in n.reasons})
        composed.append(
            OwnerNotification(
                OutboxMessage(notification.message_id, source, audit_id, payload, created_at=now),
                AuditNotice(source, reasons, notification.message_id, told_why),
            )
        )
    return tuple(composed)


def _responsible(held: Sequence[OwnerNotice]) -> bool:
    """Whether the agency holds the child's shield, or a status it is told of for its own sake
    (a protection plan, a looked-after child): the local authority responsible for the child."""
    return any(
        notice.matched.record.flags.shielded
        or any(reason is not NotificationReason.EMERGENCY_OVERRIDE for reason in notice.reasons)
        for notice in held
    )


def notification_url(source: SourceConfig) -> str:
    if source.notification_url is not None:
        return str(source.notification_url)
    return str(source.url).rstrip("/") + NOTIFICATIONS_PATH


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a message again, and when to stop trying."""

    timeout_s: float
    base_s: float
    max_s: float
    max_attempts: int
    max_age_s: float
    poll_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            timeout_s=settings.notification_timeout_ms / 1000,
            base_s=settings.notification_retry_base_s,
            max_s=settings.notification_retry_max_s,
            max_attempts=settings.notification_max_attempts,
            max_age_s=settings.notification_max_age_s,
            poll_s=settings.notification_poll_s,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failure: doubling, capped, and jittered over
        its upper half so that messages queued together while a receiver was down do not all
        retry in the same instant when it comes back."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempts - 1, 60))
        return random.uniform(ceiling / 2, ceiling)

    def exhausted(self, message: OutboxMessage, now: float) -> bool:
        return message.attempts >= self.max_attempts or now - message.created_at >= self.max_age_s


class NotificationDispatcher:
    """Delivers the outbox in the background: `start` it with the gateway, `aclose` at the end."""

    def __init__(
        self,
        outbox: Outbox,
        transport: ConnectorTransport,
        signer: RequestSigner,
        sources: Sequence[SourceConfig],
        retry: RetryPolicy,
        answer_verifiers: Mapping[str, AnswerVerifier],
    ) -> None:
        self._outbox = outbox
        self._transport = transport
        self._signer = signer
        self._urls = {s.name: httpx.URL(notification_url(s)) for s in sources}
        self._retry = retry
        self._verifiers = answer_verifiers
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._observed_at = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def wake(self) -> None:
        """A lookup has just queued notifications: deliver now rather than at the next poll."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop at once. A message being sent stays claimed until its lease ends, then is sent
        again (by the next gateway): the agency keeps it once either way."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self._retry.poll_s
            try:
                await self.deliver_due()
                due = await asyncio.to_thread(self._outbox.next_due)
                await self._observe()
            except Exception as error:
                # The loop must outlive any one failure (a locked database, a bug), or every later
                # notification would silently wait for a restart.
                _log.error(
                    "outbox delivery failed",
                    extra={"event": "outbox_error", "context": {"error": type(error).__name__}},
                )
            else:
                if due is not None:
                    wait = min(wait, max(0.0, due - time.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _observe(self) -> None:
        """Publish the outbox's depth, oldest pending age and dead letters (gateway.metrics)."""
        now = time.time()
        if now - self._observed_at < STATS_EVERY_S:
            return
        self._observed_at = now
        stats = await asyncio.to_thread(self._outbox.stats)
        oldest = stats.oldest_pending_at
        metrics.outbox_observed(stats.pending, 0.0 if oldest is None else now - oldest, stats.dead)

    async def deliver_due(self) -> None:
        """Send every message that is due now, a batch at a time."""
        lease = self._retry.timeout_s + LEASE_MARGIN_S
        while batch := await asyncio.to_thread(self._outbox.claim, time.time(), lease, BATCH):
            await asyncio.gather(*(self._deliver(message) for message in batch))

    async def _deliver(self, message: OutboxMessage) -> None:
        error = await self._attempt(message)
        now = time.time()
        if error is None:
            await asyncio.to_thread(self._outbox.delivered, message.message_id, now)
            metrics.NOTIFICATIONS.labels("DELIVERED").inc()
            return
        context = {
            "message_id": message.message_id,
            "audit_id": message.audit_id,
            "source": message.source,
            "attempts": message.attempts,
            "error": error,
        }
        if self._retry.exhausted(message, now):
            await asyncio.to_thread(self._outbox.dead, message.message_id, error, now)
            metrics.NOTIFICATIONS.labels("DEAD").inc()
            _alerts.error(
                "owner notification undeliverable: tell the agency by other means",
                extra={"event": "notification_dead_letter", "context": context},
            )
            return
        retry_at = now + self._retry.backoff(message.attempts)
        await asyncio.to_thread(self._outbox.retry, message.message_id, error, retry_at)
        metrics.NOTIFICATIONS.labels("RETRY").inc()
        _log.warning(
            "owner notification not delivered; will retry",
            extra={"event": "notification_retry", "context": context},
        )

    async def _attempt(self, message: OutboxMessage) -> str | None:
        """Send once; None when the agency acknowledged this message, else an error code."""
        url = self._urls.get(message.source)
        if url is None:
            return "NO_ENDPOINT"
        headers = {
            "authorization": self._signer.authorization(message.source, message.payload),
            "content-type": "application/json",
        }
        try:
            async with asyncio.timeout(self._retry.timeout_s):
                reply = await post_capped(
                    self._transport, url, message.payload, headers, MAX_RECEIPT_BYTES
                )
        except (TimeoutError, httpx.TimeoutException):
            return "TIMEOUT"
        except httpx.HTTPError:
            return "UNREACHABLE"
        except Malformed:
            return "BAD_RECEIPT"
        if reply.status_code != 200:
            return f"HTTP_{reply.status_code}"
        return await self._check_receipt(message, reply)

    async def _check_receipt(self, message: OutboxMessage, reply: Reply) -> str | None:
        verifier = self._verifiers.get(message.source)
        if verifier is not None:
            try:
                await verifier.verify(reply.signature, reply.payload, source=message.source)
            except TrustError:
                return "RECEIPT_NOT_TRUSTED"
        try:
            receipt = NotificationReceipt.model_validate_json(reply.payload)
        except ValidationError:
            return "BAD_RECEIPT"
        return None if receipt.message_id == message.message_id else "BAD_RECEIPT"
