"""The merge stage: one view of the child from the released parts of every linked record.

Single-valued fields take the value from the most authoritative source that released one (sources
are ordered by authority in the gateway config); lists - carers and involvements - are the union.
Every value keeps the source it came from and that source's as-of time, so a practitioner can
judge how current it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from connectors.protocol import ConnectorRecord
from gateway.types import MergedChild, ReleasedRecord, Sourced

T = TypeVar("T")


def _indicator(name: str) -> Callable[[ConnectorRecord], bool | None]:
    def get(record: ConnectorRecord) -> bool | None:
        value = None if record.indicators is None else getattr(record.indicators, name)
        return value if isinstance(value, bool) else None

    return get


def merge(records: Sequence[ReleasedRecord]) -> MergedChild | None:
    """Merge released records (in authority order); None when nothing was linked."""
    if not records:
        return None
    ordered = [(r.matched.source, r.record) for r in records]

    def first(get: Callable[[ConnectorRecord], T | None]) -> Sourced[T] | None:
        for source, record in ordered:
            value = get(record)
            if value is not None:
                return Sourced(value, source, record.as_of)
        return None

    def union(get: Callable[[ConnectorRecord], list[T] | None]) -> tuple[Sourced[T], ...]:
        seen: set[str] = set()
        values: list[Sourced[T]] = []
        for source, record in ordered:
            for value in get(record) or ():
                fingerprint = repr(value)
                if fingerprint not in seen:
                    seen.add(fingerprint)
                    values.append(Sourced(value, source, record.as_of))
        return tuple(values)

    return MergedChild(
        nhs_number=first(lambda r: r.identifiers.nhs_number),
        name=first(lambda r: r.name),
        date_of_birth=first(lambda r: r.date_of_birth),
        sex=first(lambda r: r.sex),
        address=first(lambda r: r.address),
        school=first(lambda r: r.school),
        gp_practice=first(lambda r: r.gp_practice),
        carers=union(lambda r: r.carers),
        involvements=union(lambda r: r.involvements),
        child_protection_plan=first(_indicator("child_protection_plan")),
        looked_after=first(_indicator("looked_after")),
        child_in_need=first(_indicator("child_in_need")),
        early_help=first(_indicator("early_help")),
    )
