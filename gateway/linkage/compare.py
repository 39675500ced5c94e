"""Comparison levels: how closely two people agree on each field, before any weighting.

Each function puts a pair of values in exactly one level, trying the strongest level first, and
is symmetric: which side is the query and which the record never matters. A value missing on
either side is MISSING, which the model weighs as 0 - absence is not evidence either way.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from connectors.protocol import Sex
from gateway.linkage.nicknames import equivalent_names, is_recognised
from gateway.linkage.person import Person


class Level(StrEnum):
    EXACT = "EXACT"
    NICKNAME = "NICKNAME"
    SWAPPED = "SWAPPED"
    FORMER = "FORMER"
    PARTIAL = "PARTIAL"
    JW_HIGH = "JW_HIGH"
    JW_MEDIUM = "JW_MEDIUM"
    TRANSPOSED = "TRANSPOSED"
    ONE_OFF = "ONE_OFF"
    FULL = "FULL"
    SECTOR = "SECTOR"
    DISTRICT = "DISTRICT"
    SAME_HOUSE = "SAME_HOUSE"
    ACROSS_FAMILIES = "ACROSS_FAMILIES"
    SAME = "SAME"
    DIFFERENT = "DIFFERENT"
    MISSING = "MISSING"


FIELD_LEVELS: Final[dict[str, tuple[Level, ...]]] = {
    "given": (
        Level.EXACT,
        Level.NICKNAME,
        Level.SWAPPED,
        Level.JW_HIGH,
        Level.JW_MEDIUM,
        Level.DIFFERENT,
    ),
    "family": (
        Level.EXACT,
        Level.FORMER,
        Level.SWAPPED,
        Level.PARTIAL,
        Level.JW_HIGH,
        Level.JW_MEDIUM,
        Level.DIFFERENT,
    ),
    "date_of_birth": (Level.EXACT, Level.TRANSPOSED, Level.ONE_OFF, Level.DIFFERENT),
    "postcode": (Level.FULL, Level.SECTOR, Level.DISTRICT, Level.DIFFERENT),
    "sex": (Level.SAME, Level.DIFFERENT),
    "address": (Level.SAME_HOUSE, Level.DIFFERENT),
    "carer": (Level.SAME, Level.ACROSS_FAMILIES, Level.DIFFERENT),
}
"""The levels each field's weights must be configured for, strongest first (MISSING is always 0)."""

TWIN_LEVELS: Final = (Level.JW_MEDIUM, Level.DIFFERENT)
"""Given-name levels that cannot tell a slip or another recorded name from a twin: weighed by
the stricter `[given.twins]` weights when the lookup has twins in view (gateway.match)."""

_STRONG_GIVEN: Final = frozenset({Level.EXACT, Level.NICKNAME, Level.JW_HIGH})

HOUSEHOLD_FAMILY_LEVELS: Final = frozenset(
    {Level.EXACT, Level.FORMER, Level.PARTIAL, Level.JW_HIGH}
)
"""Family-name levels that, with a full postcode, mark one household: siblings agree this way,
or one slip apart."""


@dataclass(frozen=True)
class Similarity:
    """Jaro-Winkler cut-offs for one name field: at or above `high` is JW_HIGH, at or above
    `medium` JW_MEDIUM, below it DIFFERENT."""

    high: float
    medium: float

    def level(self, a: str, b: str) -> Level:
        return self._level(JaroWinkler.similarity(a, b, score_cutoff=self.medium))

    def closest_level(
        self, a: str, a_equivalents: Collection[str], b: str, b_equivalents: Collection[str]
    ) -> Level:
        """The level of `a` against `b`, or of a name with no equivalents against the other's
        equivalents if that is closer: a slip for a short form ("Bikl") is close to the full
        name (William) through it (Bill)."""
        best = JaroWinkler.similarity(a, b, score_cutoff=self.medium)
        if b_equivalents and not a_equivalents:
            best = max(best, self._closest(a, b_equivalents))
        if a_equivalents and not b_equivalents:
            best = max(best, self._closest(b, a_equivalents))
        return self._level(best)

    def _closest(self, name: str, candidates: Collection[str]) -> float:
        match = process.extractOne(
            name, candidates, scorer=JaroWinkler.similarity, score_cutoff=self.medium
        )
        return 0.0 if match is None else float(match[1])

    def _level(self, similarity: float) -> Level:
        if similarity >= self.high:
            return Level.JW_HIGH
        if similarity >= self.medium:
            return Level.JW_MEDIUM
        return Level.DIFFERENT


def given_level(a: Person, b: Person, similarity: Similarity) -> Level:
    """EXACT; NICKNAME when one name stands for the other (Bob, Robert); otherwise, if either
    name is not one we recognise (most likely a keying slip), how close the spellings are.

    A name one side records as a name the child is known by ("known as") agrees like a short
    form: NICKNAME, when it is the other side's given name or one of its short forms.

    Two recognised names that are not equivalent are DIFFERENT however alike they look: Ella and
    Bella, Oliver and Olivia are names parents give to twins. For the same reason, when both
    sexes are known and differ only an exact name agrees: Alex and Alexandra, Sam and Samantha.
    """
    if a.given_key is None or b.given_key is None:
        return Level.MISSING
    if a.given_key == b.given_key:
        return Level.EXACT
    if a.sex is not None and b.sex is not None and a.sex != b.sex:
        return Level.DIFFERENT
    if b.given_key in a.given_equivalents or _known_as(a, b) or _known_as(b, a):
        return Level.NICKNAME
    if a.given_recognised and b.given_recognised:
        return Level.DIFFERENT
    return similarity.closest_level(
        a.given_key, a.given_equivalents, b.given_key, b.given_equivalents
    )


def _known_as(a: Person, b: Person) -> bool:
    """Whether a name `a` is known by is `b`'s given name, one of its forms, or a name `b` is
    known by too."""
    assert b.given_key is not None
    names = {b.given_key, *b.given_equivalents, *b.known_as_keys}
    return not a.known_as_keys.isdisjoint(names)


def name_levels(
    a: Person, b: Person, given_similarity: Similarity, family_similarity: Similarity
) -> tuple[Level, Level]:
    """The given and family name levels of a pair, with given and family names read crosswise
    when that fits far better: "Smith John" keyed for John Smith is SWAPPED on both fields.

    Only a pair whose given names do not already agree is read crosswise, and both crossings
    must hold (each at JW_HIGH or better, so a slip on top of the swap still counts): one name
    in the wrong box is a coincidence, both is the swap. A crossing obeys the given-name rules:
    a short form crosses for its name, two recognised names that are not one name never cross on
    looks alone (Alexandra is not Alexander), and across known, different sexes only the exact
    name does.
    """
    given = given_level(a, b, given_similarity)
    family = family_level(a, b, family_similarity)
    if given in _STRONG_GIVEN or family is Level.EXACT:
        return given, family
    exact_only = a.sex is not None and b.sex is not None and a.sex != b.sex
    if _crosses(a.given_key, b.family_key, given_similarity, exact_only) and _crosses(
        a.family_key, b.given_key, given_similarity, exact_only
    ):
        return Level.SWAPPED, Level.SWAPPED
    return given, family


def _crosses(x: str | None, y: str | None, similarity: Similarity, exact_only: bool) -> bool:
    """Whether a name in one box agrees with the name in the other side's other box: the same
    name, one of its forms (Olly keyed in the family box for Oliver), or a slip of it."""
    if x is None or y is None:
        return False
    if x == y:
        return True
    if exact_only:
        return False
    if y in equivalent_names(x):
        return True
    if is_recognised(x) and is_recognised(y):
        return False
    return similarity.level(x, y) is Level.JW_HIGH


def family_level(a: Person, b: Person, similarity: Similarity) -> Level:
    """EXACT; FORMER when one side's current name is a former name on the other (a change a
    stale copy missed); PARTIAL when a double-barrelled name shares a part with the other;
    otherwise how close the spellings are."""
    if a.family_key is None or b.family_key is None:
        return Level.MISSING
    if a.family_key == b.family_key:
        return Level.EXACT
    if a.family_key in b.former_keys or b.family_key in a.former_keys:
        return Level.FORMER
    if a.family_parts & b.family_parts:
        return Level.PARTIAL
    return similarity.level(a.family_key, b.family_key)


def date_level(a: date | None, b: date | None) -> Level:
    """TRANSPOSED is the date read the other way round (4 March as 3 April); ONE_OFF, exactly
    one of day, month and year differing, is how a single keying slip in a date shows."""
    if a is None or b is None:
        return Level.MISSING
    if a == b:
        return Level.EXACT
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return Level.TRANSPOSED
    if (a.year != b.year) + (a.month != b.month) + (a.day != b.day) == 1:
        return Level.ONE_OFF
    return Level.DIFFERENT


def postcode_level(a: Person, b: Person) -> Level:
    if a.postcode is None or b.postcode is None:
        return Level.MISSING
    if a.postcode == b.postcode:
        return Level.FULL
    if a.postcode_sector == b.postcode_sector:
        return Level.SECTOR
    if a.postcode_district == b.postcode_district:
        return Level.DISTRICT
    return Level.DIFFERENT


def address_level(
    a: Person, b: Person, postcode: Level, family: Level, *, siblings_ruled_out: bool = False
) -> Level:
    """SAME_HOUSE when the address lines name one house (person.House.same_as) and that says
    more than the postcode and family name already did; DIFFERENT only for two houses within
    one postcode.

    The address is weighed for what it adds: a postcode covers some fifteen homes, and the house
    tells a namesake three doors down from the child, carries a record whose postcode was keyed
    wrong, or a family whose name changed. But two children of one family name at one postcode
    are a household, and share the house: there the house cannot tell the child from a brother
    (and a brother recorded under the child's given name, with his own date of birth, would
    otherwise link) - MISSING, unless `siblings_ruled_out`: the lookup has seen the household's
    other children and the record is none of them (gateway.match). Two different houses in two
    different postcodes are one move, which the postcode has already counted: MISSING too, not a
    second penalty.
    """
    if a.house is None or b.house is None:
        return Level.MISSING
    same = a.house.same_as(b.house)
    if same:
        household = postcode is Level.FULL and family in HOUSEHOLD_FAMILY_LEVELS
        return Level.MISSING if household and not siblings_ruled_out else Level.SAME_HOUSE
    if same is None or postcode is not Level.FULL:
        return Level.MISSING
    return Level.DIFFERENT


def carer_level(a: Person, b: Person, postcode: Level, family: Level) -> Level:
    """SAME when the two share a parent or carer (by full name) and do not share a postcode -
    ACROSS_FAMILIES when the children's own family names do not agree; DIFFERENT when both name
    carers and none is shared.

    A carer is weighed for what it adds: at one postcode, a shared parent says what the postcode
    said already (one household, and twins and siblings share both). Where the postcodes differ,
    it tells a family that moved from a stranger elsewhere - and how much depends on the family
    name. Carers mostly bear the child's family name, so between children of one family name a
    shared carer is a shared given name; between children whose family names differ (a name
    change one record missed) the carer's whole name is the evidence.
    """
    if not a.carer_keys or not b.carer_keys:
        return Level.MISSING
    if a.carer_keys.isdisjoint(b.carer_keys):
        return Level.DIFFERENT
    if postcode is Level.FULL:
        return Level.MISSING
    return Level.SAME if family in HOUSEHOLD_FAMILY_LEVELS else Level.ACROSS_FAMILIES


def sex_level(a: Sex | None, b: Sex | None) -> Level:
    if a is None or b is None:
        return Level.MISSING
    return Level.SAME if a == b else Level.DIFFERENT
