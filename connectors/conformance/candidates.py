"""Checks of demographic lookups: the child is found through a keying slip, and a search matching
many children still returns a handful (at most DEFAULT_LIMIT, as the SDK's search does)."""

from __future__ import annotations

from typing import Final

from connectors.conformance.dataset import CROWD_SEARCH, SLIP_SEARCH
from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session, same_child
from connectors.protocol import FieldId
from connectors.search import DEFAULT_LIMIT


async def finds_despite_slip(session: Session) -> Verdict:
    if not session.holdings.provides(FieldId.NAME, FieldId.DATE_OF_BIRTH):
        return Verdict.skipped("the agency does not provide both name and date of birth")
    answer = await session.answer(session.by_demographics(SLIP_SEARCH))
    if not any(same_child(record, session.dataset.slip) for record in answer.records):
        return Verdict.failed(
            f"a search for {SLIP_SEARCH.given} {SLIP_SEARCH.family} (both names one slip from "
            "the record, date of birth exact) did not find the child among "
            f"{len(answer.records)} candidates"
        )
    return Verdict.passed()


async def caps_candidates(session: Session) -> Verdict:
    if not session.holdings.provides(FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.ADDRESS):
        return Verdict.skipped("the agency does not provide name, date of birth and address")
    answer = await session.answer(session.by_demographics(CROWD_SEARCH))
    count = len(answer.records)
    crowd = len(session.dataset.crowd)
    if count > DEFAULT_LIMIT:
        return Verdict.failed(
            f"a search matching {crowd} children returned {count} candidates "
            f"(at most {DEFAULT_LIMIT})"
        )
    if not any(
        same_child(record, child) for record in answer.records for child in session.dataset.crowd
    ):
        return Verdict.failed(
            f"a search matching {crowd} children on family name, date of birth and postcode "
            "returned none of them, so the cap could not be seen"
        )
    return Verdict.passed()


CHECKS: Final = (
    Check("finds_despite_slip", finds_despite_slip),
    Check("caps_candidates", caps_candidates),
)
