"""Shield-safe search: a demographic lookup never finds a shielded or restricted child.

A demographic lookup may carry a postcode, which is exactly what shielding withholds. Answering
"found" to a query that names a postcode confirms where the child lives even if no field is
released; a search with postcode NFA (no fixed abode), or with none, is treated no differently,
since confirming that a hidden child has no fixed abode, or that the agencies nearby hold them at
all, is itself a disclosure about where they are. So a search that reaches a shielded or
restricted record - or that cannot rule one out, because a shield authority, or a source holding
the NHS restricted flag, did not answer -
comes back exactly as a search that found nobody: same outcome, same source statuses, no possible
matches, and through the same remaining stages. Identifier lookups are unaffected: holding the
NHS number or UPN already identifies the child, and the policy then withholds location fields as
usual.

A search that found someone may ask again with the NHS number their record holds
(gateway.second_round); a search that found nobody never does. So a search hidden after two rounds
is answered as its first round hidden: the sources asked again, and how they then answered, would
show that someone was found.

The same stages are not the same time: before anything can be hidden, the agencies have found,
sent and the gateway has scored the hidden child's records, which a search for nobody never does
(measured: about 0.25 ms more, which 80 paired lookups tell apart at z = 5-6). So a demographic
search answers no sooner than a fixed time after it started (`answer_floor`), longer than the
search itself takes: both wait out the same floor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import replace

from gateway import tracing
from gateway.match import MatchResult
from gateway.types import LOCATOR_SOURCE, IdentifiedBy, LookupQuery, SourceStatus


@tracing.stage("shield_safe")
def shield_safe(
    query: LookupQuery,
    matching: MatchResult,
    doubt_authorities: Collection[str],
    *,
    first_round: MatchResult | None = None,
    before_routing: bool = False,
    unasked: Collection[str] = (),
) -> tuple[MatchResult, bool]:
    """The match result the caller may learn of, and whether anything was hidden (for the audit).
    `first_round` is the match before a second round, if there was one: a hidden search is
    answered as that round found nothing. `doubt_authorities` are the sources whose silence
    leaves a hidden child possible (`Plan.doubt_authorities`: shield and restriction authorities).

    Where a locator is a shield authority (national routing: the authorities that may shield a
    child are asked only when it or a route names them), a search the locator was never asked
    about - one that linked no one, and only came near someone (possible matches) - cannot know
    the shield status either: its near misses would show where a shielded child lives (a count
    of possible records at the right postcode only). Unless `before_routing`, when the routing
    stage asks whether to go on, before the locator could have been asked.

    `unasked` are doubt authorities the plan left out (Plan.unasked_authorities): an
    agency asked only when routed, of a kind the policy did not plan, has no answer at all, and
    says nothing of the child - doubt, not a clear search."""
    if query.identified_by is not IdentifiedBy.DEMOGRAPHICS:
        return matching, False
    found_anything = bool(matching.matched or matching.possible or matching.ambiguous)
    shield_known = not unasked and all(
        a.answered for a in matching.answers if a.source in doubt_authorities
    )
    if LOCATOR_SOURCE in doubt_authorities and not before_routing:
        shield_known = shield_known and any(a.source == LOCATOR_SOURCE for a in matching.answers)
    if not found_anything or (shield_known and not matching.flagged):
        return matching, False
    shown = matching if first_round is None else first_round
    nothing = MatchResult(
        answers=tuple(
            replace(a, status=SourceStatus.NO_RECORD, records=())
            if a.status is SourceStatus.ANSWERED
            else a
            for a in shown.answers
        ),
        matched=(),
        unmatched={},
        possible={},
    )
    return nothing, True


async def answer_floor(query: LookupQuery, started: float, floor_s: float) -> None:
    """Hold a demographic search's answer until `floor_s` after it `started` (monotonic), so its
    timing says nothing of what it found; other lookups are answered at once. A search that took
    longer than the floor is answered when done: keep the floor above what searches take."""
    if query.identified_by is IdentifiedBy.DEMOGRAPHICS:
        await asyncio.sleep(max(0.0, started + floor_s - time.monotonic()))
