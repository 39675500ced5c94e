"""How copies of a child's details drift from the original, the way records keyed by hand do.

The health record stands for the NHS spine, which other agencies copy from with delay and by hand;
the education and social care copies are where names get misspelt, nicknames recorded, a day and
month swapped or a move missed. A linkage engine is only as good as the disagreement it was tested
on, so every fault here is one that real record linkage has to survive.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from enum import StrEnum
from typing import Final, Literal

from connectors.synthetic.names import NICKNAMES

NoiseLevel = Literal["none", "low", "medium", "high", "extreme"]

# Neighbouring keys on a UK QWERTY keyboard: a slipped finger hits one of these.
_NEIGHBOURS: Final = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}  # fmt: skip


class Fault(StrEnum):
    """One way a copy differs from the health record, as the truth file records it per copy.

    Only names of faults are recorded, never the values they changed, so the truth file still
    holds no child's details. `placement` is not an error - a looked-after child's social care
    record holds the placement address - but it is a difference a matcher must survive all the same.
    """

    NICKNAME = "nickname"
    GIVEN_TYPO = "given_typo"
    FAMILY_TYPO = "family_typo"
    SWAPPED_DAY_MONTH = "swapped_day_month"
    MOVED = "moved"
    PLACEMENT = "placement"
    STALE_FAMILY = "stale_family"
    NAMES_SWAPPED = "names_swapped"
    KNOWN_AS = "known_as"
    NEW_FAMILY = "new_family"
    NEW_FAMILY_UNRECORDED = "new_family_unrecorded"
    WRONG_DATE_OF_BIRTH = "wrong_date_of_birth"
    NO_DATE_OF_BIRTH = "no_date_of_birth"
    NO_ADDRESS = "no_address"
    ADDRESS_WRITTEN_DIFFERENTLY = "address_written_differently"
    CARERS_RECORDED_DIFFERENTLY = "carers_recorded_differently"


@dataclass(frozen=True)
class NoiseProfile:
    """How often a copied (education or social care) record disagrees with the health record, and
    how often different children look alike.

    Each per-record rate is the chance that one copy shows that fault where the fault is possible:
    a nickname needs a name that has one, a day/month swap needs both parts to be 12 or less.
    `name_change` is per child: that share of children have changed family name, which a stale copy
    has missed. The two NHS-number rates are the share of copies that hold the number at all; a
    copy never holds a wrong one, because a wrong NHS number is a different child, not noise.

    The rates from `names_swapped` on are the hard cases, zero except in "extreme"; a zero rate
    draws no random number, so the other presets give exactly the populations they always gave.
    Per copy: given and family name swapped (sometimes with a slip as well); the given name
    replaced by another the child is known by (a middle or preferred name, never a nickname of
    it); a new family name (a step-parent's, or after adoption), with the old one recorded as
    former name about half the time; a date of birth wrong in day, month and year; no date of birth;
    no address; the same address written another way (capitals, "Rd" for "Road"); the carers
    recorded differently (only one of them, none, or with slips in their names). Per twin pair,
    `lookalike_twins`: the twins get names chosen to sound alike (Ella and Bella, Oliver and
    Olivia). Per child, `namesakes`: the child is given the same given
    and family name as an unrelated child of the same sex in the same postcode district, half of
    them born the same year, so twice that share of children have a same-name neighbour.
    """

    typo: float = 0.03
    nickname: float = 0.10
    swapped_day_month: float = 0.02
    moved_address: float = 0.06
    name_change: float = 0.02
    education_nhs_number: float = 0.35
    social_care_nhs_number: float = 0.70
    names_swapped: float = 0.0
    known_as: float = 0.0
    new_family: float = 0.0
    wrong_date_of_birth: float = 0.0
    missing_date_of_birth: float = 0.0
    missing_address: float = 0.0
    lookalike_twins: float = 0.0
    namesakes: float = 0.0
    address_written_differently: float = 0.0
    carers_recorded_differently: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            rate = getattr(self, field.name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"NoiseProfile.{field.name} must be between 0 and 1, not {rate}")

    @classmethod
    def preset(cls, level: NoiseLevel) -> NoiseProfile:
        """A named profile: "none" for clean linkage, "medium" (the default) for realistic data,
        "high" to stress a matcher, "extreme" to measure the hard cases."""
        try:
            return _PRESETS[level]
        except KeyError:
            raise ValueError(
                f"unknown noise level {level!r}; use one of {sorted(_PRESETS)}"
            ) from None


_HIGH: Final = NoiseProfile(
    typo=0.10,
    nickname=0.25,
    swapped_day_month=0.05,
    moved_address=0.15,
    name_change=0.05,
    education_nhs_number=0.15,
    social_care_nhs_number=0.50,
)

_PRESETS: Final[dict[str, NoiseProfile]] = {
    "none": NoiseProfile(
        typo=0.0,
        nickname=0.0,
        swapped_day_month=0.0,
        moved_address=0.0,
        name_change=0.0,
        education_nhs_number=1.0,
        social_care_nhs_number=1.0,
    ),
    "low": NoiseProfile(
        typo=0.01,
        nickname=0.03,
        swapped_day_month=0.005,
        moved_address=0.02,
        name_change=0.01,
        education_nhs_number=0.60,
        social_care_nhs_number=0.90,
    ),
    "medium": NoiseProfile(),
    "high": _HIGH,
    # "high", a little worse, plus every hard case at a few percent: rates near the top of what
    # audits of hand-keyed administrative records report, so that each hard case occurs often
    # enough in a few thousand copies to be counted, without any one of them dominating.
    "extreme": replace(
        _HIGH,
        typo=0.12,
        nickname=0.30,
        swapped_day_month=0.06,
        moved_address=0.20,
        name_change=0.06,
        education_nhs_number=0.10,
        social_care_nhs_number=0.40,
        names_swapped=0.03,
        known_as=0.05,
        new_family=0.04,
        wrong_date_of_birth=0.02,
        missing_date_of_birth=0.02,
        missing_address=0.05,
        lookalike_twins=0.30,
        namesakes=0.01,
        address_written_differently=0.30,
        carers_recorded_differently=0.30,
    ),
}


def happens(rng: random.Random, rate: float) -> bool:
    """Whether a fault of this rate happens; a zero rate draws nothing from `rng`, so adding a
    fault at rate zero leaves every later draw, and so every existing population, unchanged."""
    return rate > 0.0 and rng.random() < rate


def misspell(rng: random.Random, name: str) -> str:
    """One keying slip - two adjacent letters transposed, one letter hit as its neighbour, or one
    dropped - that always changes the name.

    Capitals stay where the typist put them ("Amtthew", not "aMtthew"), and the first letter is
    only ever moved by a transposition, never replaced or dropped: slips at the start of a word are
    the rarest, and keeping the initial mostly intact is what real data shows.
    """
    kind = rng.choice(("transpose", "substitute", "delete"))
    letters = name.lower()
    swappable = [
        i
        for i in range(len(letters) - 1)
        if letters[i] != letters[i + 1] and (letters[i] + letters[i + 1]).isalpha()
    ]
    if kind == "delete" and len(name) > 3:
        i = rng.randrange(1, len(name))
        return name[:i] + name[i + 1 :]
    if kind == "transpose" and swappable:
        i = rng.choice(swappable)
        slipped = letters[:i] + letters[i + 1] + letters[i] + letters[i + 2 :]
    else:
        i = rng.randrange(1, len(name)) if len(name) > 1 else 0
        neighbours = _NEIGHBOURS.get(letters[i], "aeiou".replace(letters[i], ""))
        slipped = letters[:i] + rng.choice(neighbours) + letters[i + 1 :]
    return "".join(s.upper() if o.isupper() else s for s, o in zip(slipped, name, strict=True))


def slip(rng: random.Random, given: str, family: str) -> tuple[str, str, Fault]:
    """A keying slip in the given or the family name, equally often."""
    if rng.random() < 0.5:
        return misspell(rng, given), family, Fault.GIVEN_TYPO
    return given, misspell(rng, family), Fault.FAMILY_TYPO


def swapped_day_month(born: date) -> date | None:
    """The date read the American way round, where that is a different, real date."""
    if born.day > 12 or born.day == born.month:
        return None
    return born.replace(month=born.day, day=born.month)


def wrong_date_of_birth(rng: random.Random, born: date, earliest: date, latest: date) -> date:
    """Another child's date of birth, as if keyed from the wrong form: day, month and year all
    differ from `born`, the year by at most three, and the date stays between `earliest` and
    `latest`, so it is still the birthday of a child of the same age range."""
    years = [y for y in range(born.year - 3, born.year + 4) if y != born.year]
    while True:
        # Days 1-28 exist in every month; retrying keeps each draw inside the age range.
        wrong = date(
            rng.choice(years),
            rng.choice([m for m in range(1, 13) if m != born.month]),
            rng.choice([d for d in range(1, 29) if d != born.day]),
        )
        if earliest <= wrong <= latest:
            return wrong


def another_given_name(rng: random.Random, given: str, names: Sequence[str]) -> str:
    """A name from `names` that the child is known by instead of `given` - a middle name, a
    preferred name - and that is not `given` in another form: no nickname of it, nor a name it is
    a nickname of, nor one sharing a full name with it (Millie and Mia, both Amelia)."""
    taken = _forms(given)
    return rng.choice([name for name in names if not _forms(name) & taken])


@functools.cache
def _forms(name: str) -> frozenset[str]:
    """The name, its short forms, and the full names it is a short form of."""
    full = {formal for formal, short in NICKNAMES.items() if name in short}
    return frozenset({name, *NICKNAMES.get(name, ()), *full})
