"""Children placed in the country: where each lives, which practice and school they use, who
moved, and which authorities work or worked with them.

Households come from the same generator as the single-area population (siblings, twins, carers);
here each is settled in an authority by its size, registers with a practice and sends its children
to schools there (mostly: some use a practice or school over the border). Then some families
move authority and some children move school, leaving records behind where they were - the case a
lookup by address alone would miss.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from connectors.protocol import Address, Carer
from connectors.synthetic.dates import age, primary_start, secondary_start
from connectors.synthetic.households import Child, Household, draw_children
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.national.country import (
    Country,
    LocalAuthority,
    NationalSchool,
    Practice,
)
from connectors.synthetic.population import Status, deal_statuses

MOVED_AUTHORITY: Final = 0.08
"""Share of children whose family moved authority in the last three years."""
MOVED_SCHOOL: Final = 0.10
"""Share of children with a former school that still keeps their file (movers of authority who
were at school then, and children who changed school within an area)."""
KNOWN_TO_SOCIAL_CARE: Final = 0.12
SHIELDED: Final = 0.015
RESTRICTED: Final = 0.005
KNOWN_WHERE_THEY_LEFT: Final = 0.3
"""Of children who moved authority, the share the authority they left had worked with: families
who move are over-represented among those social care knows."""

_SCHOOL_AGE: Final = 4
_PRACTICE_OVER_THE_BORDER: Final = 0.05
_SCHOOL_OVER_THE_BORDER: Final = 0.10
_SCHOOL_MOVE_IN_AREA: Final = 0.85


@dataclass(frozen=True)
class Schooling:
    """One school a child attends or attended, from when and (for a former school) until when."""

    school: NationalSchool
    since: date
    until: date | None = None


@dataclass(frozen=True)
class Move:
    """The authority a family left, on which day, and the address they left."""

    local_authority: LocalAuthority
    on: date
    address: Address
    status: Status | None


@dataclass(frozen=True)
class NationalChild:
    kid: Child
    local_authority: LocalAuthority
    practice: Practice
    registered: date
    upn: str | None
    school: Schooling | None
    former_school: Schooling | None
    moved: Move | None
    status: Status | None
    shielded: bool
    restricted: bool


class _Settler:
    """Settles households for `draw_children`, remembering each one's authority and practice."""

    def __init__(self, country: Country) -> None:
        self._country = country
        self.placed: dict[int, tuple[LocalAuthority, Practice]] = {}
        self.schools: dict[str, NationalSchool] = {
            school.local.school.urn: school for school in country.schools
        }

    def __call__(self, rng: random.Random, carers: tuple[Carer, ...]) -> Household:
        country = self._country
        home = country.local_authorities.choose(rng)
        practice_area = home
        if rng.random() < _PRACTICE_OVER_THE_BORDER:
            practice_area = country.elsewhere(rng, home)
        practice = practice_area.practices.choose(rng)
        household = Household(
            address=home.address(rng),
            carers=carers,
            practice=practice.local,
            primary=self._school(rng, home, secondary=False).local,
            secondary=self._school(rng, home, secondary=True).local,
        )
        self.placed[id(household)] = (home, practice)
        return household

    def _school(self, rng: random.Random, home: LocalAuthority, secondary: bool) -> NationalSchool:
        area = home
        if rng.random() < _SCHOOL_OVER_THE_BORDER:
            area = self._country.elsewhere(rng, home)
        return area.schools(secondary).choose(rng)


def place_children(
    rng: random.Random, issuer: IdentifierIssuer, country: Country, count: int, today: date
) -> list[NationalChild]:
    """`count` children settled in `country`, with their moves and social care statuses."""
    settler = _Settler(country)
    kids = draw_children(rng, issuer, settler, count, today)
    placed = [settler.placed[id(kid.household)] for kid in kids]
    moves = _moves(rng, country, kids, [home for home, _ in placed], today)
    everyone = range(len(kids))
    known = rng.sample(everyone, round(KNOWN_TO_SOCIAL_CARE * len(kids)))
    statuses = deal_statuses(rng, known)
    shielded = set(known[: round(SHIELDED * len(kids))])
    restricted = set(rng.sample(everyone, round(RESTRICTED * len(kids))))
    schooling = [
        _schooling(rng, settler.schools, kid, moves.get(i), today) for i, kid in enumerate(kids)
    ]
    _move_schools(rng, country, schooling, [home for home, _ in placed], today)
    children = []
    for i, kid in enumerate(kids):
        home, practice = placed[i]
        school, former = schooling[i]
        first = former if former is not None and not former.school.secondary else None
        children.append(
            NationalChild(
                kid=kid,
                local_authority=home,
                practice=practice,
                registered=_registered(rng, kid, moves.get(i), today),
                upn=None if school is None else _upn(issuer, settler.schools, kid, first, today),
                school=school,
                former_school=former,
                moved=moves.get(i),
                status=statuses.get(i),
                shielded=i in shielded,
                restricted=i in restricted,
            )
        )
    return children


def _moves(
    rng: random.Random,
    country: Country,
    kids: Sequence[Child],
    homes: Sequence[LocalAuthority],
    today: date,
) -> dict[int, Move]:
    """Whole households move, until MOVED_AUTHORITY of children have; a child born since the move
    did not move. KNOWN_WHERE_THEY_LEFT of movers were known to the authority they left."""
    by_household: dict[int, list[int]] = {}
    for i, kid in enumerate(kids):
        by_household.setdefault(id(kid.household), []).append(i)
    households = list(by_household.values())
    rng.shuffle(households)
    wanted = round(MOVED_AUTHORITY * len(kids))
    left: dict[int, tuple[LocalAuthority, date, Address]] = {}
    for members in households:
        if len(left) >= wanted:
            break
        on = today - timedelta(days=rng.randint(30, 3 * 365))
        movers = [i for i in members if kids[i].born < on]
        if movers:
            where = country.elsewhere(rng, homes[movers[0]])
            address = where.address(rng)
            left.update((i, (where, on, address)) for i in movers)
    movers = sorted(left)
    statuses = deal_statuses(rng, rng.sample(movers, round(KNOWN_WHERE_THEY_LEFT * len(movers))))
    return {
        i: Move(local_authority=where, on=on, address=address, status=statuses.get(i))
        for i, (where, on, address) in left.items()
    }


def _schooling(
    rng: random.Random,
    schools: dict[str, NationalSchool],
    kid: Child,
    move: Move | None,
    today: date,
) -> tuple[Schooling | None, Schooling | None]:
    """The school a child attends now and, when the family moved authority while the child was
    at school, the school they left there."""
    if age(kid.born, today) < _SCHOOL_AGE:
        return None, None
    secondary_now = secondary_start(kid.born) <= today
    local = kid.household.secondary if secondary_now else kid.household.primary
    since = _phase_start(kid, secondary_now, today)
    school = schools[local.school.urn]
    if move is None or age(kid.born, move.on) < _SCHOOL_AGE:
        return Schooling(school, since), None
    secondary_then = secondary_start(kid.born) <= move.on
    left = move.local_authority.schools(secondary_then).choose(rng)
    if left is school:  # a school over the border of the new home, kept after the move
        return Schooling(school, since), None
    if secondary_then == secondary_now:
        since = move.on
    return Schooling(school, since), Schooling(
        left, _phase_start(kid, secondary_then, move.on), until=move.on
    )


def _move_schools(
    rng: random.Random,
    country: Country,
    schooling: list[tuple[Schooling | None, Schooling | None]],
    homes: Sequence[LocalAuthority],
    today: date,
) -> None:
    """Move pupils to another school of the same phase, mostly within their authority, until
    MOVED_SCHOOL of all children have a former school."""
    wanted = round(MOVED_SCHOOL * len(schooling)) - sum(f is not None for _, f in schooling)
    candidates = [i for i, (school, former) in enumerate(schooling) if school and not former]
    for i in rng.sample(candidates, len(candidates)):
        if wanted <= 0:
            return
        school = schooling[i][0]
        assert school is not None
        window = (today - school.since).days - 37
        if window <= 0:
            continue
        moved_on = school.since + timedelta(days=30 + rng.randrange(window))
        area = homes[i]
        if rng.random() > _SCHOOL_MOVE_IN_AREA:
            area = country.elsewhere(rng, area)
        former = area.schools(school.school.secondary).choose(rng)
        if former is school.school:
            continue
        schooling[i] = (
            Schooling(school.school, moved_on),
            Schooling(former, school.since, until=moved_on),
        )
        wanted -= 1


def _phase_start(kid: Child, secondary: bool, on: date) -> date:
    return secondary_start(kid.born) if secondary else primary_start(kid.born, on)


def _registered(rng: random.Random, kid: Child, move: Move | None, today: date) -> date:
    """When the child registered with their practice: after birth, or after the move."""
    since = kid.born if move is None else move.on
    return min(since + timedelta(days=rng.randint(7, 42)), today)


def _upn(
    issuer: IdentifierIssuer,
    schools: dict[str, NationalSchool],
    kid: Child,
    first: Schooling | None,
    today: date,
) -> str:
    """The UPN the child's first school allocated: the primary they left, if they moved during
    primary school, otherwise their household's primary."""
    school = first.school if first is not None else schools[kid.household.primary.school.urn]
    year = primary_start(kid.born, today).year
    return issuer.upn(school.local.establishment, year, school.la_number)
