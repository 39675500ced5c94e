"""Anti-harvesting: how many lookups a user or organisation may make, and how many children.

ContactPoint's users could read everyone; here each practitioner may look up a bounded number of
distinct children per day, and lookups are rate-limited per user and per organisation. Every lookup
counts, including each alias in one GraphQL request, and a lookup is admitted only by reserving its
place under every limit at once: checking and counting are one atomic step, so simultaneous
requests cannot all pass a check before any of them is counted.

`AccessLimits` is that step as an interface. `InProcessLimits` implements it for one gateway
process: distinct children are counted from the audit log itself (by pseudonym; the pseudonyms
one child's records link count as one child, `ChildrenSeen`), so the cap survives restarts; each
process keeps today's children per user in memory, re-reads the log every CHILDREN_REFRESH_S and
adds what it read to what it has reserved (never dropping a reservation whose audit record is not
written yet); a read that fails, or takes longer than CHILDREN_READ_TIMEOUT_S, refuses the lookup
LIMITS_UNAVAILABLE. Per-minute windows are this process's own.
`gateway.redis_limits.RedisLimits` implements it for every process sharing one Redis. A refusal
is audited and raises an alert; it never says anything about the child.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from connectors.protocol import FieldId
from gateway import metrics
from gateway.audit import (
    DISTINCT_CHILDREN_CAP,
    ORGANISATION_RATE_LIMITED,
    RATE_LIMITED,
    AuditStore,
)
from gateway.config import Settings
from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller, Release

CHILDREN_REFRESH_S = 60.0
"""How often a user's distinct children today are re-read from the (shared) audit log."""
IDLE_S = 600.0
"""A user idle this long is forgotten until their next lookup (their set is re-read from the log),
so memory follows the users active now, not every user since the process started."""
SWEEP_EVERY_S = 60.0
WINDOW_S: Final = 60
"""The per-minute limits count the lookups of the last this many seconds."""
LIMITS_UNAVAILABLE = "LIMITS_UNAVAILABLE"
"""The shared store of the limits could not be asked: refused, never admitted uncounted."""
CHILDREN_READ_TIMEOUT_S: Final = 2.0
"""Longest a lookup waits for the audit log to give the user's children today (InProcessLimits)
before it is refused LIMITS_UNAVAILABLE, as RedisLimits waits to seed its day map: a stalled
database must refuse the lookup within its deadline, not hold one of the process's places."""
_READS: Final = ThreadPoolExecutor(max_workers=4, thread_name_prefix="limits-read")
"""The threads the audit reads of `InProcessLimits` run on. A read given up on at
CHILDREN_READ_TIMEOUT_S goes on in its thread until the store gives up (its own bound, 30 s), so
a stalled store took a thread of the default executor (min(32, cpus + 4)) per lookup until none
was left, and every `asyncio.to_thread` in the process - the audit store's other reads, policy
reloads - waited behind them. Here a stall holds these four; the reads queued behind them are
dropped when their lookups give up. A healthy store answers in milliseconds, so four keep up
with any burst of users' first lookups."""

_logger = logging.getLogger("childlookup.limits")
_alerts = logging.getLogger("childlookup.alerts")


@dataclass(frozen=True)
class LimitSettings:
    per_user_per_minute: int
    per_organisation_per_minute: int
    distinct_children_per_day: int
    distinct_children_per_day_by_role: Mapping[str, int] = field(default_factory=dict)
    """A role's own daily cap, where its work differs: an auditor reviewing many children's trails,
    say. Roles not named have `distinct_children_per_day`."""
    per_user_per_minute_by_role: Mapping[str, int] = field(default_factory=dict)
    """A role's own per-minute limit of a user's lookups, where its work differs. Roles not named
    have `per_user_per_minute`."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitSettings:
        return cls(
            per_user_per_minute=settings.lookups_per_user_per_minute,
            per_organisation_per_minute=settings.lookups_per_organisation_per_minute,
            distinct_children_per_day=settings.distinct_children_per_user_per_day,
            distinct_children_per_day_by_role=dict(
                settings.distinct_children_per_user_per_day_by_role
            ),
            per_user_per_minute_by_role=dict(settings.lookups_per_user_per_minute_by_role),
        )

    def minute_limit(self, caller: Caller) -> int:
        """How many lookups (or readings of children's trails) `caller` may make a minute: their
        role's limit where one is set."""
        return self.per_user_per_minute_by_role.get(caller.role, self.per_user_per_minute)

    def daily_cap(self, caller: Caller) -> int:
        """How many different children `caller` may look up (or whose trails they may read) a
        day: their role's cap where one is set."""
        return self.distinct_children_per_day_by_role.get(
            caller.role, self.distinct_children_per_day
        )


class AccessLimits(Protocol):
    """Admits or refuses a lookup before anything is asked of any agency."""

    async def reserve(self, caller: Caller, child_ref: str) -> str | None:
        """Check every limit and, only if none refuses, count this lookup against all of them, as
        one atomic step. None when admitted; otherwise the refusal code."""
        ...

    async def link(self, caller: Caller, child_ref: str, linked_refs: Sequence[str]) -> None:
        """After the lookup of `child_ref` was audited: the records it reached name the child
        by `linked_refs` too, so a lookup by any of them today is of a child already counted.
        Never raises: a link not kept only counts a child again, which admits no one more."""
        ...


def shows_nhs_number(release: Release) -> bool:
    """Whether a lookup released the child's NHS number to the caller: only then are the other
    identifiers its records hold linked to the child counted (`AccessLimits.link`).

    At the cap, a lookup by a linked identifier is admitted and any other refused, so a link
    tells the caller that the identifier names the child of the earlier lookup. That is no more
    than a lookup by it shows, if the caller knows the child by its NHS number. Otherwise it
    would be more: which child a search that shield-safe search hid had reached (its outcome
    HIDDEN, shown as not found, releases nothing), or an NHS number the policy withheld. The
    audit log's re-read applies the same test to the fields each record says were released
    (gateway.audit.queries.CHILDREN_SEEN_QUERY)."""
    return any(FieldId.NHS_NUMBER in record.fields for record in release.records)


class ChildrenSeen:
    """One user's children on one day, each counted once whatever it was looked up by.

    A lookup names its child by one pseudonym - of an NHS number, a UPN, or a search's details -
    and the records it reaches may hold the others (`AuditRecord.linked_refs`). Pseudonyms linked
    so name one child: each is kept with the child it names (one of them stands for all), two
    children found to be one become one, and the cap counts children, not pseudonyms. Links come
    only from the agencies' records of a child the lookup singled out, never from the caller."""

    def __init__(self) -> None:
        self._child: dict[str, str] = {}
        self._children = 0

    @classmethod
    def of(cls, logged: Mapping[str, Iterable[str]]) -> ChildrenSeen:
        """The children in `logged` (`AuditStore.children_seen`)."""
        seen = cls()
        seen.update(logged)
        return seen

    def __contains__(self, child_ref: object) -> bool:
        return child_ref in self._child

    def __len__(self) -> int:
        return self._children

    def add(self, child_ref: str) -> None:
        """Count the child `child_ref` names, unless it is counted already."""
        if child_ref not in self._child:
            self._child[child_ref] = child_ref
            self._children += 1

    def link(self, child_ref: str, linked_refs: Iterable[str]) -> None:
        """`linked_refs` name the child `child_ref` names (which is counted if it was not)."""
        self.add(child_ref)
        child = self._child[child_ref]
        for ref in linked_refs:
            other = self._child.setdefault(ref, child)
            if other != child:  # two children counted apart are one
                for name, named in self._child.items():
                    if named == other:
                        self._child[name] = child
                self._children -= 1

    def update(self, logged: Mapping[str, Iterable[str]]) -> None:
        """Add what the audit log holds: never forgets a child counted here but not yet logged."""
        for child_ref, linked_refs in logged.items():
            self.link(child_ref, linked_refs)

    def children(self) -> dict[str, str]:
        """Each pseudonym, and the one that stands for its child."""
        return dict(self._child)


class _Window:
    """Counts events per key over the last `span_s` seconds; a key with none is forgotten."""

    def __init__(self, span_s: float) -> None:
        self._span = span_s
        self._events: dict[str, deque[float]] = {}

    def count(self, key: str, now: float) -> int:
        events = self._events.get(key)
        if events is None:
            return 0
        while events and events[0] <= now - self._span:
            events.popleft()
        if not events:
            del self._events[key]
        return len(events)

    def add(self, key: str, now: float) -> None:
        self._events.setdefault(key, deque()).append(now)

    def sweep(self, now: float) -> None:
        for key in list(self._events):
            self.count(key, now)

    def __len__(self) -> int:
        return len(self._events)


@dataclass
class _Seen:
    """One user's distinct children today: as read from the audit log, plus those reserved here."""

    day: datetime
    loaded: float
    used: float
    children: ChildrenSeen = field(default_factory=ChildrenSeen)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class InProcessLimits:
    """The limits of one gateway process, exact for that process (see the module notes)."""

    def __init__(
        self,
        settings: LimitSettings,
        audit: AuditStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._audit = audit
        self._clock = clock
        self._today = today
        self._users = _Window(WINDOW_S)
        self._organisations = _Window(WINDOW_S)
        self._children: dict[str, _Seen] = {}
        self._swept = clock()

    async def reserve(self, caller: Caller, child_ref: str) -> str | None:
        self._sweep(self._clock())
        try:
            seen = await self._children_today(caller.subject)
        except Exception as error:  # whatever the store raises, or too slow: the cap is not known
            _logger.error(
                "limits unavailable: lookup refused",
                extra={
                    "event": "limits_unavailable",
                    "context": {"store": "audit", "error": type(error).__name__},
                },
            )
            return LIMITS_UNAVAILABLE
        # From here to the return nothing awaits, so on the one event loop no other lookup can
        # run between the checks and the counting: the reservation is atomic.
        now = self._clock()
        if self._users.count(caller.subject, now) >= self._settings.minute_limit(caller):
            return RATE_LIMITED
        organisation = self._organisations.count(caller.organisation, now)
        if organisation >= self._settings.per_organisation_per_minute:
            return ORGANISATION_RATE_LIMITED
        children = seen.children
        if child_ref not in children and len(children) >= self._settings.daily_cap(caller):
            return DISTINCT_CHILDREN_CAP
        children.add(child_ref)
        seen.used = now
        self._users.add(caller.subject, now)
        self._organisations.add(caller.organisation, now)
        return None

    async def link(self, caller: Caller, child_ref: str, linked_refs: Sequence[str]) -> None:
        seen = self._children.get(caller.subject)
        if seen is not None:  # else forgotten: read again from the log, links and all
            # A child counted on another day (a lookup across midnight) is counted today too:
            # one more than it should be, never one less.
            seen.children.link(child_ref, linked_refs)

    def tracked(self) -> int:
        """How many users and organisations this process holds state for (for tests and ops)."""
        return len(self._users) + len(self._organisations) + len(self._children)

    async def _children_today(self, subject: str) -> _Seen:
        """The user's set for today, read from the log when new, stale or from another day."""
        midnight = self._today().replace(hour=0, minute=0, second=0, microsecond=0)
        seen = self._children.get(subject)
        if seen is None or seen.day != midnight:
            seen = _Seen(day=midnight, loaded=-CHILDREN_REFRESH_S, used=self._clock())
            self._children[subject] = seen
        async with seen.lock:  # one read of the log per user at a time
            if self._clock() - seen.loaded >= CHILDREN_REFRESH_S:
                # Bounded: the read goes on in its thread (`_READS`) until the store gives up. Run
                # in this context (the lookup's trace and log), as asyncio.to_thread runs a call.
                read = functools.partial(
                    contextvars.copy_context().run, self._audit.children_seen, subject, midnight
                )
                logged = await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(_READS, read),
                    CHILDREN_READ_TIMEOUT_S,
                )
                seen.children.update(logged)
                seen.loaded = self._clock()
        return seen

    def _sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        self._users.sweep(now)
        self._organisations.sweep(now)
        midnight = self._today().replace(hour=0, minute=0, second=0, microsecond=0)
        for subject, seen in list(self._children.items()):
            if seen.day != midnight or (now - seen.used >= IDLE_S and not seen.lock.locked()):
                del self._children[subject]


def refused(refusal: str, caller: Caller, what: str) -> GatewayError:
    """Count a refusal by the limits, raise the trawling alert, and return the caller's error -
    for a lookup (gateway.pipeline) and an auditor's reading of a child's trail
    (gateway.audit.trail) alike, once its refusal is recorded. Limits that could not be checked
    are an outage (logged where it happened, with its cause), not a user trawling."""
    metrics.LIMIT_REFUSALS.labels(refusal).inc()
    if refusal != LIMITS_UNAVAILABLE:
        _alerts.warning(
            f"{what} refused: possible trawling",
            extra={
                "event": "harvesting_alert",
                "context": {
                    "subject": caller.subject,
                    "organisation": caller.organisation,
                    "refusal": refusal,
                },
            },
        )
    return refusal_error(refusal)


def refusal_error(refusal: str) -> GatewayError:
    """What the caller is told: never anything about the child. A refusal by a limit says when
    the limit lets the caller in again (HTTP's Retry-After): after the per-minute window, at the
    latest, or at the next UTC midnight for the daily cap."""
    if refusal in (RATE_LIMITED, ORGANISATION_RATE_LIMITED):
        return GatewayError(
            ErrorCode.RATE_LIMITED,
            "Too many lookups in the last minute"
            + (" from your organisation" if refusal == ORGANISATION_RATE_LIMITED else "")
            + ". Wait a moment and try again.",
            retry_after_s=WINDOW_S,
        )
    if refusal == LIMITS_UNAVAILABLE:
        return GatewayError(
            ErrorCode.LIMITS_UNAVAILABLE,
            "The lookup could not be checked against the usage limits, so nothing was asked."
            " Try again shortly; if it persists, contact the service desk.",
        )
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return GatewayError(
        ErrorCode.LOOKUP_CAP_REACHED,
        "You have reached today's limit of different children you can look up (or whose"
        " audit trail you can read). This has been reported; contact your information"
        " governance lead if you need more.",
        retry_after_s=math.ceil((midnight - now).total_seconds()),
    )
