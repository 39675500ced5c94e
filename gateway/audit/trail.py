"""Auditors reading the audit log: the trail of one child (through the same keyed pseudonym the log
uses), the trail of one user, and the privacy officers' feed of break-glass overrides.

Only configured auditor roles may read them, and every reading is itself written to the log, so
the people who watch the lookups are watched too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from typing import Any

from connectors.protocol import random_id
from gateway.audit.outbox import OutboxEntry
from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.record import access_by
from gateway.audit.store import AuditStore
from gateway.audit.types import (
    BREAK_GLASS_ALERTS,
    AuditReading,
    AuditRecord,
    AuditUnavailable,
    utc_text,
)
from gateway.errors import ErrorCode, GatewayError
from gateway.identifiers import ChildKind
from gateway.types import Caller

AUDIT_REVIEW = "AUDIT_REVIEW"
USER_TRAIL_VIEWED = "USER_TRAIL_VIEWED"
"""The outcome an auditor's reading of one user's trail is recorded with."""
ALERTS_VIEWED = "ALERTS_VIEWED"
"""The outcome an auditor's reading of the override alerts is recorded with."""
UNDELIVERED_VIEWED = "UNDELIVERED_VIEWED"
"""The outcome an auditor's reading of the undelivered owner notifications is recorded with."""


class AuditTrail:
    def __init__(
        self, audit: AuditStore, pseudonymiser: Pseudonymiser, auditor_roles: Collection[str]
    ) -> None:
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._auditor_roles = frozenset(auditor_roles)

    async def for_child(
        self,
        caller: Caller,
        identifier: tuple[ChildKind, str],
        since: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Every recorded access to the child `identifier` names (as `named_child` gives it),
        oldest first; refused to anyone not an auditor."""
        self._check_auditor(caller)
        child_refs = self._pseudonymiser.refs(*identifier)
        records = await asyncio.to_thread(
            self._audit.records, child_refs=child_refs, since=since, limit=limit
        )
        await self._reviewed(
            caller, "AUDIT_TRAIL_VIEWED", AuditReading(_text(since)), child_ref=child_refs[0]
        )
        return records

    async def for_user(
        self, caller: Caller, subject: str, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Every recorded access by this user (their account, `subject`), oldest first; refused
        to anyone not an auditor."""
        self._check_auditor(caller)
        records = await asyncio.to_thread(
            self._audit.records, subject=subject, since=since, limit=limit
        )
        await self._reviewed(caller, USER_TRAIL_VIEWED, AuditReading(_text(since), subject=subject))
        return records

    async def alerts(
        self,
        caller: Caller,
        since: datetime | None,
        kinds: Collection[str] = BREAK_GLASS_ALERTS,
        limit: int | None = None,
    ) -> list[dict[str, str | None]]:
        """The alerts of `kinds` since a time, oldest first, at most `limit`, naming no child: by
        default the break-glass overrides and the attempts the policy refused. Refused to anyone
        not an auditor."""
        self._check_auditor(caller)
        alerts = await asyncio.to_thread(self._audit.alerts, since=since, kinds=kinds, limit=limit)
        reading = AuditReading(_text(since), alert_kinds=sorted(kinds))
        await self._reviewed(caller, ALERTS_VIEWED, reading)
        return alerts

    async def undelivered(self, caller: Caller, limit: int) -> list[OutboxEntry]:
        """Owner notifications given up on, and neither sent again nor closed as passed on, the
        first given up on first, at most `limit`, without their payloads; refused to anyone not an
        auditor. An agency not told of a lookup of a child it holds a record of must be told some
        other way."""
        self._check_auditor(caller)
        entries = await asyncio.to_thread(self._audit.dead_letters, limit)
        await self._reviewed(caller, UNDELIVERED_VIEWED, None)
        return entries

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

    def _check_auditor(self, caller: Caller) -> None:
        if caller.role not in self._auditor_roles:
            raise GatewayError(ErrorCode.FORBIDDEN, "Only auditors may read the audit trail.")


async def record_review(
    audit: AuditStore,
    caller: Caller,
    purpose: str,
    outcome: str,
    *,
    child_ref: str | None,
    read: AuditReading | None = None,
) -> None:
    """Write someone's reading of accesses (a child's when `child_ref` names one; what else it
    covered in `read`) to the log, notifying no one (a reading is no lookup: it releases
    nothing, and telling an owner of it could only start a loop); raise AUDIT_UNAVAILABLE when it
    cannot be written, so that nothing read is returned."""
    review = AuditRecord(
        access=access_by(caller, purpose=purpose, justification=None, child_ref=child_ref),
        audit_id=random_id(),
        request_id=random_id(),
        outcome=outcome,
        denial=None,
        error_code=None,
        policy_revision=None,
        read=read,
    )
    try:
        await audit.append(review)
    except AuditUnavailable as exc:
        raise GatewayError(
            ErrorCode.AUDIT_UNAVAILABLE, "This review could not be recorded, so it is refused."
        ) from exc


def _text(since: datetime | None) -> str | None:
    return None if since is None else utc_text(since)
