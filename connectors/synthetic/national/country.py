"""The organisations of a synthetic England: local authorities with their postal districts and
social care teams, GP practices with their GPs and health visitors, schools with their designated
safeguarding leads.

Sizes are uneven, as in England, where an authority may hold a hundred times the children of
another and practice lists range from a few thousand patients to tens of thousands: each authority,
practice and school draws a log-normal weight, and children choose among them by weight. Codes are
synthetic (`E08` and five digits is one character short of a real ONS code; ODS `Y` codes and URNs
are numbered from 1), and every phone number is in an Ofcom drama range.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from connectors.national import AgencyKind, NationalAgency, agency_name, organisation
from connectors.protocol import Address, Contact, GpPractice, School
from connectors.synthetic import names, places
from connectors.synthetic.services import LocalPractice, LocalSchool, practitioner

_TOWN_STEMS: Final = (
    "Ash", "Bram", "Carl", "Dun", "Elm", "Fair", "Glen", "Hal", "Kings", "Lang", "Marl", "Nether",
    "Oak", "Pen", "Queens", "Red", "Stan", "Thorn", "Upper", "Wex", "Whit", "Brock", "Cold",
    "Ever", "Harrow", "Ivy", "Lox", "Mill", "North", "Port", "Rook", "Sand", "Tarn", "Wold",
    "West", "East", "South", "Bex", "Chad", "Dor",
)  # fmt: skip
_TOWN_ENDINGS: Final = (
    "ford", "ton", "bury", "field", "ley", "ham", "wick", "borough", "by", "mouth", "stead",
    "worth", "bridge", "chester", "dale", "minster",
)  # fmt: skip
_COUNCILS: Final = (
    "City Council", "Borough Council", "County Council", "Metropolitan Borough Council", "Council",
)  # fmt: skip
_LOCALITIES: Final = ("Park", "Green", "Hill", "Vale", "Heath", "Common", "End", "Cross", "Moor")
# Postcode areas: a first letter never Q, V or X, a second never I, J or Z (Royal Mail's rules).
_AREAS: Final = tuple(
    first + second for first in "ABCDEFGHIJKLMNOPRSTUWYZ" for second in "ABCDEFGHKLMNOPQRSTUVWXY"
)
# Ofcom's drama ranges for geographic numbers: each prefix takes three more digits.
_DRAMA_LINES: Final = (
    "0113 496 0", "0114 496 0", "0115 496 0", "0116 496 0", "0117 496 0", "0118 496 0",
    "0121 496 0", "0151 496 0", "0161 496 0", "0191 498 0", "020 7946 0", "01632 960",
)  # fmt: skip
_PRACTICE_KINDS: Final = ("Surgery", "Medical Centre", "Health Centre", "Medical Practice")
_PRIMARY_KINDS: Final = ("Primary School", "Primary Academy", "Church of England Primary School")
_SECONDARY_KINDS: Final = ("High School", "Academy", "School")
_SECONDARY_SHARE: Final = 0.17  # of schools: some 3,400 of England's 20,000 state schools
_CASES_PER_SOCIAL_WORKER: Final = 30
_SPREAD: Final = 0.8  # log-normal sigma of authority sizes; practices and schools vary less
_KNOWN_SHARE: Final = 0.12  # to size teams; the population module decides who is known
_DISTRICTS_PER_AUTHORITY: Final = 20  # England: some 3,000 postcode districts, 153 authorities

_T = TypeVar("_T")


@dataclass(frozen=True)
class Practice:
    local: LocalPractice
    gp: Contact
    local_authority: str


@dataclass(frozen=True)
class NationalSchool:
    local: LocalSchool
    local_authority: str
    la_number: str
    secondary: bool


class Weighted(Generic[_T]):
    """Items chosen by weight: one bisection per choice, whatever the number of items."""

    def __init__(self, items: Sequence[_T], weights: Sequence[float]) -> None:
        self.items = tuple(items)
        self._cumulative = tuple(itertools.accumulate(weights))

    def choose(self, rng: random.Random) -> _T:
        point = rng.random() * self._cumulative[-1]
        return self.items[bisect.bisect_right(self._cumulative, point)]


@dataclass(frozen=True)
class LocalAuthority:
    """An authority, its districts (each with a locality name) and the services within it."""

    code: str
    number: str
    town: str
    display_name: str
    districts: tuple[tuple[str, str], ...]
    phone_prefix: str
    social_workers: tuple[Contact, ...]
    early_help_leads: tuple[Contact, ...]
    practices: Weighted[Practice]
    primaries: Weighted[NationalSchool]
    secondaries: Weighted[NationalSchool]

    def address(self, rng: random.Random) -> Address:
        outward, locality = rng.choice(self.districts)
        return places.address_in(rng, outward, locality, self.town)

    def schools(self, secondary: bool) -> Weighted[NationalSchool]:
        return self.secondaries if secondary else self.primaries


@dataclass(frozen=True)
class Country:
    local_authorities: Weighted[LocalAuthority]
    practices: tuple[Practice, ...]
    schools: tuple[NationalSchool, ...]
    postcode_districts: Mapping[str, str]

    def elsewhere(self, rng: random.Random, home: LocalAuthority) -> LocalAuthority:
        """Another authority, by weight: where a family moved from, or a school over the border."""
        while True:
            other = self.local_authorities.choose(rng)
            if other is not home:
                return other

    def agencies(self) -> tuple[NationalAgency, ...]:
        kinds: list[tuple[AgencyKind, str, str, str]] = [
            ("social_care", la.code, la.display_name, la.code)
            for la in self.local_authorities.items
        ]
        kinds += [
            ("gp_practice", p.local.practice.ods_code, p.local.practice.name, p.local_authority)
            for p in self.practices
        ]
        kinds += [
            ("school", s.local.school.urn, s.local.school.name, s.local_authority)
            for s in self.schools
        ]
        return tuple(
            NationalAgency(
                name=agency_name(kind, code),
                kind=kind,
                code=code,
                display_name=display,
                organisation=organisation(kind, code),
                local_authority=la,
            )
            for kind, code, display, la in kinds
        )


def build_country(
    rng: random.Random, children: int, local_authorities: int, practices: int, schools: int
) -> Country:
    """`local_authorities` authorities sharing `practices` practices and `schools` schools by size,
    each authority with at least one practice, one primary and one secondary school."""
    if not 1 <= local_authorities <= len(_TOWN_STEMS) * len(_TOWN_ENDINGS):
        raise ValueError(f"between 1 and {len(_TOWN_STEMS) * len(_TOWN_ENDINGS)} authorities")
    if practices < local_authorities or schools < 2 * local_authorities:
        raise ValueError("each authority needs a practice and two schools")
    weights = [rng.lognormvariate(0.0, _SPREAD) for _ in range(local_authorities)]
    total = sum(weights)
    mean = total / local_authorities
    practice_counts = _shares(weights, practices, 1)
    school_counts = _shares(weights, schools, 2)
    towns = rng.sample([s + e for s in _TOWN_STEMS for e in _TOWN_ENDINGS], local_authorities)
    areas = rng.sample(_AREAS, local_authorities)
    numbers = rng.sample(range(201, 1000), local_authorities)
    ods, urn = itertools.count(1), itertools.count(100_001)
    authorities, all_practices, all_schools = [], [], []
    districts: dict[str, str] = {}
    for i, weight in enumerate(weights):
        code, town = f"E08{i + 1:05d}", towns[i]
        share = children * weight / total
        district_count = _clamp(round(_DISTRICTS_PER_AUTHORITY * weight / mean), 2, 99)
        outwards = [f"{areas[i]}{n}" for n in range(1, district_count + 1)]
        districts.update((outward, code) for outward in outwards)
        prefix = rng.choice(_DRAMA_LINES)

        def phone(prefix: str = prefix) -> str:
            return f"{prefix}{rng.randrange(1000):03d}"

        nurse = practitioner(rng, "School nurse", "example.nhs.uk", phone())
        team_size = share * _KNOWN_SHARE / _CASES_PER_SOCIAL_WORKER
        own_practices = [
            _practice(rng, f"Y{next(ods):05d}", code, phone()) for _ in range(practice_counts[i])
        ]
        secondaries = max(1, round(school_counts[i] * _SECONDARY_SHARE))
        establishments = iter(rng.sample(range(1000), school_counts[i]))
        own_schools = [
            NationalSchool(
                local=_school(
                    rng, str(next(urn)), n < secondaries, next(establishments), phone(), nurse
                ),
                local_authority=code,
                la_number=str(numbers[i]),
                secondary=n < secondaries,
            )
            for n in range(school_counts[i])
        ]
        all_practices += own_practices
        all_schools += own_schools
        authorities.append(
            LocalAuthority(
                code=code,
                number=str(numbers[i]),
                town=town,
                display_name=f"{town} {rng.choice(_COUNCILS)}",
                districts=tuple(
                    (o, f"{rng.choice(places.STREET_NAMES)} {rng.choice(_LOCALITIES)}")
                    for o in outwards
                ),
                phone_prefix=prefix,
                social_workers=_team(rng, team_size, "Social worker", phone),
                early_help_leads=_team(rng, team_size * 0.75, "Early help lead", phone),
                practices=_by_size(rng, own_practices, 0.5),
                primaries=_by_size(rng, [s for s in own_schools if not s.secondary], 0.5),
                secondaries=_by_size(rng, [s for s in own_schools if s.secondary], 0.4),
            )
        )
    return Country(
        local_authorities=Weighted(authorities, weights),
        practices=tuple(all_practices),
        schools=tuple(all_schools),
        postcode_districts=districts,
    )


def _practice(rng: random.Random, ods: str, la: str, phone: str) -> Practice:
    name = f"{rng.choice(places.STREET_NAMES)} {rng.choice(_PRACTICE_KINDS)}"
    return Practice(
        local=LocalPractice(
            practice=GpPractice(ods_code=ods, name=name, phone=phone),
            health_visitor=practitioner(rng, "Health visitor", "example.nhs.uk", phone),
        ),
        gp=practitioner(rng, "GP", "example.nhs.uk", phone),
        local_authority=la,
    )


def _school(
    rng: random.Random,
    urn: str,
    secondary: bool,
    establishment: int,
    phone: str,
    nurse: Contact,
) -> LocalSchool:
    kinds = _SECONDARY_KINDS if secondary else _PRIMARY_KINDS
    if rng.random() < 0.2:
        name = f"St {rng.choice(names.SAINTS)}'s Catholic {rng.choice(kinds)}"
    else:
        name = f"{rng.choice(places.STREET_NAMES)} {rng.choice(kinds)}"
    dsl = practitioner(rng, "Designated safeguarding lead", "example.sch.uk", phone)
    # DfE convention: establishment numbers 2xxx are primary, 4xxx secondary.
    return LocalSchool(
        establishment=f"{4 if secondary else 2}{establishment:03d}",
        school=School(urn=urn, name=name, phone=phone),
        safeguarding_lead=dsl,
        nurse=nurse,
    )


def _team(
    rng: random.Random, size: float, role: str, phone: Callable[[], str]
) -> tuple[Contact, ...]:
    return tuple(
        practitioner(rng, role, "example.gov.uk", phone()) for _ in range(max(1, round(size)))
    )


def _by_size(rng: random.Random, items: Sequence[_T], spread: float) -> Weighted[_T]:
    return Weighted(items, [rng.lognormvariate(0.0, spread) for _ in items])


def _shares(weights: Sequence[float], count: int, least: int) -> list[int]:
    """`count` split by weight (largest remainder), each part at least `least`."""
    spare = count - least * len(weights)
    total = sum(weights)
    exact = [spare * w / total for w in weights]
    parts = [int(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: parts[i] - exact[i])
    for i in by_remainder[: spare - sum(parts)]:
        parts[i] += 1
    return [least + part for part in parts]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
