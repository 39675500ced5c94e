"""Anti-harvesting: how many lookups a user or organisation may make, and how many children.

ContactPoint's users could read everyone; here each practitioner may look up a bounded number of
distinct children per day, and lookups are rate-limited per user and per organisation. Distinct
children are counted from the audit log itself (by pseudonym), so the cap survives restarts and is
shared by every gateway process writing that log: each process keeps today's set per user in
memory and re-reads it from the log every CHILDREN_REFRESH_S, so the log is consulted once a
minute, not on every lookup. A refusal is audited and raises an alert; it never says anything
about the child.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit import AuditStore
from gateway.config import Settings
from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller

CHILDREN_REFRESH_S = 60.0
RATE_LIMITED = "RATE_LIMITED"
DISTINCT_CHILDREN_CAP = "DISTINCT_CHILDREN_CAP"


@dataclass(frozen=True)
class LimitSettings:
    per_user_per_minute: int
    per_organisation_per_minute: int
    distinct_children_per_day: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitSettings:
        return cls(
            per_user_per_minute=settings.lookups_per_user_per_minute,
            per_organisation_per_minute=settings.lookups_per_organisation_per_minute,
            distinct_children_per_day=settings.distinct_children_per_user_per_day,
        )


class _Window:
    """Counts events per key over the last `span_s` seconds."""

    def __init__(self, span_s: float) -> None:
        self._span = span_s
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def count(self, key: str, now: float) -> int:
        events = self._events[key]
        while events and events[0] <= now - self._span:
            events.popleft()
        return len(events)

    def add(self, key: str, now: float) -> None:
        self._events[key].append(now)


@dataclass
class _Seen:
    """One user's distinct children today, as last read from the audit log plus since admitted."""

    day: datetime
    loaded: float
    children: set[str]


class AccessLimits:
    """Admits or refuses a lookup before anything is asked of any agency."""

    def __init__(self, settings: LimitSettings, audit: AuditStore) -> None:
        self._settings = settings
        self._audit = audit
        self._users = _Window(60.0)
        self._organisations = _Window(60.0)
        self._children: dict[str, _Seen] = {}

    async def refusal(self, caller: Caller, child_ref: str) -> str | None:
        """None when the lookup may go ahead (and is then counted), else the refusal code."""
        now = time.monotonic()
        if (
            self._users.count(caller.subject, now) >= self._settings.per_user_per_minute
            or self._organisations.count(caller.organisation, now)
            >= self._settings.per_organisation_per_minute
        ):
            return RATE_LIMITED
        seen = await self._seen_today(caller.subject, now)
        if child_ref not in seen and len(seen) >= self._settings.distinct_children_per_day:
            return DISTINCT_CHILDREN_CAP
        seen.add(child_ref)
        self._users.add(caller.subject, now)
        self._organisations.add(caller.organisation, now)
        return None

    async def _seen_today(self, subject: str, now: float) -> set[str]:
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cached = self._children.get(subject)
        if cached is None or cached.day != midnight or now - cached.loaded >= CHILDREN_REFRESH_S:
            children = await asyncio.to_thread(self._audit.distinct_children, subject, midnight)
            cached = _Seen(midnight, now, children)
            self._children[subject] = cached
        return cached.children


def refusal_error(refusal: str) -> GatewayError:
    """What the caller is told: never anything about the child."""
    if refusal == RATE_LIMITED:
        return GatewayError(
            ErrorCode.RATE_LIMITED,
            "Too many lookups in the last minute. Wait a moment and try again.",
        )
    return GatewayError(
        ErrorCode.LOOKUP_CAP_REACHED,
        "You have reached today's limit of different children you can look up. This has"
        " been reported; contact your information governance lead if you need more.",
    )
