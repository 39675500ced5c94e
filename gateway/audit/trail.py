"""Auditors reading the audit trail of one child, through the same keyed pseudonym the log uses.

Only configured auditor roles may read it, and every reading is itself written to the log, so the
people who watch the lookups are watched too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.record import access_by
from gateway.audit.store import AuditStore
from gateway.audit.types import AuditRecord, AuditUnavailable
from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller

AUDIT_REVIEW = "AUDIT_REVIEW"


class AuditTrail:
    def __init__(
        self, audit: AuditStore, pseudonymiser: Pseudonymiser, auditor_roles: Collection[str]
    ) -> None:
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._auditor_roles = frozenset(auditor_roles)

    async def for_child(
        self, caller: Caller, nhs_number: str, since: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Every recorded access to this child, oldest first; refused to anyone not an auditor."""
        if caller.role not in self._auditor_roles:
            raise GatewayError(ErrorCode.FORBIDDEN, "Only auditors may read the audit trail.")
        child_ref = self._pseudonymiser.ref("nhs", nhs_number)
        records = await asyncio.to_thread(
            self._audit.records, child_ref=child_ref, since=since, limit=limit
        )
        review = AuditRecord(
            access=access_by(caller, purpose=AUDIT_REVIEW, justification=None, child_ref=child_ref),
            audit_id=uuid.uuid4().hex,
            request_id=uuid.uuid4().hex,
            outcome="AUDIT_TRAIL_VIEWED",
            denial=None,
            error_code=None,
            policy_revision=None,
        )
        try:
            await self._audit.append(review)
        except AuditUnavailable as exc:
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE, "This review could not be recorded, so it is refused."
            ) from exc
        return records
