"""The audit stage: a lookup's record is committed before its result is returned, or nothing is.

If the record cannot be committed the caller gets AUDIT_UNAVAILABLE and no data. A refused or
failed lookup is audited too, on a best-effort basis, since it releases nothing either way - but
a lookup refused before it ran (`refusal`: a break-glass attempt whose justification could not be
kept) is committed or answered AUDIT_UNAVAILABLE, as one the policy refused is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from connectors.protocol import random_id
from gateway import metrics, tracing
from gateway.audit.notify import NotificationDispatcher
from gateway.audit.outbox import OutboxMessage
from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.record import failure_record, lookup_record
from gateway.audit.store import AuditStore
from gateway.audit.types import BREAK_GLASS_REFUSED, AuditRecord, AuditUnavailable
from gateway.errors import ErrorCode, GatewayError
from gateway.types import (
    Ambiguity,
    LookupContext,
    LookupOutcome,
    LookupResult,
    MatchedRecord,
    Plan,
    Release,
    SourceAnswer,
)

_alerts = logging.getLogger("childlookup.alerts")


class LookupAuditor:
    """Commits lookups' records (and the notices they oblige) to the audit store."""

    def __init__(
        self,
        store: AuditStore,
        pseudonymiser: Pseudonymiser,
        notifier: NotificationDispatcher | None = None,
    ) -> None:
        """Without a `notifier`, owner notifications are still queued with the record; they are
        delivered by whichever gateway next runs a dispatcher on this audit database."""
        self._store = store
        self._pseudonymiser = pseudonymiser
        self._notifier = notifier

    @tracing.stage("audit")
    async def commit(
        self,
        lookup: LookupContext,
        plan: Plan,
        result: LookupResult,
        release: Release | None = None,
        *,
        hidden: bool = False,
        asked: Sequence[SourceAnswer] | None = None,
        ambiguity: Ambiguity | None = None,
        linked: Sequence[MatchedRecord] | None = None,
    ) -> Sequence[str]:
        """Commit the lookup's record; raise AUDIT_UNAVAILABLE if it cannot be. `asked` is what
        each source really answered, in every round, and `ambiguity` what made the linked records
        ambiguous, when the caller was shown less. Returns the pseudonyms the record links the
        child to (`AuditRecord.linked_refs`), for the daily cap to count it once."""
        audited = lookup_record(
            lookup,
            plan,
            result,
            release,
            hidden=hidden,
            asked=asked,
            ambiguity=ambiguity,
            linked=linked,
            pseudonymiser=self._pseudonymiser,
        )
        await self._append(audited.record, audited.notifications)
        if audited.notifications and self._notifier is not None:
            self._notifier.wake()
        _raise_alert(audited.record)
        return audited.record.linked_refs

    @tracing.stage("audit")
    async def refusal(self, lookup: LookupContext, code: str) -> None:
        """Commit the record of a lookup refused before it ran (DENIED with `code`, see
        gateway.pipeline.LookupPipeline.refuse) and raise its alert; raise AUDIT_UNAVAILABLE if it
        cannot be committed, as for a lookup the policy refused: a break-glass attempt nobody
        could see is what the record is for."""
        record = failure_record(lookup, random_id(), LookupOutcome.DENIED.value, code)
        await self._append(record)
        _raise_alert(record)

    @tracing.stage("audit")
    async def failure(
        self, lookup: LookupContext, outcome: str, code: str, plan: Plan | None = None
    ) -> None:
        """Best effort: a refused or failed lookup is audited too; it releases nothing anyway.
        `plan` is the one the agencies were asked under, if they were: a break-glass override it
        permitted is flagged and alerted as if the lookup had run to the end."""
        record = failure_record(lookup, random_id(), outcome, code, plan)
        with contextlib.suppress(AuditUnavailable):
            await self._store.append(record)
            _raise_alert(record)

    async def _append(
        self, record: AuditRecord, notifications: Sequence[OutboxMessage] = ()
    ) -> None:
        """Commit `record` with the notices it obliges, or raise AUDIT_UNAVAILABLE."""
        try:
            with metrics.AUDIT_COMMIT_SECONDS.time():
                await self._store.append(record, notifications)
        except AuditUnavailable as exc:
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE,
                "This lookup could not be recorded in the audit log, so nothing was released."
                " Try again shortly; if it persists, contact the service desk.",
            ) from exc


def _raise_alert(record: AuditRecord) -> None:
    """Log the break-glass alert a committed record raised (it is in `audit_alert` already), for
    the privacy officers' log-based alerting; names the practitioner, never the child."""
    if record.flagged_for_investigation:
        _alerts.warning(
            "break-glass override",
            extra={
                "event": "break_glass",
                "context": {"audit_id": record.audit_id, "subject": record.access.subject},
            },
        )
    elif record.alert == BREAK_GLASS_REFUSED:
        _alerts.warning(
            "break-glass override refused",
            extra={
                "event": "break_glass_refused",
                "context": {
                    "audit_id": record.audit_id,
                    "subject": record.access.subject,
                    "denial": record.denial,
                },
            },
        )
