"""What an audit record is: who looked at which (pseudonymised) child, why, and what left.

Records never hold the child's data: child and source-record identifiers are keyed pseudonyms, and
fields are named, not valued.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, Final

from gateway.types import LookupOutcome, Purpose

BREAK_GLASS = "BREAK_GLASS"
"""The alert kind of a break-glass override the policy permitted: the agencies were asked for the
child past any shield, whether it then released data or failed (POLICY_UNAVAILABLE,
INTERNAL_ERROR)."""
BREAK_GLASS_REFUSED = "BREAK_GLASS_REFUSED"
"""The alert kind of a break-glass attempt refused - by the policy (a role not permitted, no real
justification) or before it ran, for a justification that could not be kept (too long, or holding
an NHS number or UPN): nothing was released, but someone tried."""
BREAK_GLASS_ALERTS: Final = (BREAK_GLASS, BREAK_GLASS_REFUSED)
RATE_LIMITED: Final = "RATE_LIMITED"
ORGANISATION_RATE_LIMITED: Final = "ORGANISATION_RATE_LIMITED"
DISTINCT_CHILDREN_CAP: Final = "DISTINCT_CHILDREN_CAP"
LIMIT_ALERTS: Final = (RATE_LIMITED, ORGANISATION_RATE_LIMITED, DISTINCT_CHILDREN_CAP)
"""The alert kinds of a lookup refused at a usage limit, which are gateway.limits' refusal codes -
the user's per-minute limit, their organisation's, the user's daily cap: possible trawling (by a
user, or by many accounts of one organisation), for information governance to look into. A
refusal because the limits could not be checked (LIMITS_UNAVAILABLE) is an outage, and raises
none."""
REFUSED: Final = "REFUSED"
"""The outcome of a lookup refused before anything was asked (gateway.pipeline), and of a reading
of the audit log refused before anything was read (gateway.audit.trail: at a usage limit, or to
someone not an auditor, FORBIDDEN)."""


class AuditUnavailable(Exception):
    """The record could not be committed; the lookup must release nothing."""


@dataclass(frozen=True)
class AuditSource:
    source: str
    status: str
    error_code: str | None
    records: int
    cached: bool
    asked_with: Sequence[str] = ()
    """How the source was asked, in order: NHS_NUMBER, UPN or DEMOGRAPHICS, then the identifier a
    second round used (gateway.second_round). Absent from records written before it existed."""
    asked_because: Sequence[str] = ()
    """Why it was asked (gateway.types.AskedBecause): CONFIGURED, or LOCATED and the routes that
    named it - so an auditor can tell an agency the locator alone sent a child's identifiers to.
    Absent from records written before it existed."""


@dataclass(frozen=True)
class AuditField:
    source: str
    field: str
    reason: str | None = None


@dataclass(frozen=True)
class AuditMatch:
    """How one record was linked; `reasons` are the linkage comparisons, never the values."""

    source: str
    record_ref: str
    method: str
    score: float
    weight: float | None = None
    reasons: Sequence[str] = ()


@dataclass(frozen=True)
class AuditCandidates:
    """How many records of one source, linked one way, took part in an ambiguity: never which."""

    source: str
    method: str
    records: int


@dataclass(frozen=True)
class AuditAmbiguity:
    """What made a lookup AMBIGUOUS: the reason code (gateway.types.AmbiguityReason) and, per
    source, how many records were strong enough to link, and how."""

    reason: str
    candidates: Sequence[AuditCandidates] = ()


@dataclass(frozen=True)
class AuditNotice:
    """An owner notification queued with this record: to whom, why, and under which message id."""

    source: str
    reasons: Sequence[str]
    message_id: str
    told_why: bool = False
    """Whether it carried the practitioner's justification (gateway.audit.notify): the owner's
    access history shows the justification only then, never more than the owner was sent."""


@dataclass(frozen=True)
class Access:
    """Who looked at which (pseudonymised) child, when, and why: every record starts here."""

    at: datetime
    subject: str
    name: str
    role: str
    organisation: str
    purpose: str
    justification: str | None
    child_ref: str | None


@dataclass(frozen=True)
class AuditReading:
    """What one reading of the log covered, on the record of an auditor's reading (or what a
    refused one asked for): without it the log showed that an auditor read someone's trail, never
    whose, nor from when."""

    since: str | None
    """The time the reading started from (UTC, ISO 8601); None for the whole log."""
    subject: str | None = None
    """The user whose trail was read (a child's trail names its child by `child_ref`)."""
    alert_kinds: Sequence[str] = ()
    """The kinds of alert read, for a reading of an alerts feed."""


@dataclass(frozen=True)
class AuditRecord:
    """One lookup, as an auditor needs to see it."""

    access: Access
    audit_id: str
    request_id: str
    outcome: str
    denial: str | None
    error_code: str | None
    policy_revision: str | None
    decision_ids: Sequence[str] = field(default_factory=tuple)
    flagged_for_investigation: bool = False
    child_flags: Mapping[str, bool] | None = None
    sources: Sequence[AuditSource] = field(default_factory=tuple)
    matches: Sequence[AuditMatch] = field(default_factory=tuple)
    released: Sequence[AuditField] = field(default_factory=tuple)
    withheld: Sequence[AuditField] = field(default_factory=tuple)
    notified: Sequence[AuditNotice] = field(default_factory=tuple)
    ambiguity: AuditAmbiguity | None = None
    """Set for an AMBIGUOUS lookup, and for a HIDDEN one whose linked records were; absent from
    records written before it existed."""
    linked_refs: Sequence[str] = field(default_factory=tuple)
    """The keyed pseudonyms (`nhs:...`, `upn:...`) of the NHS numbers and UPNs the lookup's linked
    records hold, other than the one it was asked by: a lookup is in the trail of the child it
    reached, looked for by either identifier, and in its owner's access history. UPNs are named
    from 2026-11-29; absent from records written before NHS numbers were."""
    read: AuditReading | None = None
    """What an auditor's reading (purpose AUDIT_REVIEW) covered; absent from records written
    before 2026-11-29."""

    @property
    def alert(self) -> str | None:
        """The alert this record raises, if any: BREAK_GLASS for an override the policy permitted
        (flagged for investigation, even if it failed later), BREAK_GLASS_REFUSED for one refused
        (DENIED, by the policy or for its justification), and the refusal (one of LIMIT_ALERTS)
        for a lookup refused at a usage limit."""
        if self.flagged_for_investigation:
            return BREAK_GLASS
        if (
            self.access.purpose == Purpose.EMERGENCY_OVERRIDE
            and self.outcome == LookupOutcome.DENIED
        ):
            return BREAK_GLASS_REFUSED
        if self.outcome == REFUSED and self.error_code in LIMIT_ALERTS:
            return self.error_code
        return None

    def body(self) -> str:
        """The canonical JSON the hash chain covers: sorted keys, no spaces. Built as
        `dataclasses.asdict` would, without its deep copies of a record that is frozen and only
        read here: a lookup's body took ~190 us with asdict, ~45 us this way (2-core VM)."""
        data = _plain(self)
        data["access"]["at"] = self.access.at.isoformat()
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Each dataclass's field names, looked up once."""


def _plain(value: Any) -> Any:
    """`value` as JSON-ready dicts and lists: what `dataclasses.asdict` makes of it, unshared.
    Scalars, the commonest, are tested first."""
    cls = type(value)
    if cls in _SCALARS:
        return value
    names = _FIELD_NAMES.get(cls)
    if names is None and is_dataclass(cls):
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if cls is list or cls is tuple:
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_text(at: datetime) -> str:
    """`at` as the log writes times - in UTC, as `isoformat` writes them - so that comparing the
    text compares the times. A time without an offset is UTC, as the GraphQL API reads one; one
    UTC cannot hold (year 1 at +14:00, year 9999 at -14:00) is the first or last time there is."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC).isoformat()
    except OverflowError:
        bound = datetime.min if at.year == datetime.min.year else datetime.max
        return bound.replace(tzinfo=UTC).isoformat()
