"""How the sandbox's PDS matches a search, written from the published PDS search rules.

- Parameters: `family`, `given` (repeatable), `gender`, `birthdate` (`eq`/`ge`/`le`, repeatable for
  a range), `address-postcode`, `general-practitioner`, `_fuzzy-match`, `_exact-match`,
  `_history`, `_max-results` (1-50, default 50). Anything else is ADDITIONAL_PROPERTIES; a value
  in the wrong form is INVALID_VALUE; a combination PDS does not search by is INVALID_SEARCH_DATA.
- Non-fuzzy: at least family name and date of birth; names and postcodes may end in a wildcard
  (`*`, after at least two characters); previous names only with `_history`.
- Fuzzy: given, family and date of birth; or family or given with date of birth, gender and
  postcode. Names also agree by Soundex, transposed (given and family swapped), or as previous
  names; no wildcards. The registered GP is not searched on, but a mismatch lowers the score.
- Scores: every criterion that agrees exactly counts 1, less for a wildcard, part of a compound
  name, a previous name (0.9) or a Soundex or transposed name (0.8); the score is their mean, so
  1.0 is an exact match. `_exact-match` keeps only those.
- A search naming a postcode or GP never returns a restricted patient; a redacted one is never
  returned. More matches than `_max-results` is TOO_MANY_MATCHES.

Matching is deliberately simpler than the real service (no date ranges on death, no phone or
email, no address history beyond the current home): it needs to behave like PDS at the edges the
connector depends on, not to be PDS.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from connectors.fhir.terminology import PDS_MAX_RESULTS, SpineError
from connectors.search import soundex

EXACT: Final = 1.0
PARTIAL: Final = 0.9
"""A wildcard, one part of a compound name, or a previous name."""
PHONETIC: Final = 0.8
"""A Soundex or transposed name."""
GP_MISMATCH: Final = 0.5

_KNOWN: Final = frozenset(
    {
        "family",
        "given",
        "gender",
        "birthdate",
        "address-postcode",
        "general-practitioner",
        "_fuzzy-match",
        "_exact-match",
        "_history",
        "_max-results",
    }
)
_GENDERS: Final = frozenset({"male", "female", "other", "unknown"})
_DATE: Final = re.compile(r"^(eq|ge|le)?(\d{4}-\d{2}-\d{2})$")


class SearchRefused(Exception):
    """A search PDS would refuse, with its Spine code and diagnostics."""

    def __init__(self, code: SpineError, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.code = code
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Person:
    """What the sandbox's PDS searches one patient by."""

    nhs_number: str
    given: tuple[str, ...]
    family: str | None
    old_family: tuple[str, ...]
    gender: str | None
    born: date | None
    postcode: str | None
    gp: str | None
    restricted: bool


@dataclass(frozen=True)
class Query:
    """A parsed, valid PDS search."""

    family: str | None
    given: tuple[str, ...]
    gender: str | None
    born: tuple[tuple[str, date], ...]
    postcode: str | None
    gp: str | None
    fuzzy: bool
    exact: bool
    history: bool
    max_results: int

    @property
    def hides_restricted(self) -> bool:
        """PDS never returns a restricted patient to a search by location."""
        return self.postcode is not None or self.gp is not None


def parse_query(params: Sequence[tuple[str, str]]) -> Query:
    """The search `params` ask for; raises SearchRefused as PDS would refuse them."""
    unknown = sorted({name for name, _ in params} - _KNOWN)
    if unknown:
        raise SearchRefused(
            SpineError.ADDITIONAL_PROPERTIES, f"Unrecognised parameter {unknown[0]}"
        )
    if not params:
        raise SearchRefused(SpineError.INVALID_SEARCH_DATA, "No search parameters were provided")
    values: dict[str, list[str]] = {}
    for name, value in params:
        values.setdefault(name, []).append(value)

    def one(name: str) -> str | None:
        given = values.get(name, [])
        if len(given) > 1:
            raise SearchRefused(SpineError.INVALID_VALUE, f"Parameter {name} given more than once")
        return given[0].strip() if given and given[0].strip() else None

    gender = one("gender")
    if gender is not None and gender not in _GENDERS:
        raise SearchRefused(
            SpineError.INVALID_VALUE, f"Invalid value - '{gender}' in field 'gender'"
        )
    query = Query(
        family=one("family"),
        given=tuple(v.strip() for v in values.get("given", []) if v.strip()),
        gender=gender,
        born=tuple(_birthdate(v) for v in values.get("birthdate", [])),
        postcode=one("address-postcode"),
        gp=one("general-practitioner"),
        fuzzy=_flag(one("_fuzzy-match"), "_fuzzy-match"),
        exact=_flag(one("_exact-match"), "_exact-match"),
        history=_flag(one("_history"), "_history"),
        max_results=_max_results(one("_max-results")),
    )
    _check_combination(query)
    return query


def score(query: Query, person: Person) -> float | None:
    """How well `person` matches `query` (1.0: exactly), or None when it does not match."""
    if query.hides_restricted and person.restricted:
        return None
    names = _names(query, person)
    if names is None:
        return None
    levels = list(names)
    for check in (_gender_level, _born_level, _postcode_level):
        level = check(query, person)
        if level is None:
            return None
        if level:
            levels.append(level)
    if query.gp is not None:
        agrees = person.gp is not None and person.gp.upper() == query.gp.upper()
        if not agrees and not query.fuzzy:
            return None  # a non-fuzzy search filters on the GP; a fuzzy one only scores it
        levels.append(EXACT if agrees else GP_MISMATCH)
    return round(sum(levels) / len(levels), 2) if levels else None


def _names(query: Query, person: Person) -> list[float] | None:
    """The levels at which the query's names agree (one per name given), or None."""
    history = query.fuzzy or query.history
    family = _family_level(query.family, person, history, query.fuzzy)
    given = [_given_level(g, person.given, query.fuzzy) for g in query.given]
    if family is None and all(given):
        return given
    if family and all(given):
        return [family, *given]
    if query.fuzzy and query.family and len(query.given) == 1:
        # Transposed: the family name searched is a given name, and the given name the family.
        crossed_family = _given_level(query.family, person.given, fuzzy=True)
        crossed_given = _family_level(query.given[0], person, history, fuzzy=True)
        if crossed_family and crossed_given:
            return [PHONETIC, PHONETIC]
    return None


def _family_level(wanted: str | None, person: Person, history: bool, fuzzy: bool) -> float | None:
    """The level at which the family name searched agrees (0: it does not), or None when none was
    searched. Previous names count only in a history (or fuzzy) search."""
    if wanted is None:
        return None
    current = _name_level(wanted, person.family, fuzzy) if person.family else 0.0
    if current or not history:
        return current
    former = max((_name_level(wanted, old, fuzzy) for old in person.old_family), default=0.0)
    return min(former, PARTIAL)


def _given_level(wanted: str, given: tuple[str, ...], fuzzy: bool) -> float:
    """The best level at which `wanted` agrees with the given names (singly, or all together as
    one compound name)."""
    candidates = (*given, " ".join(given)) if given else ()
    return max((_name_level(wanted, name, fuzzy) for name in candidates), default=0.0)


def _name_level(wanted: str, held: str, fuzzy: bool) -> float:
    want, have = _letters(wanted), _letters(held)
    if want.rstrip("*") == "" or have == "":
        return 0.0
    if "*" in want:
        pattern = "^" + ".*".join(re.escape(part) for part in want.split("*"))
        return PARTIAL if re.match(pattern, have) else 0.0
    if want == have:
        return EXACT
    parts = _parts(held)
    if fuzzy and want in parts:
        return PARTIAL
    if (
        fuzzy
        and soundex(want)
        and (soundex(want) == soundex(have) or any(soundex(want) == soundex(p) for p in parts))
    ):
        return PHONETIC
    return 0.0


def _gender_level(query: Query, person: Person) -> float | None:
    if query.gender is None:
        return 0.0
    return EXACT if person.gender == query.gender else None


def _born_level(query: Query, person: Person) -> float | None:
    if not query.born:
        return 0.0
    if person.born is None:
        return None
    born = person.born
    for prefix, day in query.born:
        if (prefix == "eq" and born != day) or (prefix == "ge" and born < day):
            return None
        if prefix == "le" and born > day:
            return None
    return EXACT


def _postcode_level(query: Query, person: Person) -> float | None:
    if query.postcode is None:
        return 0.0
    if person.postcode is None:
        return None
    want, have = _compact(query.postcode), _compact(person.postcode)
    if want.endswith("*"):
        return PARTIAL if have.startswith(want.rstrip("*")) else None
    return EXACT if want == have else None


def _check_combination(query: Query) -> None:
    names = [query.family, *query.given]
    has_wildcard = any("*" in name for name in names if name) or "*" in (query.postcode or "")
    if query.fuzzy:
        if has_wildcard:
            raise SearchRefused(
                SpineError.INVALID_SEARCH_DATA, "Wildcards cannot be used with a fuzzy search"
            )
        located = query.gender is not None and query.postcode is not None and bool(query.born)
        allowed = (query.given and query.family and query.born) or (
            located and (query.family or query.given)
        )
        if not allowed:
            raise SearchRefused(
                SpineError.INVALID_SEARCH_DATA,
                "Not enough search parameters were provided for a fuzzy search",
            )
        return
    if query.family is None or not query.born:
        raise SearchRefused(
            SpineError.INVALID_SEARCH_DATA,
            "Not enough search parameters were provided to be able to search",
        )
    for name in (n for n in names if n and "*" in n):
        if len(name.split("*", 1)[0]) < 2:
            raise SearchRefused(
                SpineError.INVALID_SEARCH_DATA, "Wildcards must follow at least two characters"
            )


def _birthdate(value: str) -> tuple[str, date]:
    found = _DATE.match(value.strip())
    try:
        if found is None:
            raise ValueError(value)
        return found.group(1) or "eq", date.fromisoformat(found.group(2))
    except ValueError:
        raise SearchRefused(
            SpineError.INVALID_VALUE, "Invalid value in field 'birthdate'; use [eq|ge|le]YYYY-MM-DD"
        ) from None


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise SearchRefused(SpineError.INVALID_VALUE, f"Invalid value in field '{name}'")
    return value.lower() == "true"


def _max_results(value: str | None) -> int:
    if value is None:
        return PDS_MAX_RESULTS
    if not value.isdigit() or not 1 <= int(value) <= PDS_MAX_RESULTS:
        raise SearchRefused(
            SpineError.INVALID_VALUE,
            f"Invalid value in field '_max-results'; 1 to {PDS_MAX_RESULTS}",
        )
    return int(value)


def _letters(name: str) -> str:
    """Case, accents, spaces and punctuation ignored, wildcards kept: "O'Brien" is "obrien"."""
    plain = unicodedata.normalize("NFKD", name.casefold())
    return "".join(c for c in plain if c.isalpha() or c == "*")


def _parts(name: str) -> set[str]:
    """The parts of a compound name: "Smith-Jones" is "smith" and "jones"."""
    return {_letters(part) for part in re.split(r"[\s\-]+", name) if _letters(part)}


def _compact(postcode: str) -> str:
    return "".join(postcode.split()).upper()
