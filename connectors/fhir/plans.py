"""CP-IS plans: what a `Flag` per plan says, and how it becomes a child's indicators and the
responsible local authority's involvement.

A CP-IS flag is a plan (child protection, or looked after) with its start and end, and the local
authority responsible for it - named, with its office-hours number (`Organization.telecom`) and its
emergency duty team's number (an `Organization.contact` whose purpose says so), as NHS England's
child health specifications carry the same items. The authority is the flag's `author`, a
contained `Organization`.

How it maps, and why:

- `Indicators.child_protection_plan` / `looked_after` are true when a plan of that kind is in
  force today (status active, started, not ended), false when CP-IS answered and none is. A flag
  CP-IS marks inactive is over whatever its period says (a plan ended early keeps the end once
  planned); an active one whose period has ended is over too. CP-IS
  answering "no plan" is an answer; a CP-IS that was not asked leaves both absent. A start or end
  given only to the month or year (FHIR allows it) with today inside that month or year leaves
  the plan's being in force unknown: the indicator is then unknown (null) unless another plan of
  the kind is surely in force - never a guess either way. A flag in force whose code is
  neither plan's (CP-IS may code a plan in a way not known here) likewise leaves a status that
  would be false unknown: skipping it would read a plan as absent.
- Each responsible authority with a plan in force becomes one `Involvement`: the authority as the
  organisation, its office-hours desk as the practitioner contact (CP-IS names no social worker),
  and its emergency duty team as the broker - the way to reach the authority out of hours.
  `since` is the earliest start among its plans in force. A plan that has ended is history, not
  someone working with the child, and gives neither an indicator nor an involvement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.organization import Organization

from connectors.fhir.periods import day_span
from connectors.fhir.terminology import (
    EMERGENCY_DUTY_PURPOSE,
    ODS_SYSTEM,
    PLAN_CODES,
    SNOMED_SYSTEM,
    PlanKind,
)
from connectors.protocol import Contact, Indicators, Involvement

_KIND_BY_CODE: Final = {code: kind for kind, (code, _) in PLAN_CODES.items()}
_SERVICE: Final = {
    PlanKind.CHILD_PROTECTION: "child protection plan",
    PlanKind.LOOKED_AFTER: "looked after",
}


@dataclass(frozen=True)
class ResponsibleAuthority:
    """The local authority responsible for a plan, and how to reach it in and out of hours."""

    name: str
    ods_code: str | None = None
    office_hours_phone: str | None = None
    emergency_duty_phone: str | None = None


@dataclass(frozen=True)
class CpisPlan:
    """One CP-IS plan about one child (by NHS number)."""

    nhs_number: str
    kind: PlanKind
    start: date | None
    """The first day it may have started (None: no start recorded)."""
    authority: ResponsibleAuthority | None
    end: date | None = None
    """The last day it may be in force (None: no end recorded)."""
    started_by: date | None = None
    """For a start given only to the month or year, the last day it may have started."""
    ended_from: date | None = None
    """For an end given only to the month or year, the first day it may have been over."""


def plans_from_flags(flags: Sequence[Flag], nhs_number: str) -> list[CpisPlan]:
    """The plans `flags` describe. A flag that is not a child protection or looked-after plan (an
    unborn-child plan, another programme's flag) or was entered in error is skipped here - but
    see `unread_in_force`: CP-IS answering one is not "no plan". A plan whose authority cannot be
    read still counts: missing contact details must not hide the plan."""
    plans = []
    for flag in flags:
        kind = _kind(flag)
        if kind is None or flag.status == "entered-in-error":
            continue
        plans.append(_plan(flag, nhs_number, kind))
    return plans


def unread_in_force(flags: Sequence[Flag], today: date) -> bool:
    """Whether CP-IS answered a flag not read as a plan (its code is neither plan's) that may be
    in force today: it may be a plan coded as this connector does not know, so the statuses it
    could be are unknown, never "no plan"."""
    return any(
        _kind(flag) is None
        and flag.status != "entered-in-error"
        and in_force(_plan(flag, "", PlanKind.CHILD_PROTECTION), today) is not False
        for flag in flags
    )


def _plan(flag: Flag, nhs_number: str, kind: PlanKind) -> CpisPlan:
    period = flag.period
    start = day_span(period.start) if period else None
    end = day_span(period.end) if period else None
    if flag.status == "inactive":
        # CP-IS says the plan is over - ended early, or without saying when: never in force,
        # whatever end its period still names (the end once planned is not the plan's).
        end = (date.min, date.min)
    return CpisPlan(
        nhs_number,
        kind,
        None if start is None else start[0],
        _authority(flag),
        None if end is None else end[1],
        started_by=None if start is None or start[0] == start[1] else start[1],
        ended_from=None if end is None or end[0] == end[1] else end[0],
    )


def in_force(plan: CpisPlan, today: date) -> bool | None:
    """Started (or no start recorded) and not ended before today; None when a start or end given
    only to the month or year leaves it unknown."""
    if (plan.start is not None and plan.start > today) or (
        plan.end is not None and plan.end < today
    ):
        return False
    if (plan.started_by is not None and plan.started_by > today) or (
        plan.ended_from is not None and plan.ended_from < today
    ):
        return None
    return True


def indicators(plans: Sequence[CpisPlan], today: date, *, unread: bool = False) -> Indicators:
    """Child protection plan and looked-after, from plans CP-IS returned (none: both false; one
    whose being in force is unknown, and none surely in force: unknown). With `unread` (CP-IS
    answered a flag that may be in force but is not read as a plan), a status that would be
    false is unknown instead."""

    def shown(kind: PlanKind) -> bool | None:
        found = _any_in_force(plans, kind, today)
        return None if unread and found is False else found

    return Indicators(
        child_protection_plan=shown(PlanKind.CHILD_PROTECTION),
        looked_after=shown(PlanKind.LOOKED_AFTER),
    )


def _any_in_force(plans: Sequence[CpisPlan], kind: PlanKind, today: date) -> bool | None:
    found = {in_force(plan, today) for plan in plans if plan.kind == kind}
    return True if True in found else None if None in found else False


def involvements(plans: Sequence[CpisPlan], today: date) -> list[Involvement]:
    """One involvement per responsible authority with a plan that is or may be in force, in the
    order first seen (a plan whose authority CP-IS did not name gives an indicator, but no one to
    contact): an authority that may hold a plan is one to reach."""
    by_authority: dict[ResponsibleAuthority, list[CpisPlan]] = {}
    for plan in plans:
        if plan.authority is not None and in_force(plan, today) is not False:
            by_authority.setdefault(plan.authority, []).append(plan)
    return [_involvement(authority, held) for authority, held in by_authority.items()]


def _involvement(authority: ResponsibleAuthority, plans: list[CpisPlan]) -> Involvement:
    kinds = [kind for kind in PlanKind if any(plan.kind == kind for plan in plans)]
    return Involvement(
        service="Children's social care: " + ", ".join(_SERVICE[kind] for kind in kinds),
        organisation=authority.name,
        practitioner=Contact(
            name=f"{authority.name} (office hours)",
            role="Children's social care, office hours",
            phone=authority.office_hours_phone,
        ),
        broker=Contact(
            name=f"{authority.name} emergency duty team",
            role="Emergency duty team, out of hours",
            phone=authority.emergency_duty_phone,
        ),
        since=_since(plans),
    )


def _since(plans: Sequence[CpisPlan]) -> date | None:
    """The earliest start, when it is known to the day: a start given only to the month or year
    that may be earlier leaves it unknown (either day would be a guess)."""
    exact = [p.start for p in plans if p.start is not None and p.started_by is None]
    partial = [p.start for p in plans if p.start is not None and p.started_by is not None]
    earliest = min(exact, default=None)
    if earliest is None or any(start < earliest for start in partial):
        return None
    return earliest


def _kind(flag: Flag) -> PlanKind | None:
    for coding in flag.code.coding or []:
        if coding.system == SNOMED_SYSTEM and str(coding.code) in _KIND_BY_CODE:
            return _KIND_BY_CODE[str(coding.code)]
    return None


def _authority(flag: Flag) -> ResponsibleAuthority | None:
    """The contained `Organization` the flag's author points at, when it names the authority; its
    ODS code and two numbers as far as CP-IS gives them."""
    reference = flag.author.reference if flag.author else None
    if not reference or not reference.startswith("#"):
        return None
    organisation = next(
        (r for r in flag.contained or [] if isinstance(r, Organization) and r.id == reference[1:]),
        None,
    )
    if organisation is None or not organisation.name:
        return None
    ods = next(
        (str(i.value) for i in organisation.identifier or [] if i.system == ODS_SYSTEM and i.value),
        None,
    )
    office = next(
        (str(t.value) for t in organisation.telecom or [] if t.system == "phone" and t.value), None
    )
    emergency = next(
        (
            str(t.value)
            for contact in organisation.contact or []
            if contact.purpose is not None and contact.purpose.text == EMERGENCY_DUTY_PURPOSE
            for t in contact.telecom or []
            if t.system == "phone" and t.value
        ),
        None,
    )
    return ResponsibleAuthority(str(organisation.name), ods, office, emergency)
