"""Circuit breakers: a source that keeps failing is skipped at once, not waited for on every lookup.

A dead or hung agency costs each lookup its whole timeout (1 s by default) and holds one of the
process's lookup places while it does. After `failures` consecutive failed attempts (no answer in
time, connection refused, or the connector saying it is UNAVAILABLE) a source's circuit opens: for
`cool_down_s` lookups skip it at once, and it is reported FAILED with CIRCUIT_OPEN - honest, and
indistinguishable in meaning from the failure it replaces. Then the circuit is half-open: the next
lookup is let through as a probe (only that one: concurrent lookups still skip), and its answer
closes the circuit or opens it for another cool-down.

Each gateway process keeps its own breakers; no answer data is held, only counts and times.

purgatory (asyncio circuit breakers) was considered: its half-open state lets every concurrent
request through rather than one probe, it times cool-downs by the wall clock, and it counts
exceptions, where fan-out turns every fault into a status. The state machine below is small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import Enum, StrEnum

_log = logging.getLogger("childlookup.gateway")

CIRCUIT_OPEN = "CIRCUIT_OPEN"
"""The error code of a source skipped because its circuit is open."""


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    HALF_OPEN = "HALF_OPEN"
    OPEN = "OPEN"


class Admission(Enum):
    """What the breaker says about one attempt to ask the source."""

    ASK = "ask"
    """The circuit is closed: ask, and report how it went."""
    PROBE = "probe"
    """The cool-down is over and this attempt is the one probe: its result decides."""
    SKIP = "skip"
    """The circuit is open (or another attempt is probing): do not ask."""


class Breaker:
    """One source's circuit. Not thread-safe: it lives on the gateway's event loop."""

    def __init__(
        self,
        source: str,
        failures: int,
        cool_down_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, CircuitState], None] | None = None,
    ) -> None:
        """`failures` consecutive failures open the circuit; 0 never opens it."""
        self.source = source
        self._threshold = failures
        self._cool_down_s = cool_down_s
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        if on_change is not None:
            on_change(source, self._state)

    @property
    def state(self) -> CircuitState:
        return self._state

    def admit(self) -> Admission:
        if self._state is CircuitState.CLOSED:
            return Admission.ASK
        if self._state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self._cool_down_s:
                return Admission.SKIP
            self._change(CircuitState.HALF_OPEN)
        if self._probing:
            return Admission.SKIP
        self._probing = True
        return Admission.PROBE

    def settle(self, admission: Admission, failed: bool | None) -> None:
        """Report an admitted attempt: `failed` True or False, or None when it never got a
        verdict (abandoned, cancelled), which frees the probe for the next lookup."""
        if admission is Admission.PROBE:
            self._probing = False
            if failed:
                self._open()
            elif failed is False:
                self._close()
            return
        if admission is not Admission.ASK or failed is None:
            return
        # An attempt admitted while closed but finishing after the circuit opened says nothing
        # about the source now: only the probe decides from then on.
        if self._state is not CircuitState.CLOSED:
            return
        if not failed:
            self._failures = 0
            return
        self._failures += 1
        if self._threshold and self._failures >= self._threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        if self._state is not CircuitState.OPEN:
            _log.warning(
                "source circuit opened: skipping it until a probe succeeds",
                extra={
                    "event": "circuit_open",
                    "context": {"source": self.source, "failures": self._failures},
                },
            )
        self._change(CircuitState.OPEN)

    def _close(self) -> None:
        self._failures = 0
        if self._state is not CircuitState.CLOSED:
            _log.info(
                "source circuit closed: the probe was answered",
                extra={"event": "circuit_closed", "context": {"source": self.source}},
            )
        self._change(CircuitState.CLOSED)

    def _change(self, state: CircuitState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(self.source, state)


class Breakers:
    """A breaker per configured source, all with the same settings."""

    def __init__(
        self,
        sources: Iterable[str],
        failures: int,
        cool_down_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, CircuitState], None] | None = None,
    ) -> None:
        self._breakers = {
            name: Breaker(name, failures, cool_down_s, clock=clock, on_change=on_change)
            for name in sources
        }

    def __getitem__(self, source: str) -> Breaker:
        return self._breakers[source]

    def states(self) -> dict[str, CircuitState]:
        return {name: b.state for name, b in self._breakers.items()}
