"""What each agency's connector did the last time a lookup asked it, for operators.

Readiness does not depend on it: every gateway instance asks the same agencies, so taking this
one out of the load balancer would not bring a dead agency back, and lookups still answer with
that source's status. /readyz reports it so an operator sees at a glance which agency is down.
It holds statuses and times only, never anything from an answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypedDict

from gateway.types import SourceAnswer, SourceStatus


class SourceReport(TypedDict):
    last_status: str | None
    seconds_ago: float | None


class SourceHealth:
    def __init__(self, sources: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, tuple[SourceStatus, float] | None] = dict.fromkeys(sources)

    def record(self, answers: Iterable[SourceAnswer]) -> None:
        """Note the answers of sources actually contacted (not skipped, not from the cache)."""
        now = self._clock()
        for answer in answers:
            if answer.status is not SourceStatus.NOT_ASKED and not answer.cached:
                self._last[answer.source] = (answer.status, now)

    def report(self) -> dict[str, SourceReport]:
        now = self._clock()
        return {
            source: SourceReport(last_status=None, seconds_ago=None)
            if last is None
            else SourceReport(last_status=last[0].value, seconds_ago=round(now - last[1], 1))
            for source, last in self._last.items()
        }
