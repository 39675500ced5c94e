"""Candidate search (blocking): which of an agency's records could be the child a practitioner
described by name, date of birth and postcode, found in well under a millisecond.

The connector's job is recall with a bounded answer; the gateway's Fellegi-Sunter model, not the
connector, decides which candidate is the child. So the search is forgiving about how each detail
was keyed - names agree when spelt alike, when their Soundex codes agree or when one keying slip
apart; a date of birth also agrees read with day and month swapped; a family name also agrees with
a former family name, and a given name with a name the child is known by (on either side); given
and family name keyed into each other's boxes agree as both names - and strict about how many
details must agree: at least two of given name, family name, date of birth and full postcode.

A practitioner may know only some of the four (a family name and a date of birth, say; the
gateway refuses a search whose details could not link a record even if all agreed). A detail the
query does not give is one no record can agree with, so the rule is unchanged: two agreements
among the details given.

Why two. One agreeing detail is what a child shares with strangers: a neighbour's child has the
same postcode, a classmate may share the date of birth, and hundreds of children share a family
name. Returning them would send other children's details to the gateway for nothing, since no
linkage model can link on one detail. Two agreements keep every record that has drifted in at most
two details (a nickname and a house move, say) and still cut a city's records down to a handful,
mostly siblings at the same address. The price is that a record wrong in three of the four details
is not offered; the gateway could not have linked it safely either, and the practitioner is told
to refine the lookup.

The two names alone are not enough either: in a city, several children share a given and family
name, and a namesake born in another year and living elsewhere is another child. Names count
without the date of birth or postcode only when the date differs in just one part (day, month or
year), as a mistyped date does.

A child of no fixed abode is recorded, and searched for, with the postcode NFA, which agrees with
nothing: such a search has one detail fewer to agree on, and still needs two of them.

Swapped names count as two agreements, as the two names read the right way round do: "Hart
Amelia" for Amelia Hart is a common keying fault, and agreeing with both halves of it by chance
is as rare as agreeing with both names. The crossing is looked at only when the names as keyed
do not both agree, and is remembered per name like every name agreement; names that cannot agree
are told apart by one set operation (`_NameKeys.near`), so reading them crosswise costs a search
little.

Candidates are the union of three blocks: the records born on the query's date of birth (as given
and swapped), those at its postcode, and those whose given (or known-as) and family (current or
former) names have the query's Soundex codes, either way round. Every record agreeing on two
details by spelling or sound is in one of them. A name one slip away counts only for records
found through a block, so the one kind of record the rule would keep but the blocks miss agrees
on its date (one part off) and its two names, one of them misspelt beyond what Soundex absorbs.

A store too large to index in memory uses the same blocks as strings (`blocking_keys` per
record, `query_blocking_keys` per search) in an indexed table, fetches the records sharing one,
and ranks them with `rank_candidates` - the answer `CandidateIndex.search` would give
(connectors.sql does this in SQL).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from connectors.protocol import (
    KNOWN_AS_MAX,
    NO_FIXED_ABODE,
    ConnectorRecord,
    Demographics,
    Sex,
)

DEFAULT_LIMIT: Final = 10
"""Candidates returned at most per search: room for a child, their siblings and a namesake, and
still few enough that a search never turns into a list of the area's children."""

MIN_AGREEMENTS: Final = 2

# Ranking weights, by how rarely two different children agree on the detail by chance. A date of
# birth is shared with about one child in 6,500 in an area, a given or family name with one in a
# few hundred, so the date outweighs either name, even read swapped: the swap is a rare slip, but
# agreeing with it by chance is as rare as agreeing with the date. A postcode weighs least because
# siblings share it. A phonetic or one-slip name match is weaker evidence than an exact one. The
# postcode sector and sex only order candidates; they are too common to count as an agreement.
_EXACT_DATE: Final = 6
_SWAPPED_DATE: Final = 5
_EXACT_NAME: Final = 4
_PHONETIC_NAME: Final = 3
_SLIPPED_NAME: Final = 2
# Below three letters every name is one slip from dozens of others ("Al", "Ali", "Ai").
_MIN_SLIPPED_LENGTH: Final = 3
# A name is keyed by its first 100 characters, the most a search can give (the protocol's
# `Demographics` caps each name there), so no real name loses anything; one stored name of
# thousands of characters (bad upstream data) then costs what a long real name costs.
_MAX_NAME_LENGTH: Final = 100
# A spelling longer than this has no one-slip forms: it is n strings of n-1 letters, so they
# must stay short, and a spelling this long is not one a search types. Twice the name length,
# since folding accents and ligatures lengthens a name ("ß" is "ss").
_MAX_SLIPPED_LENGTH: Final = 2 * _MAX_NAME_LENGTH
# A record's other given names, and former family names, compared at most: four times the
# known-as names a search can give (`KNOWN_AS_MAX`), far more than a child has.
_RECORD_NAMES_MAX: Final = 4 * KNOWN_AS_MAX
_POSTCODE: Final = 3
_SECTOR: Final = 1
_SEX: Final = 1

_SOUNDEX_CODES: Final = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}
_SOUNDEX_SEPARATORS: Final = frozenset("aeiouy")


def soundex(name: str) -> str:
    """American Soundex of the letters a-z in `name`: "Robert" and "Rupert" are both "R163".

    Doubled letters, most vowel changes and many typing slips keep the code, which is what lets a
    misspelt name still agree and be found; a different first letter changes it, which the
    one-slip comparison and the date and postcode blocks make up for.
    Returns "" when `name` has no letter a-z.
    """
    letters = [c for c in name.lower() if "a" <= c <= "z"]
    if not letters:
        return ""
    code = letters[0].upper()
    previous = _SOUNDEX_CODES.get(letters[0], "")
    for letter in letters[1:]:
        digit = _SOUNDEX_CODES.get(letter)
        if digit is None:
            # A vowel separates two equal codes ("Tymczak": the z and the k both count); h and w
            # do not ("Ashcraft": the s and the c are one).
            if letter in _SOUNDEX_SEPARATORS:
                previous = ""
            continue
        if digit != previous:
            code += digit
            if len(code) == 4:
                return code
        previous = digit
    return code.ljust(4, "0")


@dataclass(frozen=True, slots=True, eq=False)
class _NameKeys:
    """The forms one name is compared by: normalised spellings, their Soundex codes, and the
    forms a keying slip leaves.

    Compared and hashed by identity: the index keeps one per distinct name, so identity is
    equality there, and hashing it costs nothing per candidate.
    """

    spellings: frozenset[str]
    codes: frozenset[str]
    near: frozenset[str]
    """The spellings, their codes, and each spelling of `_MIN_SLIPPED_LENGTH` to
    `_MAX_SLIPPED_LENGTH` letters with one letter dropped. Two names that agree in any way share
    one of these (two spellings one slip apart do: a letter replaced, or two swapped, drop to the
    same string; an added letter drops to the other spelling), so two that share none are told
    apart in one set operation, without comparing spellings pair by pair - and most names
    compared differ."""

    def agreement(self, other: _NameKeys) -> int:
        if self.near.isdisjoint(other.near):
            return 0
        if not self.spellings.isdisjoint(other.spellings):
            return _EXACT_NAME
        if not self.codes.isdisjoint(other.codes):
            return _PHONETIC_NAME
        for mine in self.spellings:
            for theirs in other.spellings:
                if _one_slip_apart(mine, theirs):
                    return _SLIPPED_NAME
        return 0


def _one_slip_apart(a: str, b: str) -> bool:
    """Whether two spellings are at most one keying slip apart: a letter replaced, dropped,
    added, or swapped with its neighbour ("Stevens", "Stecens"; "Barrett", "Abrrett")."""
    if abs(len(a) - len(b)) > 1 or min(len(a), len(b)) < _MIN_SLIPPED_LENGTH:
        return False
    if max(len(a), len(b)) > _MAX_SLIPPED_LENGTH:
        return False
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        replaced = a[i + 1 :] == b[i + 1 :]
        swapped = a[i : i + 2] == b[i : i + 2][::-1] and a[i + 2 :] == b[i + 2 :]
        return replaced or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]


def _query_name_keys(names: Iterable[str | None]) -> _NameKeys | None:
    """Keys for the names a query gives for one field, None when it gives none (a detail the
    practitioner did not know, which no record can agree with)."""
    given = tuple(name for name in names if name is not None)
    return _name_keys(given) if given else None


def _name_keys(names: Iterable[str]) -> _NameKeys:
    """Keys for one or more names of a person: "Anne-Marie" gives "annemarie", "anne" and "marie",
    so a record that kept only part of a double name still agrees.

    A spelling with no letter a-z (a name in another script) is its own code, so that every exact
    agreement is also a phonetic one and the name blocks never miss an exactly agreeing name.
    """
    spellings = {spelling for name in names for spelling in _spellings(name)}
    codes = {soundex(spelling) or spelling for spelling in spellings}
    dropped = {
        spelling[:i] + spelling[i + 1 :]
        for spelling in spellings
        if _MIN_SLIPPED_LENGTH <= len(spelling) <= _MAX_SLIPPED_LENGTH
        for i in range(len(spelling))
    }
    return _NameKeys(frozenset(spellings), frozenset(codes), frozenset(spellings | codes | dropped))


def _spellings(name: str) -> set[str]:
    """Case- and accent-free letters of the whole name and of each part of it ("Zoë O'Brien-Ng":
    "zoeobrienng", "zoe", "obrien", "ng"), from its first `_MAX_NAME_LENGTH` characters."""
    decomposed = unicodedata.normalize("NFKD", name[:_MAX_NAME_LENGTH].casefold())
    parts = [
        "".join(c for c in part if c.isalpha()) for part in decomposed.replace("-", " ").split()
    ]
    parts = [part for part in parts if part]
    whole = "".join(parts)
    return ({whole} | set(parts)) if whole else set()


def _postcode_keys(postcode: str) -> tuple[str | None, str | None]:
    """The postcode as "LS6 3AB" whatever its case and spacing, and its sector ("LS6 3"), which
    is None when too short to be a postcode. No fixed abode ("NFA") is no postcode at all: it is
    not a place two children can share, so it never agrees and blocks nothing."""
    compact = "".join(postcode.split()).upper()
    if compact == NO_FIXED_ABODE:
        return None, None
    if len(compact) < 5:
        return compact, None
    outward, inward = compact[:-3], compact[-3:]
    return f"{outward} {inward}", f"{outward} {inward[0]}"


def _swapped(born: date) -> date | None:
    """The date with day and month exchanged, when that is another real date."""
    if born.day > 12 or born.day == born.month:
        return None
    return born.replace(month=born.day, day=born.month)


@dataclass(frozen=True, slots=True)
class _Person:
    """What one record (or the query) says about who the child is, normalised for comparing."""

    given: _NameKeys | None
    family: _NameKeys | None
    born: date | None
    postcode: str | None
    sector: str | None
    sex: Sex | None

    def name_blocks(self) -> set[str]:
        if self.given is None or self.family is None:
            return set()
        return {f"{g}|{f}" for g in self.given.codes for f in self.family.codes}


class _Interner:
    """Shares one copy of equal keys across records: a city's records hold a few thousand
    distinct names, so the index keeps one copy of each rather than one per record."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, ...], _NameKeys] = {}
        self._postcodes: dict[str, tuple[str | None, str | None]] = {}

    def name(self, names: tuple[str, ...]) -> _NameKeys:
        keys = self._names.get(names)
        if keys is None:
            keys = self._names[names] = _name_keys(names)
        return keys

    def postcode(self, postcode: str) -> tuple[str | None, str | None]:
        keys = self._postcodes.get(postcode)
        if keys is None:
            keys = self._postcodes[postcode] = _postcode_keys(postcode)
        return keys


def _describe(record: ConnectorRecord, interner: _Interner) -> _Person:
    """What is compared of a record: its name with the first `_RECORD_NAMES_MAX` other names of
    each kind - a record holding thousands (bad upstream data) would otherwise be filed under,
    and compared by, every pair of them."""
    name, address = record.name, record.address
    postcode, sector = (None, None) if address is None else interner.postcode(address.postcode)
    return _Person(
        given=None
        if name is None
        else interner.name((name.given, *name.known_as[:_RECORD_NAMES_MAX])),
        family=None
        if name is None
        else interner.name((name.family, *name.former_family[:_RECORD_NAMES_MAX])),
        born=record.date_of_birth,
        postcode=postcode,
        sector=sector,
        sex=record.sex,
    )


class _Scorer:
    """Weighs candidates against one query.

    Name agreements are remembered per name: the index shares one `_NameKeys` per distinct name,
    and the children born on one day share far fewer names than there are of them.
    """

    def __init__(self, demographics: Demographics) -> None:
        given = (demographics.given, *demographics.known_as)
        family = (demographics.family, demographics.former_family)
        postcode = demographics.postcode
        postcode_keys = (None, None) if postcode is None else _postcode_keys(postcode)
        born = demographics.date_of_birth
        self.person = _Person(
            given=_query_name_keys(given),
            family=_query_name_keys(family),
            born=born,
            postcode=postcode_keys[0],
            sector=postcode_keys[1],
            sex=demographics.sex,
        )
        self.swapped_born = None if born is None else _swapped(born)
        self._given_levels: dict[_NameKeys, int] = {}
        self._family_levels: dict[_NameKeys, int] = {}
        # The query's family name against a record's given name, and its given name against a
        # record's family name: the two halves of a swap.
        self._crossed_given_levels: dict[_NameKeys, int] = {}
        self._crossed_family_levels: dict[_NameKeys, int] = {}

    def name_blocks(self) -> set[str]:
        """The name blocks a record agreeing on both names would be in: its given and family
        names sounding like the query's, or like the query's family and given names (swapped)."""
        given, family = self.person.given, self.person.family
        if given is None or family is None:
            return set()
        return {f"{g}|{f}" for g in given.codes for f in family.codes} | {
            f"{f}|{g}" for g in given.codes for f in family.codes
        }

    def weight(self, candidate: _Person) -> int | None:
        """How strongly `candidate` agrees with the query, for ranking; None when it is no
        candidate: fewer than two details agree, or only the two names do and the date of birth
        differs in more than one part (see `_near_date`). A record that holds no date of birth
        cannot differ on it: when only the names agree it is still a candidate (a family that
        moved, from a source that never had the date), which the gateway weighs on the rest."""
        wanted = self.person
        given = self._name_level(wanted.given, candidate.given, self._given_levels)
        family = self._name_level(wanted.family, candidate.family, self._family_levels)
        if not (given and family):
            given, family = self._swap_if_closer(candidate, given, family)
        levels = (
            self._date_level(candidate.born),
            _POSTCODE
            if candidate.postcode is not None and candidate.postcode == wanted.postcode
            else 0,
            given,
            family,
        )
        if len(levels) - levels.count(0) < MIN_AGREEMENTS:
            return None
        names_only = not (levels[0] or levels[1])
        undated = candidate.born is None and wanted.born is not None
        if names_only and not (undated or self._near_date(candidate.born)):
            return None
        weight = sum(levels)
        same_sector = wanted.sector is not None and candidate.sector == wanted.sector
        if same_sector and candidate.postcode != wanted.postcode:
            weight += _SECTOR
        if candidate.sex is not None and candidate.sex == wanted.sex:
            weight += _SEX
        return weight

    def _swap_if_closer(self, candidate: _Person, given: int, family: int) -> tuple[int, int]:
        """The two name levels read crosswise when that makes both agree (given and family keyed
        into each other's boxes), else as they are. Looked at only when the names as keyed do
        not both agree, and the second half only when the first holds."""
        wanted = self.person
        crossed_given = self._name_level(wanted.family, candidate.given, self._crossed_given_levels)
        if not crossed_given:
            return given, family
        crossed_family = self._name_level(
            wanted.given, candidate.family, self._crossed_family_levels
        )
        if not crossed_family:
            return given, family
        return crossed_given, crossed_family

    @staticmethod
    def _name_level(
        wanted: _NameKeys | None, held: _NameKeys | None, known: dict[_NameKeys, int]
    ) -> int:
        if wanted is None or held is None:
            return 0
        level = known.get(held)
        if level is None:
            level = known[held] = wanted.agreement(held)
        return level

    def _date_level(self, born: date | None) -> int:
        if born is None:
            return 0
        if born == self.person.born:
            return _EXACT_DATE
        return _SWAPPED_DATE if born == self.swapped_born else 0

    def _near_date(self, born: date | None) -> bool:
        """Whether `born` differs from the query's date of birth in just one of day, month and
        year: one mistyped part, the kind of date a linkage model still scores as close."""
        wanted = self.person.born
        if born is None or wanted is None:
            return False
        same = (born.year == wanted.year) + (born.month == wanted.month) + (born.day == wanted.day)
        return same == 2


class CandidateIndex:
    """The records of one agency, indexed for candidate search by demographics.

    Build it once over all records (at start-up, like any index) and call `search` per lookup. It
    works on `ConnectorRecord`s only, so any backend can use it: one whose records live in a
    database can index slim records (record_id, name, date_of_birth, sex, address) and fetch the
    full record for each candidate by record_id.

    Shielded and restricted records are candidates like any other, and come back with their
    flags: the gateway must see them to keep them hidden the same way whichever way the child was
    looked up. Leaving them out here would make "not found" depend on the shield, which is itself
    a disclosure.

    Names (case and accents ignored) and postcodes (case and spacing ignored) are normalised
    inside the index, so records need not be cleaned first.
    """

    def __init__(self, records: Sequence[ConnectorRecord]) -> None:
        """Index `records`; among equally strong candidates, their order is the answer's order."""
        interner = _Interner()
        self._records = tuple(records)
        self._people = [_describe(record, interner) for record in self._records]
        by_birth: defaultdict[date, list[int]] = defaultdict(list)
        by_postcode: defaultdict[str, list[int]] = defaultdict(list)
        by_name: defaultdict[str, list[int]] = defaultdict(list)
        for position, person in enumerate(self._people):
            if person.born is not None:
                by_birth[person.born].append(position)
            if person.postcode is not None:
                by_postcode[person.postcode].append(position)
            for block in person.name_blocks():
                by_name[block].append(position)
        self._by_birth = dict(by_birth)
        self._by_postcode = dict(by_postcode)
        self._by_name = dict(by_name)

    def search(
        self, demographics: Demographics, limit: int = DEFAULT_LIMIT
    ) -> list[ConnectorRecord]:
        """Records agreeing with `demographics` on at least two of given name, family name, date
        of birth and postcode (two names only with a date of birth one part off, or none held);
        strongest agreement first, then in index order; at most `limit`. Details `demographics`
        leaves out agree with nothing: a search giving fewer than two finds no one.

        Raises ValueError when `limit` is less than 1.
        """
        _check_limit(limit)
        scorer = _Scorer(demographics)
        positions = self._blocks(scorer)
        return _ranked(scorer, ((p, self._people[p]) for p in positions), self._records, limit)

    def _blocks(self, query: _Scorer) -> set[int]:
        """Positions in any block the query falls in: its date of birth as given and swapped, its
        postcode, and each phonetic pair of its given (or known-as) and (current or former)
        family names, either way round. A detail the query does not give blocks nothing."""
        person = query.person
        positions: set[int] = set()
        for born in (person.born, query.swapped_born):
            if born is not None:
                positions.update(self._by_birth.get(born, ()))
        if person.postcode is not None:
            positions.update(self._by_postcode.get(person.postcode, ()))
        for block in query.name_blocks():
            positions.update(self._by_name.get(block, ()))
        return positions


def blocking_keys(record: ConnectorRecord) -> set[str]:
    """The blocks `record` is in, as strings a database can index: its date of birth, its
    normalised postcode and each Soundex pair of its given (or known-as) and family (current or
    former) names - the same blocks `CandidateIndex` files it under.

    A store too large to hold in memory keeps these in an indexed table, and fetches for a query
    only the records sharing one of `query_blocking_keys(demographics)`; ranking those with
    `rank_candidates` then finds exactly what `CandidateIndex.search` would.
    """
    person = _describe(record, _Interner())
    return _block_strings((person.born,), person.postcode, person.name_blocks())


def query_blocking_keys(demographics: Demographics) -> set[str]:
    """The blocks a search for `demographics` looks in: its date of birth as given and with day
    and month swapped, its postcode, and the Soundex pairs of its names either way round. Empty
    when the query gives none of them (then no record can be a candidate)."""
    scorer = _Scorer(demographics)
    person = scorer.person
    return _block_strings((person.born, scorer.swapped_born), person.postcode, scorer.name_blocks())


def rank_candidates(
    demographics: Demographics,
    records: Sequence[ConnectorRecord],
    limit: int = DEFAULT_LIMIT,
) -> list[ConnectorRecord]:
    """The candidates among `records` for `demographics`, strongest first and then in the order
    given, at most `limit`: the rule and ranking of `CandidateIndex.search`, applied to records
    already fetched by their blocks (see `blocking_keys`) rather than to a whole index.

    Raises ValueError when `limit` is less than 1.
    """
    _check_limit(limit)
    scorer = _Scorer(demographics)
    interner = _Interner()
    people = ((position, _describe(r, interner)) for position, r in enumerate(records))
    return _ranked(scorer, people, records, limit)


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _ranked(
    scorer: _Scorer,
    people: Iterable[tuple[int, _Person]],
    records: Sequence[ConnectorRecord],
    limit: int,
) -> list[ConnectorRecord]:
    """The records whose people `scorer` weighs as candidates, heaviest first, ties in position
    order, at most `limit`."""
    ranked = []
    for position, person in people:
        weight = scorer.weight(person)
        if weight is not None:
            ranked.append((-weight, position))
    ranked.sort()
    return [records[position] for _, position in ranked[:limit]]


def _block_strings(
    births: Iterable[date | None], postcode: str | None, names: Iterable[str]
) -> set[str]:
    """Blocks as "born:2015-03-07", "postcode:LS6 3AB" and "names:A540|H630": the kind in front
    keeps a postcode from ever meeting a name code made of the same characters."""
    keys = {f"born:{born.isoformat()}" for born in births if born is not None}
    if postcode is not None:
        keys.add(f"postcode:{postcode}")
    keys.update(f"names:{block}" for block in names)
    return keys
