"""What each agency's connector did the last time a lookup asked it, for operators.

Readiness does not depend on it: every gateway instance asks the same agencies, so taking this
one out of the load balancer would not bring a dead agency back, and lookups still answer with
that source's status. /readyz reports it so an operator sees at a glance which agency is down.
It holds statuses and times only, never anything from an answer - not even whether the agency
held the child: ANSWERED, NO_RECORD and WITHHELD are all RESPONDED. A demographic search that
reached a shielded child is answered as one that found nobody (gateway.shield_safe), and an
unauthenticated page showing ANSWERED just after it would tell the two apart. For the same
reason only the sources asked on every lookup are reported: an agency asked only when routed
(gateway.routing) was asked because of where a child is - the page would show where a hidden
search went; its state is in the metrics, behind their token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypedDict

from gateway.types import SourceAnswer, SourceStatus

RESPONDED: Final = "RESPONDED"
"""The agency answered, whatever it said of the child."""
_RESPONSES: Final = frozenset(
    {SourceStatus.ANSWERED, SourceStatus.NO_RECORD, SourceStatus.WITHHELD}
)


class SourceReport(TypedDict):
    last_status: str | None
    seconds_ago: float | None


class SourceHealth:
    def __init__(self, sources: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, tuple[str, float] | None] = dict.fromkeys(sources)

    def record(self, answers: Iterable[SourceAnswer]) -> None:
        """Note the answers of sources actually contacted: not from the cache, and sent (not
        skipped, nor failed or timed out without a request: the agency did nothing, its last
        contact stands)."""
        now = self._clock()
        for answer in answers:
            if answer.source in self._last and answer.sent and not answer.cached:
                status = RESPONDED if answer.status in _RESPONSES else answer.status.value
                self._last[answer.source] = (status, now)

    def report(self) -> dict[str, SourceReport]:
        now = self._clock()
        return {
            source: SourceReport(last_status=None, seconds_ago=None)
            if last is None
            else SourceReport(last_status=last[0], seconds_ago=round(now - last[1], 1))
            for source, last in self._last.items()
        }
