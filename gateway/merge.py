"""The merge stage: one view of the child from the released parts of every linked record.

A single-valued field takes the value of the most authoritative source that released one - the
per-field authority order from config (the NHS spine for name and address, the school for school,
the local authority for care status), then the most recent record - and when linked records hold
different values the field is flagged as a conflict, naming the sources that disagree, so a
practitioner knows to check rather than trusting a silent pick. Lists - carers and involvements -
are the union. Every value keeps the source it came from and that source's as-of time.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from connectors.protocol import Address, ConnectorRecord, FieldId, PersonName
from gateway import tracing
from gateway.identifiers import is_normal, normalise_nhs_number
from gateway.types import Conflict, MergedChild, ReleasedRecord, Sourced

T = TypeVar("T")


def _indicator(name: str) -> Callable[[ConnectorRecord], bool | None]:
    def get(record: ConnectorRecord) -> bool | None:
        value = None if record.indicators is None else getattr(record.indicators, name)
        return value if isinstance(value, bool) else None

    return get


@tracing.stage("merge")
def merge(
    records: Sequence[ReleasedRecord],
    authority: Mapping[FieldId, Sequence[str]],
    kinds: Mapping[str, str] | None = None,
) -> MergedChild | None:
    """Merge released records (given in source config order); None when nothing was linked.
    `authority` may name a kind of agency (`kinds`: agency name -> kind, gateway.plan.Planning):
    its agencies then rank equally, the newest record first."""
    if not records:
        return None
    conflicts: list[Conflict] = []
    rankings: dict[tuple[str, ...], list[ReleasedRecord]] = {}  # fields share a few orders

    def pick(field: FieldId, get: Callable[[ConnectorRecord], T | None]) -> Sourced[T] | None:
        order = tuple(authority.get(field, ()))
        if order not in rankings:
            rankings[order] = _ranked(records, order, kinds or {})
        ranked = rankings[order]
        held = [(r.matched.source, r.record, v) for r in ranked if (v := get(r.record)) is not None]
        if not held:
            return None
        source, record, value = held[0]
        disagreeing = tuple(
            dict.fromkeys(s for s, _, v in held[1:] if _comparable(v) != _comparable(value))
        )
        if disagreeing:
            conflicts.append(Conflict(field, source, disagreeing))
        return Sourced(value, source, record.as_of)

    def union(get: Callable[[ConnectorRecord], list[T] | None]) -> tuple[Sourced[T], ...]:
        # Carers and involvements are frozen models: equal fields, equal hash, one entry.
        seen: set[T] = set()
        values: list[Sourced[T]] = []
        for r in records:
            for value in get(r.record) or ():
                if value not in seen:
                    seen.add(value)
                    values.append(Sourced(value, r.matched.source, r.record.as_of))
        return tuple(values)

    child = MergedChild(
        nhs_number=pick(FieldId.NHS_NUMBER, shown_nhs_number),
        name=pick(FieldId.NAME, lambda r: r.name),
        date_of_birth=pick(FieldId.DATE_OF_BIRTH, lambda r: r.date_of_birth),
        sex=pick(FieldId.SEX, lambda r: r.sex),
        address=pick(FieldId.ADDRESS, lambda r: r.address),
        school=pick(FieldId.SCHOOL, lambda r: r.school),
        gp_practice=pick(FieldId.GP_PRACTICE, lambda r: r.gp_practice),
        carers=union(lambda r: r.carers),
        involvements=union(lambda r: r.involvements),
        child_protection_plan=pick(
            FieldId.CHILD_PROTECTION_PLAN, _indicator("child_protection_plan")
        ),
        looked_after=pick(FieldId.LOOKED_AFTER, _indicator("looked_after")),
        child_in_need=pick(FieldId.CHILD_IN_NEED, _indicator("child_in_need")),
        early_help=pick(FieldId.EARLY_HELP, _indicator("early_help")),
    )
    return replace(child, conflicts=tuple(conflicts))


def _ranked(
    records: Sequence[ReleasedRecord], order: Sequence[str], kinds: Mapping[str, str]
) -> list[ReleasedRecord]:
    """Listed sources (or kinds) first in their listed order, then the rest; newest first among
    equals."""
    rank = {source: i for i, source in enumerate(order)}

    def key(r: ReleasedRecord) -> tuple[int, float]:
        source = r.matched.source
        return (rank.get(kinds.get(source, source), len(order)), -instant(r.record.as_of))

    return sorted(records, key=key)


def shown_nhs_number(record: ConnectorRecord) -> str | None:
    """A record's NHS number as the child's only if it is one (`is_normal`): a record linked by
    demographics may carry a mistyped or made-up one, which must not be shown to a practitioner
    as the child's (nor recorded in the audit as released to them)."""
    value = record.identifiers.nhs_number
    return value if value is not None and is_normal(normalise_nhs_number, value) else None


def instant(as_of: datetime) -> float:
    """`as_of` on one time line: a time without an offset is UTC, as the protocol reads one.
    (`timestamp()` reads a naive time as local, and fails on one in year 1.)"""
    return (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).timestamp()


def _comparable(value: object) -> Hashable:
    """What two values must share to count as the same: case, accents and spacing are how
    agencies spell things differently, not different facts; a former name is not a conflict."""
    if isinstance(value, PersonName):
        return (_fold(value.given), _fold(value.family))
    if isinstance(value, Address):
        return (_fold(value.postcode).replace(" ", ""), tuple(_fold(line) for line in value.lines))
    if isinstance(value, Hashable):
        return value
    return repr(value)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join(
        "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split()
    )
