"""Checks that shielded and restricted children come back, with their flags, whether looked up by
identifier or found by a search: the gateway withholds location on the flag, and a record dropped
because of it would make "not found" itself a disclosure."""

from __future__ import annotations

from typing import Final

from connectors.conformance.dataset import exact_search
from connectors.conformance.holdings import Flag
from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session, same_child
from connectors.protocol import ConnectorRecord, FieldId, LookupRequest


async def carries_shielding_flag(session: Session) -> Verdict:
    return await _carries(session, Flag.SHIELDED, session.dataset.shielded)


async def carries_restriction_flag(session: Session) -> Verdict:
    return await _carries(session, Flag.RESTRICTED, session.dataset.restricted)


async def _carries(session: Session, flag: Flag, child: ConnectorRecord) -> Verdict:
    if flag not in session.holdings.flags:
        return Verdict.skipped(f"the agency does not set the {flag} flag")
    lookups: list[tuple[str, LookupRequest]] = [("by identifier", session.by_identifier(child))]
    if session.holdings.provides(FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.ADDRESS):
        lookups.append(("by demographics", session.by_demographics(exact_search(child))))
    for how, request in lookups:
        answer = await session.answer(request)
        found = [record for record in answer.records if same_child(record, child)]
        if not found:
            return Verdict.failed(f"the {flag} child was not returned {how}")
        if not all(getattr(record.flags, flag) for record in found):
            return Verdict.failed(f"the {flag} child came back {how} without flags.{flag}")
    return Verdict.passed()


CHECKS: Final = (
    Check("carries_shielding_flag", carries_shielding_flag),
    Check("carries_restriction_flag", carries_restriction_flag),
)
