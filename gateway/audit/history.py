"""Owners seeing who looked: a child's access history, for the agency that holds its child
protection plan or looked-after status, as NHS CP-IS shows the local authority the recent accesses.

Nothing new is stored to serve it. When a lookup released such a status from an agency's record,
the release policy obliged the gateway to tell that agency (policies/release.rego `notify`), and the
audit record of the lookup lists each agency told (`AuditRecord.notified`). An agency's access
history of a child is exactly those records: the lookups of the child it was notified of, read from
the hash-chained log by the child's keyed pseudonym (`AuditStore.notified_records`).

Who may read it. Each source in the connector config names the organisations acting for it
(`SourceConfig.organisations`). A caller may read histories only if their organisation acts for a
source that holds a notifying status (a child protection plan or looked-after status); anyone else
- another agency, an auditor of another organisation - is refused with NOT_THE_OWNER, whatever the
child. For a child its sources were never notified about (not theirs, or theirs but never looked
up) the history is empty: the gateway cannot tell those apart, and either way the caller learns
nothing it was not already sent. Every reading is itself written to the log (`OWNER_REVIEW`), and
notifies no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from connectors.notifications import NotificationReason
from connectors.protocol import FieldId
from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.store import AuditStore
from gateway.audit.trail import read_log, record_review
from gateway.audit.types import Access
from gateway.config import SourceConfig
from gateway.errors import ErrorCode, GatewayError
from gateway.identifiers import ChildKind
from gateway.types import Caller

OWNER_REVIEW: Final = "OWNER_REVIEW"
"""The purpose an owner's reading of the access history is recorded with."""
ACCESS_HISTORY_VIEWED: Final = "ACCESS_HISTORY_VIEWED"
"""The outcome it is recorded with."""
DEFAULT_LIMIT: Final = 25
"""Accesses shown unless the caller asks for another number; CP-IS shows 25."""
MAX_LIMIT: Final = 100

OWNING_FIELDS: Final = frozenset({FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER})
"""The statuses whose holder is told of every lookup of the child (policies/data.json
`owner_notification.indicators`; a test keeps the two equal): a source providing one can own."""


def owning_sources(organisation: str, sources: Iterable[SourceConfig]) -> tuple[str, ...]:
    """The sources `organisation` acts for that can hold a child protection plan or looked-after
    status: whose notifications it may read back. Empty, it may read none."""
    return tuple(
        s.name
        for s in sources
        if organisation in s.organisations and OWNING_FIELDS.intersection(s.provides)
    )


@dataclass(frozen=True)
class OwnerAccess:
    """One access to the child, as the owner was told of it."""

    audit_id: str
    access: Access
    """Who looked, when and why (the child by pseudonym, which the owner is not shown)."""
    outcome: str
    override: bool
    """A break-glass override (flagged for investigation)."""
    reasons: tuple[NotificationReason, ...]
    """Why the owner's sources were told of it."""


@dataclass(frozen=True)
class OwnerHistory:
    """One child's access history as its owner reads it."""

    accesses: tuple[OwnerAccess, ...]
    """Newest first, at most the limit asked for."""
    more: bool
    """Older accesses were notified too, past the limit."""


def owner_access(record: dict[str, Any], sources: Sequence[str]) -> OwnerAccess:
    """One audit record as its owner sees it: who, when, why, with what outcome, and why `sources`
    were told; never what was released or withheld, nor how records were matched, and the
    practitioner's justification only if a notification to `sources` carried it."""
    notices = [n for n in record.get("notified", []) if n["source"] in sources]
    # A reason this version does not know (recorded by a newer gateway sharing the log) is left
    # out, as an unknown purpose or outcome is read as UNKNOWN: it must not fail the history.
    known = {reason.value for reason in NotificationReason}
    reasons = {
        NotificationReason(reason)
        for notice in notices
        for reason in notice["reasons"]
        if reason in known
    }
    access = record["access"]
    if not any(_told_why(notice) for notice in notices):
        access = access | {"justification": None}
    return OwnerAccess(
        audit_id=record["audit_id"],
        access=Access(**access | {"at": datetime.fromisoformat(access["at"])}),
        outcome=record["outcome"],
        override=bool(record.get("flagged_for_investigation")),
        reasons=tuple(sorted(reasons)),
    )


def _told_why(notice: dict[str, Any]) -> bool:
    """Whether a notification carried the justification. A record written before notices said
    so is read by the rule that was then applied (gateway.audit.notify._responsible) as far as
    the record shows it: any reason but a break-glass override - a shield it held is not in the
    record, so an override of a shielded child is read as not told, never the other way."""
    told = notice.get("told_why")
    if told is None:
        return any(reason != NotificationReason.EMERGENCY_OVERRIDE for reason in notice["reasons"])
    return bool(told)


class AccessHistory:
    """The owners' reading of their children's access histories."""

    def __init__(
        self, audit: AuditStore, pseudonymiser: Pseudonymiser, sources: Sequence[SourceConfig]
    ) -> None:
        self._audit = audit
        self._pseudonymiser = pseudonymiser
        self._sources = tuple(sources)

    async def for_child(
        self, caller: Caller, identifier: tuple[ChildKind, str], limit: int
    ) -> OwnerHistory:
        """The accesses to the child `identifier` names (as `AuditTrail.for_child` takes it)
        notified to the caller's sources, newest first; refused to an organisation acting for no
        source that can own a child's plan or status."""
        owned = owning_sources(caller.organisation, self._sources)
        if not owned:
            raise GatewayError(
                ErrorCode.NOT_THE_OWNER,
                "Only the organisation holding a child's child protection plan or looked-after"
                " status can see who looked at the child.",
            )
        if not 1 <= limit <= MAX_LIMIT:
            raise GatewayError(
                ErrorCode.BAD_USER_INPUT, f"limit must be between 1 and {MAX_LIMIT}."
            )
        child_refs = self._pseudonymiser.refs(*identifier)
        records = await read_log(lambda: self._audit.notified_records(child_refs, owned, limit + 1))
        await record_review(
            self._audit, caller, OWNER_REVIEW, ACCESS_HISTORY_VIEWED, child_ref=child_refs[0]
        )
        return OwnerHistory(
            accesses=tuple(owner_access(r, owned) for r in records[:limit]),
            more=len(records) > limit,
        )
