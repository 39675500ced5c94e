"""Auditors reading the audit log: the trail of one child (through the same keyed pseudonym the log
uses), the trail of one user, and the privacy officers' feed of break-glass overrides.

Only configured auditor roles may read them, and every reading is itself written to the log, so
the people who watch the lookups are watched too. A reading refused to anyone else is written too
(AUDIT_REVIEW, REFUSED with FORBIDDEN, and what it asked for): who tried to see who looked at a
child, or what a user did, is what privacy officers must see. It is in the trail of the child
asked for and of the user who asked, and raises no alert, as a lookup the policy refuses raises
none unless it was a break-glass attempt (gateway.audit.types.AuditRecord.alert).

A child's trail tells whether any agency knows the identifier, who works with the child and
what each source released - a lookup of the child in all but name - so it is read only under the
per-user limits a lookup is admitted under (gateway.limits), and counts towards the reader's
children today as a lookup does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from connectors.protocol import random_id
from gateway.audit.outbox import OutboxEntry
from gateway.audit.pages import CURSOR_PURPOSE, Cursors, LetterPosition, LogPosition, Page
from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.queries import AUDIT_TRAIL_VIEWED
from gateway.audit.record import access_by
from gateway.audit.store import AuditStore
from gateway.audit.types import (
    BREAK_GLASS_ALERTS,
    REFUSED,
    AuditReading,
    AuditRecord,
    AuditUnavailable,
    utc_text,
)
from gateway.errors import ErrorCode, GatewayError
from gateway.identifiers import ChildKind, holds_child_identifier
from gateway.types import Caller

if TYPE_CHECKING:  # gateway.limits imports gateway.audit
    from gateway.limits import AccessLimits

T = TypeVar("T")

_log = logging.getLogger("childlookup.audit")

AUDIT_REVIEW = "AUDIT_REVIEW"
USER_TRAIL_VIEWED = "USER_TRAIL_VIEWED"
"""The outcome an auditor's reading of one user's trail is recorded with."""
ALERTS_VIEWED = "ALERTS_VIEWED"
"""The outcome an auditor's reading of the override alerts is recorded with."""
UNDELIVERED_VIEWED = "UNDELIVERED_VIEWED"
"""The outcome an auditor's reading of the undelivered owner notifications is recorded with."""


class AuditTrail:
    def __init__(
        self,
        audit: AuditStore,
        pseudonymiser: Pseudonymiser,
        auditor_roles: Collection[str],
        *,
        limits: AccessLimits | None = None,
    ) -> None:
        """`limits`: the ones the gateway's lookups are admitted under (gateway.components gives
        them); None only where no gateway serves (a test reading a log directly)."""
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._auditor_roles = frozenset(auditor_roles)
        self._limits = limits
        self._cursors = Cursors(pseudonymiser.derived_keys(CURSOR_PURPOSE))

    async def for_child(
        self,
        caller: Caller,
        identifier: tuple[ChildKind, str],
        since: datetime | None,
        limit: int,
        after: str | None = None,
    ) -> Page[dict[str, Any]]:
        """Every recorded access to the child `identifier` names (as `named_child` gives it),
        in the log's order (gateway.audit.pages), from `since`, strictly after the entry whose
        cursor `after` is; refused to anyone not an auditor (recorded in the child's trail, by
        its pseudonym), and to an auditor at a usage limit."""
        child_refs = self._pseudonymiser.refs(*identifier)
        if not self._is_auditor(caller):
            await self._forbidden(caller, AuditReading(_read_from(since, None)), child_refs[0])
        # Named by the child's pseudonym under the current key; a cursor issued before a
        # rotation names it by the pseudonym under the key it was issued with.
        feed, *former = (f"auditTrail:{ref}" for ref in child_refs)
        position = (
            None if after is None else self._cursors.log_position(feed, after, formerly=former)
        )
        reading = AuditReading(_read_from(since, position))
        # Counted as a lookup by the same identifier is (`Pseudonymiser.child_ref`): a child the
        # auditor looked up, or read the trail of, today is no second child.
        await self._admit(caller, child_refs[0], reading)
        records = await read_log(
            lambda: self._audit.positioned_records(
                child_refs=child_refs, since=since, after=position, limit=limit
            )
        )
        await self._reviewed(caller, AUDIT_TRAIL_VIEWED, reading, child_ref=child_refs[0])
        return self._page(feed, records)

    async def for_user(
        self,
        caller: Caller,
        subject: str,
        since: datetime | None,
        limit: int,
        after: str | None = None,
    ) -> Page[dict[str, Any]]:
        """Every recorded access by this user (their account, `subject`), in the log's order, as
        `for_child` reads them; refused to anyone not an auditor (recorded with the subject, if
        it may be kept: `_keeps_subject`)."""
        if not self._is_auditor(caller):
            try:
                kept = subject if await self._keeps_subject(subject) else None
            except GatewayError:  # the log unreadable: kept nowhere, rather than perhaps a child
                kept = None
            await self._forbidden(caller, AuditReading(_read_from(since, None), subject=kept))
        feed = f"userAuditTrail:{subject}"
        position = None if after is None else self._cursors.log_position(feed, after)
        if not await self._keeps_subject(subject):
            raise GatewayError(
                ErrorCode.BAD_USER_INPUT,
                "No user has that account, which reads as a child's NHS number or UPN: name the"
                " user by their account, as an entry or alert shows it.",
            )
        reading = AuditReading(_read_from(since, position), subject=subject)
        records = await read_log(
            lambda: self._audit.positioned_records(
                subject=subject, since=since, after=position, limit=limit
            )
        )
        await self._reviewed(caller, USER_TRAIL_VIEWED, reading)
        return self._page(feed, records)

    async def alerts(
        self,
        caller: Caller,
        since: datetime | None,
        kinds: Collection[str] = BREAK_GLASS_ALERTS,
        limit: int | None = None,
        after: str | None = None,
    ) -> Page[dict[str, str | None]]:
        """The alerts of `kinds` from a time, in the log's order, at most `limit`, strictly after
        the one whose cursor `after` is, naming no child: by default the break-glass overrides
        and the attempts the policy refused. Refused to anyone not an auditor (recorded with the
        kinds asked for)."""
        if not self._is_auditor(caller):
            asked = AuditReading(_read_from(since, None), alert_kinds=sorted(kinds))
            await self._forbidden(caller, asked)
        feed = "alerts:" + ",".join(sorted(kinds))
        position = None if after is None else self._cursors.log_position(feed, after)
        reading = AuditReading(_read_from(since, position), alert_kinds=sorted(kinds))
        alerts = await read_log(
            lambda: self._audit.positioned_alerts(
                since=since, kinds=kinds, after=position, limit=limit
            )
        )
        await self._reviewed(caller, ALERTS_VIEWED, reading)
        return self._page(feed, alerts)

    async def undelivered(
        self, caller: Caller, limit: int, after: str | None = None
    ) -> Page[OutboxEntry]:
        """Owner notifications given up on, and neither sent again nor closed as passed on, in
        the order they were given up in, at most `limit`, strictly after the one whose cursor
        `after` is, without their payloads; refused to anyone not an auditor (recorded as covering
        nothing, as an auditor's reading of them is). An agency not told of a lookup of a child it
        holds a record of must be told some other way."""
        if not self._is_auditor(caller):
            await self._forbidden(caller, None)
        feed = "undeliveredNotifications"
        position = None if after is None else self._cursors.letter_position(feed, after)
        letters = await read_log(lambda: self._audit.positioned_dead_letters(limit, after=position))
        await self._reviewed(caller, UNDELIVERED_VIEWED, None)
        return self._page(feed, letters)

    def _page(self, feed: str, found: Sequence[tuple[LogPosition | LetterPosition, T]]) -> Page[T]:
        """The entries read, each with the cursor that reads on after it in `feed`."""
        return Page(
            entries=[entry for _, entry in found],
            cursors=[self._cursors.seal(feed, position) for position, _ in found],
        )

    async def _admit(self, caller: Caller, child_ref: str, reading: AuditReading) -> None:
        """Reserve the reading's place under the limits before anything is read, or refuse it as
        a lookup is refused (gateway.pipeline): recorded REFUSED with the limit's code, so it
        raises the limit alert (limitAlerts), logged as possible trawling, and the caller told
        the same error a refused lookup gets."""
        if self._limits is None:
            return
        refusal = await self._limits.reserve(caller, child_ref)
        if refusal is None:
            return
        from gateway.limits import refused  # it imports gateway.audit

        await self._refused(caller, refusal, reading, child_ref)
        raise refused(refusal, caller, "audit trail reading")

    async def _forbidden(
        self, caller: Caller, asked: AuditReading | None, child_ref: str | None = None
    ) -> NoReturn:
        """Refuse a reading to someone not an auditor, once it is recorded with what it asked for
        (`_refused`): FORBIDDEN, whether or not the record could be written."""
        await self._refused(caller, ErrorCode.FORBIDDEN.value, asked, child_ref)
        raise GatewayError(ErrorCode.FORBIDDEN, "Only auditors may read the audit trail.")

    async def _refused(
        self, caller: Caller, code: str, asked: AuditReading | None, child_ref: str | None
    ) -> None:
        """Record a refused reading (AUDIT_REVIEW, REFUSED with `code`), with what it asked for.
        Best effort, as a refused lookup's record is (gateway.audit.LookupAuditor.failure): it
        read nothing, and its caller is refused the same way whether the log took it or not."""
        with contextlib.suppress(GatewayError):
            await record_review(
                self._audit,
                caller,
                AUDIT_REVIEW,
                REFUSED,
                child_ref=child_ref,
                read=asked,
                error_code=code,
            )

    async def _keeps_subject(self, subject: str) -> bool:
        """Whether a reading's record may keep `subject`, as it is shown to every auditor after:
        no child may be named there by an identifier (a child's NHS number pasted as the user).
        An account that merely reads as one (its own records hold it already) may be kept.
        AUDIT_UNAVAILABLE if the log cannot be read to tell."""
        if not holds_child_identifier(subject):
            return True
        return bool(await read_log(lambda: self._audit.records(subject=subject, limit=1)))

    async def _reviewed(
        self,
        caller: Caller,
        outcome: str,
        read: AuditReading | None,
        child_ref: str | None = None,
    ) -> None:
        """Record an auditor's reading (`record_review`), with what it covered."""
        await record_review(
            self._audit, caller, AUDIT_REVIEW, outcome, child_ref=child_ref, read=read
        )

    def _is_auditor(self, caller: Caller) -> bool:
        return caller.role in self._auditor_roles


async def read_log(read: Callable[[], T]) -> T:
    """`read` of the audit store, in a thread; AUDIT_UNAVAILABLE if the store cannot answer (a
    database cut off, a file that cannot be read), as when a reading cannot be recorded: an
    outage, not a fault of the gateway."""
    try:
        return await asyncio.to_thread(read)
    except Exception as exc:  # whatever the store's driver raises
        _log.error(
            "audit log read failed",
            extra={"event": "audit_read_failed", "context": {"error": type(exc).__name__}},
        )
        raise GatewayError(
            ErrorCode.AUDIT_UNAVAILABLE,
            "The audit log could not be read, so nothing is shown. Try again shortly.",
        ) from exc


async def record_review(
    audit: AuditStore,
    caller: Caller,
    purpose: str,
    outcome: str,
    *,
    child_ref: str | None,
    read: AuditReading | None = None,
    error_code: str | None = None,
) -> None:
    """Write someone's reading of accesses (a child's when `child_ref` names one; what else it
    covered in `read`; why it was refused in `error_code`, when it was) to the log, notifying no
    one (a reading is no lookup: it releases nothing, and telling an owner of it could only start
    a loop); raise AUDIT_UNAVAILABLE when it cannot be written, so that nothing read is
    returned."""
    review = AuditRecord(
        access=access_by(caller, purpose=purpose, justification=None, child_ref=child_ref),
        audit_id=random_id(),
        request_id=random_id(),
        outcome=outcome,
        denial=None,
        error_code=error_code,
        policy_revision=None,
        read=read,
    )
    try:
        await audit.append(review)
    except AuditUnavailable as exc:
        raise GatewayError(
            ErrorCode.AUDIT_UNAVAILABLE, "This review could not be recorded, so it is refused."
        ) from exc


def _read_from(since: datetime | None, after: LogPosition | None) -> str | None:
    """The time a reading started from, as its record keeps it (`AuditReading.since`): `since`,
    or the time of the entry it read on after when that is later, so that a reading by cursor is
    on the record as where it read on from (in the log's order, entries a gateway whose clock is
    behind committed after that one may be a little earlier); None for the whole log."""
    times = [] if since is None else [_utc(since)]
    if after is not None:
        times.append(_utc(datetime.fromisoformat(after.at)))
    return utc_text(max(times)) if times else None


def _utc(at: datetime) -> datetime:
    """`at` in UTC, a time without an offset read as UTC (`utc_text`), comparable with any other."""
    return datetime.fromisoformat(utc_text(at))
