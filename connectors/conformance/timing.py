"""The check that the connector answers in time: the 95th percentile of several lookups by
identifier, each signed afresh as the gateway sends them, within the stated milliseconds.

Measured from the kit, so it includes the network between the kit and the connector: run the kit
from where the gateway will run, or expect the figure to flatter or wrong the connector.
"""

from __future__ import annotations

import math
from typing import Final

from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session

PERCENTILE: Final = 0.95


async def answers_within_time(session: Session) -> Verdict:
    plain = session.dataset.plain
    await session.answer(session.by_identifier(plain))  # warm: connection, the gateway's keys
    elapsed: list[float] = []
    for _ in range(session.lookups):
        request = session.by_identifier(plain)
        exchange = await session.client.lookup(request)
        exchange.answer(request, session.source)
        elapsed.append(exchange.elapsed_ms)
    p95 = percentile(elapsed, PERCENTILE)
    if p95 > session.max_ms:
        return Verdict.failed(
            f"p95 {p95:.0f} ms over {len(elapsed)} lookups, above {session.max_ms:g} ms"
        )
    return Verdict.passed()


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value at least `share` of values do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


CHECKS: Final = (Check("answers_within_time", answers_within_time),)
