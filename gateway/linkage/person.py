"""The attributes record linkage compares, normalised once so that scoring a pair is only lookups.

Every source spells names, postcodes and sexes its own way. A Person holds them in one form -
names case-folded without accents or punctuation, postcodes as "SW1A 1AA" - plus the keys the
comparisons need, so that a candidate compared with many others is normalised only once.

Values that say nothing about the child become None (and so compare as MISSING, weight 0) rather
than agreeing by accident: placeholder names such as "Baby" (two newborn twins registered as
"Baby Smith" would otherwise agree on everything), sex "unknown", and postcodes that are not UK
postcodes ("NFA" for no fixed abode would make every child without a home agree on postcode).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from connectors.protocol import ConnectorRecord, Demographics, Sex
from gateway.linkage.nicknames import equivalent_names, is_recognised

# Names a record holds when the real one is not known: never evidence that two records agree.
_PLACEHOLDER_NAMES: Final = frozenset(
    {
        "baby", "baby boy", "baby girl", "babyboy", "babygirl", "boy", "girl", "infant", "newborn",
        "twin", "twin a", "twin b", "twin one", "twin two", "unknown", "not known", "notknown",
        "nk", "unnamed", "no name", "x", "xx", "xxx", "test",
    }
)  # fmt: skip

# Words that start many unrelated family names; sharing one says nothing ("de Souza", "de Silva").
_FAMILY_PARTICLES: Final = frozenset(
    {
        "al", "bin", "binti", "da", "das", "de", "del", "della", "den", "der", "di", "dos", "du",
        "el", "la", "le", "mac", "mc", "st", "van", "von",
    }
)  # fmt: skip

# Straight, curly and backtick apostrophes, and the acute accent typed in their place.
_APOSTROPHES: Final = re.compile("['\u2019\u2018`\u00b4]")
_SEPARATORS: Final = re.compile(r"[\W\d_]+")
# Latin letters that Unicode does not decompose into a base letter and an accent (Łukasz, Søren).
_UNDECOMPOSED: Final = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "\u0131": "i",
        "þ": "th",
        "æ": "ae",
        "œ": "oe",
    }
)
_POSTCODE: Final = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")


@dataclass(frozen=True, slots=True)
class Person:
    """One record's (or one query's) identifying attributes, in the form linkage compares.

    The constructor normalises whatever it is given, so a Person built by hand compares exactly
    like one built from a record. Names keep their word breaks ("mary jane"); the comparison keys
    drop them, so "Mary-Jane", "Mary Jane" and "MaryJane" are the same name. `known_as` holds the
    other given names the child goes by (a preferred name, a short form), normalised like the
    given name, without placeholders, repeats or the given name itself. `address_lines` (the
    home before the postcode) and `carers` (parents' and carers' full names) only corroborate:
    they are read into `house` and `carer_keys`.
    """

    given: str | None
    family: str | None
    former_family: tuple[str, ...] = ()
    date_of_birth: date | None = None
    postcode: str | None = None
    sex: Sex | None = None
    known_as: tuple[str, ...] = ()
    address_lines: tuple[str, ...] = ()
    carers: tuple[str, ...] = ()

    given_key: str | None = field(init=False, repr=False, compare=False)
    given_recognised: bool = field(init=False, repr=False, compare=False)
    given_equivalents: frozenset[str] = field(init=False, repr=False, compare=False)
    family_key: str | None = field(init=False, repr=False, compare=False)
    family_parts: frozenset[str] = field(init=False, repr=False, compare=False)
    former_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    known_as_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    postcode_sector: str | None = field(init=False, repr=False, compare=False)
    postcode_district: str | None = field(init=False, repr=False, compare=False)
    house: House | None = field(init=False, repr=False, compare=False)
    carer_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = normalise_name(self.given)
        family = normalise_name(self.family)
        former = tuple(
            name for name in map(normalise_name, self.former_family) if name and name != family
        )
        given_key = _key(given)
        known_as = tuple(
            dict.fromkeys(
                name
                for name in map(normalise_name, self.known_as)
                if name and _key(name) != given_key
            )
        )
        postcode = normalise_postcode(self.postcode)
        family_key = _key(family)
        values = {
            "given": given,
            "family": family,
            "former_family": former,
            "postcode": postcode,
            "sex": None if self.sex is Sex.UNKNOWN else self.sex,
            "given_key": given_key,
            "given_recognised": is_recognised(given_key) if given_key else False,
            "given_equivalents": equivalent_names(given_key) if given_key else frozenset(),
            "family_key": family_key,
            "family_parts": _parts(family),
            "former_keys": frozenset(name.replace(" ", "") for name in former),
            "known_as": known_as,
            "known_as_keys": frozenset(name.replace(" ", "") for name in known_as),
            "postcode_sector": postcode[:-2] if postcode else None,
            "postcode_district": postcode[:-4] if postcode else None,
            "house": House.of(self.address_lines),
            "carer_keys": _carer_keys(self.carers),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_record(cls, record: ConnectorRecord) -> Person:
        """The linkage view of a connector record; fields the source did not send are missing."""
        name = record.name
        return cls(
            given=name.given if name else None,
            family=name.family if name else None,
            former_family=tuple(name.former_family) if name else (),
            date_of_birth=record.date_of_birth,
            postcode=record.address.postcode if record.address else None,
            sex=record.sex,
            known_as=tuple(name.known_as) if name else (),
            address_lines=tuple(record.address.lines) if record.address else (),
            carers=tuple(carer.name for carer in record.carers or ()),
        )

    @classmethod
    def from_demographics(
        cls,
        demographics: Demographics,
        *,
        address_lines: tuple[str, ...] = (),
        carers: tuple[str, ...] = (),
    ) -> Person:
        """The linkage view of a practitioner's demographic query; details not given are
        missing. Address lines and carers' names, if the practitioner gave them, never leave the
        gateway, so they are not part of the `Demographics` sent to connectors."""
        former = demographics.former_family
        return cls(
            given=demographics.given,
            family=demographics.family,
            former_family=(former,) if former else (),
            date_of_birth=demographics.date_of_birth,
            postcode=demographics.postcode,
            sex=demographics.sex,
            known_as=tuple(demographics.known_as),
            address_lines=address_lines,
            carers=carers,
        )


@dataclass(frozen=True, slots=True)
class House:
    """Which house an address is, in the form address comparison needs: its numbers (house and
    flat) and the distinctive words of its street, or, for a house with a name and no number,
    the words of its first line.

    Only the lines that hold a number (and the line after a line that is only a number, "Flat
    2" then "12 Church Road" as two lines) give street words: the district and town lines say
    nothing about which house, and every child in a town shares them. Words for a part of a
    building ("Flat") are left out, and the usual abbreviations read as the word ("Rd", "Ave").
    """

    numbers: frozenset[str]
    words: frozenset[str]

    @classmethod
    def of(cls, lines: tuple[str, ...]) -> House | None:
        """The house of these address lines, or None when they do not name one."""
        if not lines:
            return None
        numbers: set[str] = set()
        words: set[str] = set()
        named: list[str] = []
        take_next = False
        for line in _fold("\n".join(lines)).split("\n"):
            tokens = [_ADDRESS_ABBREVIATIONS.get(w, w) for w in _ADDRESS_TOKEN.findall(line)]
            held = {w for w in tokens if not w.isalpha()}
            distinctive = {w for w in tokens if w.isalpha() and w not in _UNIT_WORDS}
            if held or take_next:
                words |= distinctive
            if not named and tokens:
                named = [w for w in tokens if w not in _UNIT_WORDS]
            numbers |= held
            take_next = bool(held) and not distinctive
        if numbers:
            return cls(frozenset(numbers), frozenset(words))
        return cls(frozenset(), frozenset(named)) if named else None

    def same_as(self, other: House) -> bool | None:
        """Whether two addresses are one house; None when they cannot be compared (one has a
        number and the other only a house name).

        Numbers agree when one address's numbers are all in the other's: "12 Church Road" and
        "Flat 3, 12 Church Road" are one building, as far as a child's home goes. A street word
        must agree as well, so that "12 Church Road" is not "12 Mill Lane".
        """
        if bool(self.numbers) != bool(other.numbers):
            return None
        if not self.numbers:
            return self.words == other.words
        nested = self.numbers <= other.numbers or other.numbers <= self.numbers
        return nested and not self.words.isdisjoint(other.words)


# Words that name a part of a building, not the street: "Flat 2" says which door, not where.
_UNIT_WORDS: Final = frozenset({"flat", "apartment", "unit", "room", "floor", "the", "of", "and"})
_ADDRESS_ABBREVIATIONS: Final = {
    "rd": "road", "st": "street", "ln": "lane", "ave": "avenue", "av": "avenue", "cl": "close",
    "cres": "crescent", "cresc": "crescent", "dr": "drive", "gr": "grove", "gro": "grove",
    "ter": "terrace", "terr": "terrace", "gdns": "gardens", "pl": "place", "sq": "square",
    "ct": "court", "apt": "apartment", "mt": "mount",
}  # fmt: skip
_ADDRESS_TOKEN: Final = re.compile(r"[a-z0-9]+")


def _carer_keys(names: tuple[str, ...]) -> frozenset[str]:
    """Carers' full names as keys ("Sophie O'Kafor" -> "sophieokafor"); a name of one word
    ("Mum", "Sophie") names nobody in particular and is left out."""
    keys = set()
    for raw in names:
        name = normalise_name(raw)
        if name is not None and " " in name:
            keys.add(name.replace(" ", ""))
    return frozenset(keys)


def normalise_name(raw: str | None) -> str | None:
    """Case-folded words without accents: "Zoë O'Brien-Smith" -> "zoe obrien smith".

    Apostrophes join (O'Brien is one word), every other non-letter separates, and a placeholder
    name such as "Baby" or "Unknown" is no name at all.
    """
    if raw is None:
        return None
    words = _SEPARATORS.sub(" ", _fold(raw)).split()
    name = " ".join(words)
    if not name or name in _PLACEHOLDER_NAMES:
        return None
    return name


def _fold(text: str) -> str:
    """Case-folded, apostrophes dropped, accents taken off their letters."""
    text = _APOSTROPHES.sub("", text).casefold()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
        text = text.translate(_UNDECOMPOSED)
    return text


def normalise_postcode(raw: str | None) -> str | None:
    """A UK postcode as "LS6 1AB" (any case or spacing accepted), or None if it is not one."""
    if raw is None:
        return None
    compact = "".join(raw.split()).upper()
    match = _POSTCODE.match(compact)
    if match is None:
        return None
    return f"{match[1]} {match[2]}"


def _key(name: str | None) -> str | None:
    return name.replace(" ", "") if name else None


def _parts(family: str | None) -> frozenset[str]:
    """The words of a family name that can identify it on their own (for double-barrelled and
    hyphenated names): not initials, not particles such as "de" or "van"."""
    if family is None:
        return frozenset()
    return frozenset(
        word for word in family.split() if len(word) > 1 and word not in _FAMILY_PARTICLES
    )
