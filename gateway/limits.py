"""Anti-harvesting: how many lookups a user or organisation may make, and how many children.

ContactPoint's users could read everyone; here each practitioner may look up a bounded number of
distinct children per day, and lookups are rate-limited per user and per organisation. Distinct
children are counted from the audit log itself (by pseudonym), so the cap survives restarts and is
shared by every gateway process writing that log. A refusal is audited and raises an alert; it
never says anything about the child.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.audit import AuditStore
from gateway.types import Caller

RATE_LIMITED = "RATE_LIMITED"
DISTINCT_CHILDREN_CAP = "DISTINCT_CHILDREN_CAP"


@dataclass(frozen=True)
class LimitSettings:
    per_user_per_minute: int
    per_organisation_per_minute: int
    distinct_children_per_day: int


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


class AccessLimits:
    """Admits or refuses a lookup before anything is asked of any agency."""

    def __init__(self, settings: LimitSettings, audit: AuditStore) -> None:
        self._settings = settings
        self._audit = audit
        self._users = _Window(60.0)
        self._organisations = _Window(60.0)

    async def refusal(self, caller: Caller, child_ref: str) -> str | None:
        """None when the lookup may go ahead (and is then counted), else the refusal code."""
        now = time.monotonic()
        if (
            self._users.count(caller.subject, now) >= self._settings.per_user_per_minute
            or self._organisations.count(caller.organisation, now)
            >= self._settings.per_organisation_per_minute
        ):
            return RATE_LIMITED
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        seen = await asyncio.to_thread(self._audit.distinct_children, caller.subject, midnight)
        if child_ref not in seen and len(seen) >= self._settings.distinct_children_per_day:
            return DISTINCT_CHILDREN_CAP
        self._users.add(caller.subject, now)
        self._organisations.add(caller.organisation, now)
        return None
