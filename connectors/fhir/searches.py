"""Turning what a practitioner knows about a child into PDS searches.

PDS accepts a fuzzy search (Soundex names, transposed names, previous names and addresses) only
with one of three sets of details - given name, family name and date of birth; family name, date
of birth, gender and postcode; given name, date of birth, gender and postcode - and a non-fuzzy one
with at least family name and date of birth. The gateway sends any of given, family, date of birth,
postcode, sex, former family name and known-as names, so the connector runs every fuzzy search the
details allow, each catching a different drift, and merges what they find:

1. given, family and date of birth - the child as described, wherever they live now. Postcode is
   deliberately left out: PDS never returns a restricted patient to a search naming a postcode,
   and the gateway must see restricted candidates to keep them hidden consistently.
2. family, date of birth, gender and postcode - the given name was keyed differently.
3. given, date of birth, gender and postcode - the family name changed.
4. given (and each known-as name) with the former family name, and each known-as name with the
   family name - a child known by another name.

When no fuzzy search is possible but family name and date of birth are known, one non-fuzzy
search with them (and the given name and gender when known) is made, searching history too.
Fewer details than that is no PDS search at all; `plan_searches` returns none and the backend says
so rather than answer "no record". Every search asks for at most `DEFAULT_LIMIT` results, so PDS
lists no more children than an answer may hold; a crowd of namesakes answers TOO_MANY_MATCHES, and
the backend asks again for more only then (`FhirBackend._search_once`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Final

from connectors.fhir.client import SearchParams
from connectors.protocol import NO_FIXED_ABODE, Demographics, Sex
from connectors.search import DEFAULT_LIMIT

MAX_SEARCHES: Final = 5
"""Most PDS searches one lookup makes: PDS audits each as an access to every patient it matches."""

Criteria = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PdsSearch:
    """One search of PDS: its criteria, and whether it is fuzzy."""

    criteria: Criteria
    fuzzy: bool = True

    def params(self, limit: int = DEFAULT_LIMIT) -> SearchParams:
        """The query parameters, asking for at most `limit` matches."""
        mode = ("_fuzzy-match", "true") if self.fuzzy else ("_history", "true")
        return (*self.criteria, mode, ("_max-results", str(limit)))


def plan_searches(demographics: Demographics) -> list[PdsSearch]:
    """The PDS searches for `demographics`, most telling first, without repeats; at most
    `MAX_SEARCHES`. Empty when PDS cannot be searched with what is known."""
    fuzzy = list(dict.fromkeys(_fuzzy(demographics)))[:MAX_SEARCHES]
    if fuzzy:
        return [PdsSearch(criteria) for criteria in fuzzy]
    d = demographics
    if d.family is None or d.date_of_birth is None:
        return []
    criteria: list[tuple[str, str]] = [("family", d.family), _birthdate(d.date_of_birth)]
    if d.given:
        criteria.append(("given", d.given))
    gender = _gender(d.sex)
    if gender:
        criteria.append(("gender", gender))
    return [PdsSearch(tuple(criteria), fuzzy=False)]


def _fuzzy(d: Demographics) -> Iterator[Criteria]:
    born, postcode, gender = d.date_of_birth, _postcode(d.postcode), _gender(d.sex)
    if born is None:
        return
    if d.given and d.family:
        yield _names(d.given, d.family, born)
    if gender and postcode:
        where = (_birthdate(born), ("gender", gender), ("address-postcode", postcode))
        if d.family:
            yield (("family", d.family), *where)
        if d.given:
            yield (("given", d.given), *where)
    if d.former_family:
        for given in (d.given, *d.known_as):
            if given:
                yield _names(given, d.former_family, born)
    if d.family:
        for known_as in d.known_as:
            yield _names(known_as, d.family, born)


def _names(given: str, family: str, born: date) -> Criteria:
    return (("given", given), ("family", family), _birthdate(born))


def _birthdate(born: date) -> tuple[str, str]:
    return ("birthdate", f"eq{born.isoformat()}")


def _postcode(postcode: str | None) -> str | None:
    """A postcode PDS can search by; "NFA" (no fixed abode) is not a place and is never sent."""
    if postcode is None or "".join(postcode.split()).upper() == NO_FIXED_ABODE:
        return None
    return postcode


def _gender(sex: Sex | None) -> str | None:
    """The search's gender: only female or male narrow a search; "unknown" searched as a gender
    would exclude every child whose gender is recorded."""
    return sex.value if sex in (Sex.FEMALE, Sex.MALE) else None
