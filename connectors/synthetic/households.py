"""Households of synthetic children: siblings who share an address, carers, a GP practice and
schools, and twins who share a date of birth as well.

These are the near-misses that make record linkage hard - two children with the same family name,
address and parents, sometimes born the same day - so they are built in rather than left to chance.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, TypeVar

from connectors.protocol import Address, Carer, Sex
from connectors.synthetic import names, places
from connectors.synthetic.dates import years_later
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.services import LocalPractice, LocalSchool, Services

_T = TypeVar("_T")

_OLDEST_AGE: Final = 17

# Who cares for a household's children: (relationship, parental responsibility, female), weight.
_HOUSEHOLD_SHAPES: Final = (
    ((("Mother", True, True), ("Father", True, False)), 0.62),
    ((("Mother", True, True),), 0.22),
    ((("Father", True, False),), 0.04),
    ((("Mother", True, True), ("Stepfather", False, False)), 0.06),
    ((("Father", True, False), ("Stepmother", False, True)), 0.03),
    ((("Grandmother", True, True),), 0.03),
)
_SIBLINGS: Final = ((1, 0.45), (2, 0.35), (3, 0.14), (4, 0.06))
_TWIN: Final = 0.03


@dataclass(frozen=True)
class Household:
    """What siblings share."""

    address: Address
    carers: tuple[Carer, ...]
    practice: LocalPractice
    primary: LocalSchool
    secondary: LocalSchool


@dataclass(frozen=True)
class Child:
    """The truth about one child. It never leaves the generator: only agency records are written,
    each agency's view drifted from it in that agency's way."""

    child_id: str
    nhs_number: str
    given: str
    family: str
    sex: Sex
    born: date
    household: Household


def draw_children(
    rng: random.Random,
    issuer: IdentifierIssuer,
    services: Services,
    count: int,
    today: date,
) -> list[Child]:
    """`count` children aged 0-17 on `today`, household by household (the last one cut short when
    the count is reached), with distinct given names among siblings."""
    kids: list[Child] = []
    while len(kids) < count:
        family = rng.choice(names.FAMILY)
        household = _household(rng, services, family)
        taken: set[str] = set()
        for sex, born in _siblings(rng, today):
            if len(kids) == count:
                break
            pool = names.FEMALE_GIVEN if sex is Sex.FEMALE else names.MALE_GIVEN
            given = rng.choice(pool)
            while given in taken:
                given = rng.choice(pool)
            taken.add(given)
            kids.append(
                Child(
                    child_id=f"child-{len(kids) + 1:07d}",
                    nhs_number=issuer.nhs_number(),
                    given=given,
                    family=family,
                    sex=sex,
                    born=born,
                    household=household,
                )
            )
    return kids


def _household(rng: random.Random, services: Services, family: str) -> Household:
    carers = []
    for relationship, responsible, female in _weighted(rng, _HOUSEHOLD_SHAPES):
        # Step-parents and some unmarried parents have a family name the children do not share.
        own_family = family
        if not responsible or rng.random() < 0.2:
            own_family = rng.choice(names.FAMILY)
        given = rng.choice(names.FEMALE_GIVEN if female else names.MALE_GIVEN)
        carers.append(
            Carer(
                name=f"{given} {own_family}",
                relationship=relationship,
                parental_responsibility=responsible,
                phone=places.mobile(rng) if rng.random() < 0.9 else None,
            )
        )
    return Household(
        address=places.home_address(rng),
        carers=tuple(carers),
        practice=rng.choice(services.practices),
        primary=rng.choice(services.primaries),
        secondary=rng.choice(services.secondaries),
    )


def _siblings(rng: random.Random, today: date) -> Iterator[tuple[Sex, date]]:
    """Sexes and birth dates of one household's children, eldest first, all aged 0-17 today."""
    earliest = years_later(today, -(_OLDEST_AGE + 1)) + timedelta(days=1)
    gaps = [
        0 if rng.random() < _TWIN else rng.randint(330, 1800)
        for _ in range(_weighted(rng, _SIBLINGS) - 1)
    ]
    span = (today - earliest).days
    while sum(gaps) > span:
        gaps.pop()
    born = earliest + timedelta(days=rng.randint(0, span - sum(gaps)))
    for gap in [0, *gaps]:
        born += timedelta(days=gap)
        yield (Sex.FEMALE if rng.random() < 0.49 else Sex.MALE), born


def _weighted(rng: random.Random, options: Sequence[tuple[_T, float]]) -> _T:
    return rng.choices([option for option, _ in options], [w for _, w in options])[0]
