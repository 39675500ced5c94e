"""The match stage: decide which returned records are about the child asked for.

Merging the wrong child is worse than missing one. In an NHS-number lookup a record is linked only
when it carries that same NHS number. A source that returns a record with a *different* NHS number
has misbehaved: all of its records are dropped and its status says so, rather than trusting any of
them. Records without an NHS number cannot be linked by identifier and are counted, not merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.types import (
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    SourceAnswer,
    SourceStatus,
)

RECORD_MISMATCH = "RECORD_MISMATCH"


@dataclass(frozen=True)
class MatchResult:
    answers: tuple[SourceAnswer, ...]
    matched: tuple[MatchedRecord, ...]
    unmatched: dict[str, int]


def match_records(query: LookupQuery, answers: Sequence[SourceAnswer]) -> MatchResult:
    """Link records by NHS number; answers are returned with statuses corrected for mismatches."""
    checked: list[SourceAnswer] = []
    matched: list[MatchedRecord] = []
    unmatched: dict[str, int] = {}
    seen: set[str] = set()
    for answer in answers:
        held = [r.identifiers.nhs_number for r in answer.records]
        if any(n is not None and n != query.nhs_number for n in held):
            checked.append(
                replace(answer, status=SourceStatus.FAILED, records=(), error_code=RECORD_MISMATCH)
            )
            continue
        checked.append(answer)
        for record in answer.records:
            key = f"{answer.source}:{record.record_id}"
            if key in seen:
                continue
            seen.add(key)
            if record.identifiers.nhs_number == query.nhs_number:
                matched.append(
                    MatchedRecord(
                        key=key,
                        source=answer.source,
                        record=record,
                        method=MatchMethod.NHS_NUMBER,
                    )
                )
            else:
                unmatched[answer.source] = unmatched.get(answer.source, 0) + 1
    return MatchResult(tuple(checked), tuple(matched), unmatched)
