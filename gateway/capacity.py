"""Load shedding: a gateway process runs only as many lookups at once as it can finish in time.

Under a burst every lookup started shares the same two cores; past a point none of them reads its
sources' answers within their budget, and every source times out - "not found" for everyone. So a
process runs at most `max_lookups_in_flight` lookups; the rest wait their turn in arrival order,
and a lookup that cannot start within `max_queue_wait_ms` is refused with OVERLOADED before any
agency is asked, any limit is counted or any record is written. The practitioner can simply try
again; nothing was looked at.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway import metrics
from gateway.errors import ErrorCode, GatewayError

_log = logging.getLogger("childlookup.gateway")

LOG_EVERY_S = 1.0
"""Shedding is reported at most this often: one log line per refusal would add to the load."""


class Capacity:
    def __init__(self, max_in_flight: int, max_wait_ms: int) -> None:
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_wait_s = max_wait_ms / 1000
        self._shed = 0
        self._reported = 0.0

    async def acquire(self) -> None:
        """Take one of the process's lookup places, waiting in turn; OVERLOADED if none frees up
        in time. Waiting can be cancelled (the caller went away) without taking a place."""
        if self._slots.locked():
            await self._wait_for_a_place()
        else:  # a place is free and nobody is ahead: taken at once, no wait to time or count
            await self._slots.acquire()
        metrics.LOOKUPS_IN_FLIGHT.inc()

    async def _wait_for_a_place(self) -> None:
        try:
            with metrics.LOOKUPS_WAITING.track_inprogress():
                async with asyncio.timeout(self._max_wait_s):
                    await self._slots.acquire()
        except TimeoutError:
            self._report_shed()
            raise GatewayError(
                ErrorCode.OVERLOADED,
                "The service is too busy to start your lookup right now; nothing was looked up."
                " Try again in a few seconds.",
            ) from None

    def release(self) -> None:
        metrics.LOOKUPS_IN_FLIGHT.dec()
        self._slots.release()

    def _report_shed(self) -> None:
        metrics.LOOKUPS_SHED.inc()
        self._shed += 1
        now = time.monotonic()
        if now - self._reported >= LOG_EVERY_S:
            _log.warning(
                "overloaded: lookups refused before they started",
                extra={"event": "overloaded", "context": {"refused": self._shed}},
            )
            self._reported, self._shed = now, 0
