"""How common each given and family name is, for term-frequency adjustment of exact name matches.

Two children called Oliver Smith say less than two called Ptolemy Featherstonehaugh. The model's
u for a name's EXACT level is an average over all names (the chance that two different children
share *some* name); for a pair agreeing on name x the right u is the chance that another child
has x, which is x's share of the records, f(x). Splink's term-frequency adjustment replaces one
by the other, as bits added to the EXACT weight:

    adjustment(x) = log2(u_EXACT / max(f(x), minimum_u))

positive for a name rarer than average, negative for a common one; the pair's EXACT weight
becomes log2(m / u_EXACT) + adjustment(x) = log2(m / f(x)).

A table built from one area's records must not show that one child with an unusual name lives
there. Names held by fewer than `minimum_count` records (default 5) therefore get no entry; all
the table says of an unlisted name is that fewer than that many records hold it, so its
frequency is taken at that bound, (minimum_count - 1) / records - the smallest adjustment the
table can vouch for - and never below 0 bits.

Keys are Person.given_key and Person.family_key (normalised, spaces dropped). A table is saved
as a small JSON file of counts (`save`, `load`); `adjustment_bits` is the one call the scorer
needs.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from gateway.linkage.person import Person

NAME_FIELDS: Final = ("given", "family")
DEFAULT_MINIMUM_COUNT: Final = 5
_FORMAT: Final = "childlookup-name-frequencies"
_VERSION: Final = 1


class FrequenciesError(ValueError):
    """A name-frequency file that cannot be used; the message names the file and the problem.

    A ValueError like LinkageConfigError, and not a subclass of it, so that model.py can import
    this module without a cycle."""


def adjustment_bits(average_u: float, frequency: float, minimum_u: float = 0.0) -> float:
    """Bits to add to an EXACT name weight for a name of this frequency (its share of records):
    log2(average_u / max(frequency, minimum_u)), where average_u is the EXACT level's u."""
    if not 0.0 < average_u <= 1.0:
        raise ValueError(f"average_u must be in (0, 1], not {average_u}")
    name_u = max(frequency, minimum_u)
    if not 0.0 < name_u <= 1.0:
        raise ValueError(
            f"a name's frequency must be in (0, 1] (or floored by minimum_u > 0), not {name_u}"
        )
    return math.log2(average_u / name_u)


@dataclass(frozen=True)
class NameFrequencies:
    """Per name field, how many records hold each name that at least `minimum_count` records
    hold, out of `records` records with that field present. Immutable; build it with
    `from_people` or `load`."""

    minimum_count: int
    records: Mapping[str, int]
    counts: Mapping[str, Mapping[str, int]]

    def __post_init__(self) -> None:
        _check(self.minimum_count, self.records, self.counts)
        object.__setattr__(self, "records", MappingProxyType(dict(self.records)))
        object.__setattr__(
            self,
            "counts",
            MappingProxyType({f: MappingProxyType(dict(self.counts[f])) for f in NAME_FIELDS}),
        )

    @classmethod
    def from_people(
        cls, people: Iterable[Person], minimum_count: int = DEFAULT_MINIMUM_COUNT
    ) -> NameFrequencies:
        """Count the given and family name keys of these people (one per record; a missing name
        is not counted), dropping names fewer than `minimum_count` of them hold."""
        given: Counter[str] = Counter()
        family: Counter[str] = Counter()
        for person in people:
            if person.given_key is not None:
                given[person.given_key] += 1
            if person.family_key is not None:
                family[person.family_key] += 1
        return cls(
            minimum_count=minimum_count,
            records={"given": given.total(), "family": family.total()},
            counts={
                name: {key: n for key, n in counter.items() if n >= minimum_count}
                for name, counter in (("given", given), ("family", family))
            },
        )

    def frequency(self, field: str, key: str) -> float | None:
        """The share of records holding this name, or None if the table does not list it."""
        count = self._counts(field).get(key)
        return None if count is None else count / self.records[field]

    def unlisted_frequency(self, field: str) -> float:
        """The most an unlisted name's share can be: fewer than minimum_count records hold it."""
        records = self.records[_known(field)]
        return max(self.minimum_count - 1, 1) / records if records else 1.0

    def adjustment_bits(
        self, field: str, key: str, average_u: float, *, minimum_u: float = 0.0
    ) -> float:
        """Bits to add to `field`'s EXACT weight for a pair agreeing exactly on name `key`, where
        `average_u` is that EXACT level's configured u. An unlisted name is taken at the table's
        bound for unlisted names, and never costs bits."""
        frequency = self.frequency(field, key)
        if frequency is not None:
            return adjustment_bits(average_u, frequency, minimum_u)
        return max(0.0, adjustment_bits(average_u, self.unlisted_frequency(field), minimum_u))

    def largest_adjustment_bits(
        self, field: str, average_u: float, *, minimum_u: float = 0.0
    ) -> float:
        """The most any exact match on `field` can gain: what a check such as "twins can never
        link" must add to the EXACT weight once this table is in use."""
        # Every listed name is held by at least minimum_count records: the bound for unlisted
        # names is the rarest a name can be.
        return max(0.0, adjustment_bits(average_u, self.unlisted_frequency(field), minimum_u))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "minimum_count": self.minimum_count,
                "records": dict(self.records),
                **{f: dict(sorted(self.counts[f].items())) for f in NAME_FIELDS},
            },
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> NameFrequencies:
        """Parse a table written by to_json; FrequenciesError says what is wrong with it."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FrequenciesError(f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise FrequenciesError("must be a JSON object")
        expected = {"format", "version", "minimum_count", "records", *NAME_FIELDS}
        unknown = sorted(set(data) - expected)
        if unknown:
            raise FrequenciesError(f"unknown key {unknown[0]!r}")
        missing = sorted(expected - set(data))
        if missing:
            raise FrequenciesError(f"{missing[0]!r} is missing")
        if data["format"] != _FORMAT or data["version"] != _VERSION:
            raise FrequenciesError(
                f"not a name-frequency table of version {_VERSION} (format {data['format']!r}, "
                f"version {data['version']!r})"
            )
        return cls(
            minimum_count=data["minimum_count"],
            records=data["records"],
            counts={f: data[f] for f in NAME_FIELDS},
        )

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> NameFrequencies:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FrequenciesError(f"{path}: cannot read name-frequency table: {exc}") from exc
        try:
            return cls.from_json(text)
        except FrequenciesError as exc:
            raise FrequenciesError(f"{path}: {exc}") from exc

    def _counts(self, field: str) -> Mapping[str, int]:
        return self.counts[_known(field)]


def _known(field: str) -> str:
    if field not in NAME_FIELDS:
        raise ValueError(f"no name frequencies for field {field!r}; only for {NAME_FIELDS}")
    return field


def _check(minimum_count: Any, records: Any, counts: Any) -> None:
    """Refuse a table that is malformed or lists a name held by fewer than minimum_count."""
    if not _is_int(minimum_count) or minimum_count < 1:
        raise FrequenciesError(f"minimum_count must be a whole number >= 1, not {minimum_count!r}")
    if not isinstance(records, Mapping) or set(records) != set(NAME_FIELDS):
        raise FrequenciesError(f"records must give a count for each of {', '.join(NAME_FIELDS)}")
    if not isinstance(counts, Mapping) or set(counts) != set(NAME_FIELDS):
        raise FrequenciesError(f"counts must be given for each of {', '.join(NAME_FIELDS)}")
    for name in NAME_FIELDS:
        total = records[name]
        if not _is_int(total) or total < 0:
            raise FrequenciesError(f"records.{name} must be a whole number >= 0, not {total!r}")
        table = counts[name]
        if not isinstance(table, Mapping):
            raise FrequenciesError(f"{name} must map names to counts, not {table!r}")
        listed = 0
        for key, count in table.items():
            if not isinstance(key, str) or not key or key != "".join(key.split()):
                raise FrequenciesError(
                    f"{name}: {key!r} is not a name key (normalised, without spaces)"
                )
            if not _is_int(count) or count < minimum_count:
                raise FrequenciesError(
                    f"{name}.{key}: count must be a whole number >= minimum_count "
                    f"({minimum_count}), not {count!r}: names held by fewer records must not "
                    "be listed"
                )
            listed += count
        if listed > total:
            raise FrequenciesError(
                f"{name}: the listed names are held by {listed} records, more than the "
                f"{total} records counted"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
