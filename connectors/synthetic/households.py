"""Households of synthetic children: siblings who share an address, carers, a GP practice and
schools, and twins who share a date of birth as well; and, between households, namesakes.

These are the near-misses that make record linkage hard - two children with the same family name,
address and parents, sometimes born the same day; two unrelated children with the same name in
one postcode district - so they are built in rather than left to chance.

About 1.4% of maternities in England are twins (ONS birth statistics), so about 2.8% of children
are one of a twin pair; `_TWIN`, the chance that a younger sibling is the elder's twin, gives
that share of children.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Final, TypeVar

from connectors.protocol import Address, Carer, Sex
from connectors.synthetic import names, places
from connectors.synthetic.dates import earliest_birthday
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.noise import happens
from connectors.synthetic.services import LocalPractice, LocalSchool, Services

_T = TypeVar("_T")

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
# Namesakes born the same year as the child they share a name with; over-represented (by chance it
# would be one in eighteen) because then only the day of birth tells them apart.
_NAMESAKE_SAME_YEAR: Final = 0.5


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


Settle = Callable[[random.Random, tuple[Carer, ...]], Household]
"""Where a new household lives and which practice and schools it uses, given its carers."""


def draw_children(
    rng: random.Random,
    issuer: IdentifierIssuer,
    services: Services | Settle,
    count: int,
    today: date,
    *,
    lookalike_twins: float = 0.0,
    namesakes: float = 0.0,
) -> list[Child]:
    """`count` children aged 0-17 on `today`, household by household (the last one cut short when
    the count is reached), with distinct given names among siblings.

    Each household gets a random address, practice and schools of `services`, or is placed by
    `services` when it is a function (the national population places households in many areas).

    `lookalike_twins` of twin pairs get names that go together (Ella and Bella); `namesakes` of
    all children are made namesakes of an unrelated child (see NoiseProfile). At zero, neither
    draws from `rng`.
    """
    settle = _settle_in(services) if isinstance(services, Services) else services
    kids: list[Child] = []
    while len(kids) < count:
        family = rng.choice(names.FAMILY)
        household = settle(rng, _carers(rng, family))
        taken: set[str] = set()
        lookalike = False
        for sex, born in _siblings(rng, today):
            if len(kids) == count:
                break
            pool = names.FEMALE_GIVEN if sex is Sex.FEMALE else names.MALE_GIVEN
            given = rng.choice(pool)
            while given in taken:
                given = rng.choice(pool)
            taken.add(given)
            elder = kids[-1] if kids and kids[-1].household is household else None
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
            # A triplet keeps the names its elders were given as a pair.
            twin = elder is not None and elder.born == born and not lookalike
            lookalike = twin and happens(rng, lookalike_twins)
            if elder is not None and lookalike:
                _name_alike(rng, kids, elder, taken)
    if namesakes > 0.0:
        _make_namesakes(rng, kids, round(namesakes * count), today)
    return kids


def _name_alike(rng: random.Random, kids: list[Child], elder: Child, taken: set[str]) -> None:
    """Rename the last two children, twins, with a pair of names that go together and that none
    of their siblings has."""
    younger = kids[-1]
    siblings = taken - {elder.given, younger.given}
    pairs = names.LOOKALIKE_TWINS[elder.sex is Sex.FEMALE, younger.sex is Sex.FEMALE]
    first, second = rng.choice([p for p in pairs if not siblings & set(p)])
    kids[-2:] = [replace(elder, given=first), replace(younger, given=second)]
    taken.difference_update({elder.given, younger.given})
    taken.update((first, second))


def _make_namesakes(rng: random.Random, kids: list[Child], wanted: int, today: date) -> None:
    """Give `wanted` only children the given and family name of another child of the same sex,
    in another household of the same postcode district; half of them are also moved to a birthday
    in the other child's year (an only child has no sibling whose age that would contradict)."""
    sizes = Counter(id(kid.household) for kid in kids)
    only: defaultdict[tuple[str, Sex], list[int]] = defaultdict(list)
    for i, kid in enumerate(kids):
        if sizes[id(kid.household)] == 1:
            only[_district(kid), kid.sex].append(i)
    earliest = earliest_birthday(today)
    involved: set[int] = set()
    for i in rng.sample(range(len(kids)), len(kids)):
        if len(involved) == 2 * wanted:
            break
        kid = kids[i]
        others = [
            j
            for j in only[_district(kid), kid.sex]
            if j != i and j not in involved and kids[j].family != kid.family
        ]
        if i in involved or not others:
            continue
        j = rng.choice(others)
        born = kids[j].born
        first = max(date(kid.born.year, 1, 1), earliest)
        last = min(date(kid.born.year, 12, 31), today)
        if first < last and rng.random() < _NAMESAKE_SAME_YEAR:
            # Any day of that year but the child's own: two namesakes born the same day are one
            # child as far as demographics can tell.
            born = first + timedelta(days=rng.randrange((last - first).days))
            born += timedelta(days=int(born >= kid.born))
        namesake = kids[j]
        kids[j] = replace(
            namesake,
            given=kid.given,
            family=kid.family,
            born=born,
            household=_renamed(namesake.household, namesake.family, kid.family),
        )
        involved.update((i, j))


def _district(kid: Child) -> str:
    return kid.household.address.postcode.split()[0]


def _renamed(household: Household, family: str, new_family: str) -> Household:
    """The household with the carers who bore the child's family name bearing the new one."""
    carers = tuple(
        carer.model_copy(update={"name": carer.name.removesuffix(f" {family}") + f" {new_family}"})
        if carer.name.endswith(f" {family}")
        else carer
        for carer in household.carers
    )
    return replace(household, carers=carers)


def _carers(rng: random.Random, family: str) -> tuple[Carer, ...]:
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
    return tuple(carers)


def _settle_in(services: Services) -> Settle:
    def settle(rng: random.Random, carers: tuple[Carer, ...]) -> Household:
        return Household(
            address=places.home_address(rng),
            carers=carers,
            practice=rng.choice(services.practices),
            primary=rng.choice(services.primaries),
            secondary=rng.choice(services.secondaries),
        )

    return settle


def _siblings(rng: random.Random, today: date) -> Iterator[tuple[Sex, date]]:
    """Sexes and birth dates of one household's children, eldest first, all aged 0-17 today."""
    earliest = earliest_birthday(today)
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
