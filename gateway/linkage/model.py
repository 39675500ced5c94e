"""The Fellegi-Sunter linkage model: per-field comparison levels weighed by log2(m/u).

For each field and level, m is the chance that two records of the *same* child fall in that level
and u the chance that records of two *different* children do. A pair's match weight is the sum of
log2(m/u) over its fields: each bit doubles the odds that the pair is one child. Bands are cut on
that weight, and the posterior probability reported with it combines the weight with a configured
prior. Where the m and u values come from, and why the defaults are what they are, is in
docs/matching.md.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final

from gateway.linkage.compare import (
    FIELD_LEVELS,
    TWIN_LEVELS,
    Level,
    Similarity,
    address_level,
    carer_level,
    date_level,
    name_levels,
    postcode_level,
    sex_level,
)
from gateway.linkage.frequencies import NameFrequencies
from gateway.linkage.person import Person

_DEFAULT_CONFIG: Final = "model.toml"
_NAME_FIELDS: Final = ("given", "family")
# m and u sum to at most 1 across a field's levels; allow for rounding in a hand-written file.
_SUM_TOLERANCE: Final = 1e-6
MAX_FREQUENCY_BITS: Final = 4.0
"""The most a rare name's term-frequency adjustment may add to an EXACT name weight. The table's
bound for unlisted names can be 7 bits or more above average in a large area; a link resting on
one unusual name's rarity is a link resting on one detail, and twins share a rare surname."""


class LinkageConfigError(ValueError):
    """A linkage config file that cannot be used; the message names the file and the problem."""


class Band(StrEnum):
    LINKED = "LINKED"
    POSSIBLE = "POSSIBLE"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Comparison:
    """How one field compared, and the evidence (in bits) that contributed to the weight."""

    field: str
    level: str
    weight: float


@dataclass(frozen=True)
class Score:
    weight: float
    """Total log2 match weight: the sum of the comparisons' weights."""
    probability: float
    """Posterior probability that the pair is one child, from the weight and the model's prior."""
    band: Band
    comparisons: tuple[Comparison, ...]

    def level(self, field: str) -> str:
        """How the pair compared on one field ("given", "family", ...): its level."""
        return next(c.level for c in self.comparisons if c.field == field)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the pair scored as it did, e.g. ("given:NICKNAME", "family:EXACT", ...): levels
        only, never values, so they can go into the audit record."""
        return tuple(f"{c.field}:{c.level}" for c in self.comparisons)


@dataclass(frozen=True)
class LinkageModel:
    """Scores pairs of people; immutable, so one instance is shared by every lookup. Build it
    with load(): the weights come from a config file, never from code."""

    link_threshold: float
    possible_threshold: float
    prior: float
    _comparisons: Mapping[str, Mapping[Level, Comparison]]
    _twin_given: Mapping[Level, Comparison]
    _given_similarity: Similarity
    _family_similarity: Similarity
    _exact_u: Mapping[str, float]
    frequencies: NameFrequencies | None = None
    """Name frequencies for term-frequency adjustment of EXACT name matches (with_frequencies)."""

    def __post_init__(self) -> None:
        _check_thresholds(self.link_threshold, self.possible_threshold)

    @classmethod
    def load(cls, path: Path | None = None) -> LinkageModel:
        """Read a model from a TOML file; None reads the packaged defaults (model.toml)."""
        if path is None:
            source = resources.files(__package__).joinpath(_DEFAULT_CONFIG)
            name = f"{__package__}/{_DEFAULT_CONFIG}"
        else:
            source, name = path, str(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise LinkageConfigError(f"{name}: cannot read linkage config: {exc}") from exc
        try:
            return cls._from_config(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise LinkageConfigError(f"{name}: not valid TOML: {exc}") from exc
        except LinkageConfigError as exc:
            raise LinkageConfigError(f"{name}: {exc}") from exc

    @classmethod
    def _from_config(cls, config: Mapping[str, Any]) -> LinkageModel:
        _reject_unknown(
            config, {"prior", "link_threshold", "possible_threshold", *FIELD_LEVELS}, ""
        )
        fields = {name: _field_config(config, name) for name in FIELD_LEVELS}
        twin_given = _twin_config(config["given"], fields["given"])
        similarity = {name: _similarity(config[name], name) for name in _NAME_FIELDS}
        link_threshold = _number(config, "link_threshold", "")
        possible_threshold = _number(config, "possible_threshold", "")
        _check_thresholds(link_threshold, possible_threshold)
        _check_twins_cannot_link(fields, twin_given, link_threshold)
        exact_u = {name: config[name]["levels"][Level.EXACT]["u"] for name in _NAME_FIELDS}
        return cls(
            link_threshold=link_threshold,
            possible_threshold=possible_threshold,
            prior=_probability(config, "prior", "", open_at_one=True),
            _comparisons=fields,
            _twin_given=twin_given,
            _given_similarity=similarity["given"],
            _family_similarity=similarity["family"],
            _exact_u=exact_u,
        )

    def with_thresholds(self, link: float, possible: float) -> LinkageModel:
        """The same weights with other band thresholds (for threshold sweeps; a gateway's own
        thresholds are checked as a model file's are, `check_twins_cannot_link`)."""
        return replace(self, link_threshold=link, possible_threshold=possible)

    def check_twins_cannot_link(self) -> None:
        """Refuse this model's link threshold if twins in view could link under it, as a model
        file's is refused on loading: for thresholds set otherwise (the gateway's overrides)."""
        _check_twins_cannot_link(self._comparisons, self._twin_given, self.link_threshold)

    def with_frequencies(self, frequencies: NameFrequencies) -> LinkageModel:
        """The same model with exact name matches weighed by how common the name is: an exact
        match on a name rarer than average gains bits (at most MAX_FREQUENCY_BITS), on a common
        one loses them. Refused if the largest gain would let twins link."""
        family_gain = min(
            MAX_FREQUENCY_BITS,
            frequencies.largest_adjustment_bits("family", self._exact_u["family"]),
        )
        _check_twins_cannot_link(
            self._comparisons, self._twin_given, self.link_threshold, family_gain=family_gain
        )
        return replace(self, frequencies=frequencies)

    def weight(self, field: str, level: str) -> float:
        """The configured weight of one field's level (0 for MISSING)."""
        return self._comparisons[field][Level(level)].weight

    def score(
        self, a: Person, b: Person, *, twins: bool = False, siblings_ruled_out: bool = False
    ) -> Score:
        """Score a pair; symmetric, so query-vs-record and record-vs-record read the same.

        `twins` says the lookup has twins (or more) of this household in view: then a given name
        that is not the same name is weighed as what it most likely is, the other twin, by the
        `[given.twins]` weights. Without twins in view it is a recorded other name or a slip.
        `siblings_ruled_out` says the lookup has seen the household's other children and `b` is
        none of them: then the house counts even within the household (compare.address_level).
        """
        tables = self._comparisons
        given, family = name_levels(a, b, self._given_similarity, self._family_similarity)
        given_table = self._twin_given if twins else tables["given"]
        postcode = postcode_level(a, b)
        comparisons = (
            self._exact_name(given_table[given], a.given_key),
            self._exact_name(tables["family"][family], a.family_key),
            tables["date_of_birth"][date_level(a.date_of_birth, b.date_of_birth)],
            tables["postcode"][postcode],
            tables["sex"][sex_level(a.sex, b.sex)],
            tables["address"][
                address_level(a, b, postcode, family, siblings_ruled_out=siblings_ruled_out)
            ],
            tables["carer"][carer_level(a, b, postcode, family)],
        )
        weight = sum(c.weight for c in comparisons)
        return Score(weight, self._probability(weight), self.band(weight), comparisons)

    def _exact_name(self, comparison: Comparison, key: str | None) -> Comparison:
        if self.frequencies is None or comparison.level != Level.EXACT or key is None:
            return comparison
        bits = self.frequencies.adjustment_bits(
            comparison.field, key, self._exact_u[comparison.field]
        )
        return replace(comparison, weight=comparison.weight + min(bits, MAX_FREQUENCY_BITS))

    def band(self, weight: float) -> Band:
        """The band a total weight falls in under this model's thresholds."""
        if weight >= self.link_threshold:
            return Band.LINKED
        if weight >= self.possible_threshold:
            return Band.POSSIBLE
        return Band.REJECTED

    def _probability(self, weight: float) -> float:
        log_odds = weight + math.log2(self.prior / (1.0 - self.prior))
        if log_odds >= 0:
            return 1.0 / (1.0 + math.exp2(-log_odds))
        odds = math.exp2(log_odds)
        return odds / (1.0 + odds)


def _check_thresholds(link: float, possible: float) -> None:
    for name, value in (("link_threshold", link), ("possible_threshold", possible)):
        if not math.isfinite(value):
            raise LinkageConfigError(f"{name} must be a finite number of bits, not {value}")
    if link < possible:
        raise LinkageConfigError(
            f"link_threshold ({link}) is below possible_threshold ({possible}): a pair strong "
            "enough to link would be weaker than one only reported as possible"
        )


def _check_twins_cannot_link(
    fields: Mapping[str, Mapping[Level, Comparison]],
    twin_given: Mapping[Level, Comparison],
    link_threshold: float,
    *,
    family_gain: float = 0.0,
) -> None:
    """Refuse weights under which twins in view could be merged.

    Twins agree on family name, date of birth, address, carers and usually sex; only the given
    name tells them apart. Whatever else is configured, once the lookup has seen both twins a
    given name that is not the same name must keep such a pair below the link threshold - the
    one mistake linkage must never make. Every field's strongest level counts, except that a
    shared carer and a full postcode, which never count together, count as the better of the two.
    """
    best = {name: max(c.weight for c in fields[name].values()) for name in FIELD_LEVELS}
    # A shared carer counts only where the postcodes differ (compare.carer_level): the home is
    # the better of a full postcode, or another postcode level with the carer.
    away = max(c.weight for level, c in fields["postcode"].items() if level is not Level.FULL)
    home = max(fields["postcode"][Level.FULL].weight, away + best["carer"])
    household = (
        family_gain
        + home
        + sum(best[name] for name in FIELD_LEVELS if name not in ("given", "postcode", "carer"))
    )
    for level in TWIN_LEVELS:
        twin = household + twin_given[level].weight
        if twin >= link_threshold:
            raise LinkageConfigError(
                f"given.twins.{level}: twins (same family name, date of birth, address, "
                f"carers and sex; given names {level}) would score {twin:.1f} bits"
                + (f" with a rare surname's {family_gain:.1f} bits" if family_gain else "")
                + f", at or above "
                f"link_threshold ({link_threshold}), and be merged; lower that level's m or "
                "raise the threshold"
            )


def _twin_config(
    section: Mapping[str, Any], given: Mapping[Level, Comparison]
) -> dict[Level, Comparison]:
    """The given-name weights with twins in view: the ordinary ones, but for TWIN_LEVELS."""
    twins = _table(section, "twins", "given")
    _reject_unknown(twins, set(TWIN_LEVELS), "given.twins")
    weights = dict(given)
    for level in TWIN_LEVELS:
        where = f"given.twins.{level}"
        if level not in twins:
            raise LinkageConfigError(f"{where} is missing: every twin level needs m and u")
        pair = _table(twins, level, "given.twins")
        _reject_unknown(pair, {"m", "u"}, where)
        m, u = _probability(pair, "m", where), _probability(pair, "u", where)
        weights[level] = Comparison("given", level, math.log2(m / u))
    return weights


def _field_config(config: Mapping[str, Any], field: str) -> dict[Level, Comparison]:
    section = _table(config, field, "")
    allowed = {"levels", "jaro_winkler"} if field in _NAME_FIELDS else {"levels"}
    if field == "given":
        allowed.add("twins")
    _reject_unknown(section, allowed, field)
    levels = _table(section, "levels", field)
    expected = FIELD_LEVELS[field]
    _reject_unknown(levels, set(expected), f"{field}.levels")
    comparisons = {Level.MISSING: Comparison(field, Level.MISSING, 0.0)}
    m_total = u_total = 0.0
    for level in expected:
        where = f"{field}.levels.{level}"
        if level not in levels:
            raise LinkageConfigError(f"{where} is missing: every level needs m and u")
        pair = _table(levels, level, f"{field}.levels")
        _reject_unknown(pair, {"m", "u"}, where)
        m = _probability(pair, "m", where)
        u = _probability(pair, "u", where)
        m_total += m
        u_total += u
        comparisons[level] = Comparison(field, level, math.log2(m / u))
    for name, total in (("m", m_total), ("u", u_total)):
        if total > 1.0 + _SUM_TOLERANCE:
            raise LinkageConfigError(
                f"{field}: the {name} probabilities of its levels add up to {total:.6g}; they "
                "share out one population of pairs, so they cannot exceed 1"
            )
    return comparisons


def _similarity(section: Mapping[str, Any], field: str) -> Similarity:
    where = f"{field}.jaro_winkler"
    table = _table(section, "jaro_winkler", field)
    _reject_unknown(table, {"high", "medium"}, where)
    high = _probability(table, "high", where)
    medium = _probability(table, "medium", where)
    if medium > high:
        raise LinkageConfigError(f"{where}: medium ({medium}) must not be above high ({high})")
    return Similarity(high=high, medium=medium)


def _table(config: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    path = f"{where}.{key}" if where else key
    if key not in config:
        raise LinkageConfigError(f"[{path}] is missing")
    value = config[key]
    if not isinstance(value, Mapping):
        raise LinkageConfigError(f"{path} must be a table, not {value!r}")
    return value


def _number(config: Mapping[str, Any], key: str, where: str) -> float:
    path = f"{where}.{key}" if where else key
    if key not in config:
        raise LinkageConfigError(f"{path} is missing")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LinkageConfigError(f"{path} must be a number, not {value!r}")
    return float(value)


def _probability(
    config: Mapping[str, Any], key: str, where: str, *, open_at_one: bool = False
) -> float:
    """A probability in (0, 1] - or (0, 1) for a prior, whose odds must be finite."""
    value = _number(config, key, where)
    path = f"{where}.{key}" if where else key
    upper_ok = value < 1.0 if open_at_one else value <= 1.0
    if not (value > 0.0 and upper_ok):
        interval = "(0, 1)" if open_at_one else "(0, 1]"
        raise LinkageConfigError(f"{path} must be in {interval}, not {value}")
    return value


def _reject_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        place = f" in [{where}]" if where else ""
        raise LinkageConfigError(
            f"unknown key {unknown[0]!r}{place}; expected one of {', '.join(sorted(allowed))}"
        )
