"""How copies of a child's details drift from the original, the way records keyed by hand do.

The health record stands for the NHS spine, which other agencies copy from with delay and by hand;
the education and social care copies are where names get misspelt, nicknames recorded, a day and
month swapped or a move missed. A linkage engine is only as good as the disagreement it was tested
on, so every fault here is one that real record linkage has to survive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from datetime import date
from typing import Final, Literal

NoiseLevel = Literal["none", "low", "medium", "high"]

# Neighbouring keys on a UK QWERTY keyboard: a slipped finger hits one of these.
_NEIGHBOURS: Final = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}  # fmt: skip


@dataclass(frozen=True)
class NoiseProfile:
    """How often a copied (education or social care) record disagrees with the health record.

    Each per-record rate is the chance that one copy shows that fault where the fault is possible:
    a nickname needs a name that has one, a day/month swap needs both parts to be 12 or less.
    `name_change` is per child: that share of children have changed family name, which a stale copy
    has missed. The two NHS-number rates are the share of copies that hold the number at all; a
    copy never holds a wrong one, because a wrong NHS number is a different child, not noise.
    """

    typo: float = 0.03
    nickname: float = 0.10
    swapped_day_month: float = 0.02
    moved_address: float = 0.06
    name_change: float = 0.02
    education_nhs_number: float = 0.35
    social_care_nhs_number: float = 0.70

    def __post_init__(self) -> None:
        for field in fields(self):
            rate = getattr(self, field.name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"NoiseProfile.{field.name} must be between 0 and 1, not {rate}")

    @classmethod
    def preset(cls, level: NoiseLevel) -> NoiseProfile:
        """A named profile: "none" for clean linkage, "medium" (the default) for realistic data,
        "high" to stress a matcher."""
        try:
            return _PRESETS[level]
        except KeyError:
            raise ValueError(
                f"unknown noise level {level!r}; use one of {sorted(_PRESETS)}"
            ) from None


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
    "high": NoiseProfile(
        typo=0.10,
        nickname=0.25,
        swapped_day_month=0.05,
        moved_address=0.15,
        name_change=0.05,
        education_nhs_number=0.15,
        social_care_nhs_number=0.50,
    ),
}


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


def swapped_day_month(born: date) -> date | None:
    """The date read the American way round, where that is a different, real date."""
    if born.day > 12 or born.day == born.month:
        return None
    return born.replace(month=born.day, day=born.month)
