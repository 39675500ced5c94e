"""Estimating a Fellegi-Sunter model's m and u from unlabelled pairs of records, as Splink does.

The input is comparison vectors: for each candidate pair that blocking produced, one comparison
level per field, in the order of a `FieldLevels` mapping (field -> its levels, strongest first,
as `compare.FIELD_LEVELS` lists them; `MISSING` may appear anywhere and is never estimated). No
pair is labelled: expectation-maximisation treats "same child or not" as a hidden class.

- E-step: each pair's posterior probability of being a match, from the current m, u and the
  share of matches among the pairs (lambda): log-odds = log(lambda / (1 - lambda)) + the sum over
  the pair's non-missing fields of log(m / u).
- M-step: m of a level = the pairs' expected matches in that level / their expected matches with
  the field not missing; u the same with expected non-matches; lambda = expected matches / pairs.

There are few distinct vectors (a few thousand at most, whatever the number of pairs), so the
pairs are counted by vector once (`count_vectors`) and each iteration costs one pass over the
distinct vectors: millions of pairs estimate in well under a second.

Splink's recipe, which this module offers piece by piece:

1. u from random pairs of records (`estimate_u_by_sampling`): almost every random pair is two
   different children, so the level shares of random pairs are u.
2. m by EM with u fixed (`expectation_maximisation(..., fixed_u=u)`), once per blocking rule;
   a field the rule blocks on agrees by construction in every pair, so it says nothing about m
   there and is left out of that session (`ignore`).
3. Each field's m averaged over the sessions that estimated it (`combine_sessions`).

A full EM (m and u both estimated, `fixed_u=None`) is there too; on blocked pairs its u describes
pairs that blocking brought together, not random children. EM finds whatever class of pairs the
fields' agreement sets apart: if the fields a session keeps cannot tell a child from its twin or
a household from strangers, neither can the estimate (docs/matching.md).

Levels that no pair falls in would get m or u = 0 and an infinite weight. Every share is
therefore smoothed with a pseudo-count (`smoothing`, in pairs) added to each level of the field:
an unseen level gets a small, finite probability, and a level seen in many pairs is unchanged.

Pure functions, no I/O: callers compute the vectors (gateway.linkage.compare or
LinkageModel.score) and write the result where they need it.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar

MISSING: Final = "MISSING"
"""The level of a field missing on either side of a pair: never estimated, weighs 0."""

DEFAULT_SMOOTHING: Final = 0.5
"""Pseudo-count, in pairs, added to every level of a field before its shares are taken."""

Vector = tuple[str, ...]
"""One pair's comparison levels, one per field in the order of the FieldLevels mapping."""
FieldLevels = Mapping[str, Sequence[str]]
"""Field -> its comparison levels, strongest first, MISSING left out; its order is the order of
every vector's levels."""
Probabilities = Mapping[str, Mapping[str, float]]
"""Field -> level -> a probability (m, or u) of that level."""

_A = TypeVar("_A")
_B = TypeVar("_B")
# Keep lambda strictly inside (0, 1) so that its log-odds stay finite.
_SHARE_BOUND: Final = 1e-12


@dataclass(frozen=True)
class LevelEstimate:
    """m and u of one comparison level, and so its weight."""

    m: float
    u: float

    @property
    def weight(self) -> float:
        """log2(m / u): the bits of evidence that a pair in this level is one child."""
        return math.log2(self.m / self.u)


@dataclass(frozen=True)
class Estimate:
    """The outcome of one EM run (a training session)."""

    levels: Mapping[str, Mapping[str, LevelEstimate]]
    """Field -> level -> m and u, for every field and level of the FieldLevels given."""
    match_share: float
    """lambda: the estimated share of the pairs that are matches."""
    iterations: int
    converged: bool
    """Whether the largest change of any m, u or lambda in the last iteration was within the
    tolerance (otherwise the run stopped at max_iterations)."""
    pairs: float
    """How many pairs (vectors, with their counts) the run saw."""
    estimated: frozenset[str] = field(default_factory=frozenset)
    """The fields whose m this run estimated (all but those ignored)."""

    def m(self) -> dict[str, dict[str, float]]:
        return {f: {lv: e.m for lv, e in levels.items()} for f, levels in self.levels.items()}

    def u(self) -> dict[str, dict[str, float]]:
        return {f: {lv: e.u for lv, e in levels.items()} for f, levels in self.levels.items()}

    def match_probability(self, vector: Sequence[str]) -> float:
        """The posterior probability that a pair with these levels is a match, under this
        estimate and its lambda (the E-step for one vector)."""
        log_odds = _log_odds(self.match_share)
        for name, level in zip(self.levels, vector, strict=True):
            if level != MISSING:
                estimate = self.levels[name][level]
                log_odds += math.log(estimate.m / estimate.u)
        return _logistic(log_odds)


def count_vectors(vectors: Iterable[Sequence[str]]) -> Counter[Vector]:
    """How many pairs have each distinct comparison vector: the input of every estimate here."""
    return Counter(tuple(str(level) for level in vector) for vector in vectors)


def level_shares(
    counts: Mapping[Vector, float],
    levels: FieldLevels,
    *,
    smoothing: float = DEFAULT_SMOOTHING,
) -> dict[str, dict[str, float]]:
    """The share of each level among the pairs whose field is not missing, smoothed (with
    `smoothing` 0, the raw shares, 0 for a level no pair is in): u from random pairs, or m and u
    measured from labelled pairs."""
    patterns = _Patterns(counts, levels)
    return patterns.shares([1.0] * len(patterns.counts), smoothing)


def estimate_u_by_sampling(
    left: Sequence[_A],
    right: Sequence[_B],
    compare: Callable[[_A, _B], Sequence[str]],
    levels: FieldLevels,
    *,
    pairs: int,
    rng: random.Random,
    smoothing: float = DEFAULT_SMOOTHING,
) -> dict[str, dict[str, float]]:
    """u per field and level from `pairs` random pairs of a record of `left` and one of `right`
    (pass one sequence twice for pairs of two different records of it).

    Among random pairs matches are rare (about one in the number of children), so the level
    shares of random pairs estimate u. `compare` gives a pair's vector in the order of `levels`.
    """
    return level_shares(
        count_vectors(compare(a, b) for a, b in sample_pairs(left, right, pairs, rng)),
        levels,
        smoothing=smoothing,
    )


def sample_pairs(
    left: Sequence[_A], right: Sequence[_B], pairs: int, rng: random.Random
) -> Iterator[tuple[_A, _B]]:
    """`pairs` pairs drawn uniformly with replacement from left x right; when `right` is `left`
    itself, never a record with itself."""
    if pairs < 0:
        raise ValueError(f"pairs must not be negative, not {pairs}")
    one_set = right is left
    if len(left) < 1 + one_set or not right:
        raise ValueError("sampling pairs needs two records to pair")
    for _ in range(pairs):
        i = rng.randrange(len(left))
        j = rng.randrange(len(right) - one_set)
        if one_set and j >= i:
            j += 1  # skip the record itself, keeping the other side uniform
        yield left[i], right[j]


def expectation_maximisation(
    counts: Mapping[Vector, float],
    levels: FieldLevels,
    *,
    fixed_u: Probabilities | None = None,
    start_m: Probabilities | None = None,
    start_u: Probabilities | None = None,
    match_share: float = 0.01,
    ignore: Collection[str] = (),
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    smoothing: float = DEFAULT_SMOOTHING,
) -> Estimate:
    """Fellegi-Sunter EM on counted comparison vectors.

    With `fixed_u`, u stays as given and only m and lambda are estimated (Splink's usual
    training); without it, u is estimated too. `ignore` names fields left out of this run - the
    fields a blocking rule agrees on - whose m stays at its starting value. The run starts from
    `start_m` / `start_u` (default: the strongest level most likely for matches, the weakest
    for non-matches) and `match_share` (lambda), and stops when no m, u or lambda moves by more
    than `tolerance`, or after `max_iterations`.
    """
    if not 0.0 < match_share < 1.0:
        raise ValueError(f"match_share must be in (0, 1), not {match_share}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, not {max_iterations}")
    unknown = sorted(set(ignore) - set(levels))
    if unknown:
        raise ValueError(f"cannot ignore unknown field {unknown[0]!r}")
    patterns = _Patterns(counts, levels, ignore)
    m = _starting(levels, start_m, "start_m", strongest_first=True)
    u = _starting(
        levels,
        fixed_u if fixed_u is not None else start_u,
        "fixed_u" if fixed_u is not None else "start_u",
        strongest_first=False,
    )
    share = match_share
    converged = False
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        posterior = patterns.posteriors(m, u, share)
        new_m = patterns.shares(posterior, smoothing, keep=m)
        new_u = u
        if fixed_u is None:
            new_u = patterns.shares([1.0 - p for p in posterior], smoothing, keep=u)
        new_share = patterns.weighted_total(posterior) / patterns.total if patterns.total else share
        new_share = min(max(new_share, _SHARE_BOUND), 1.0 - _SHARE_BOUND)
        _require_positive(new_m, "m")
        _require_positive(new_u, "u")
        change = max(_largest_change(m, new_m), _largest_change(u, new_u), abs(new_share - share))
        m, u, share = new_m, new_u, new_share
        if change <= tolerance:
            converged = True
            break
    return Estimate(
        levels=_freeze({f: {lv: LevelEstimate(m[f][lv], u[f][lv]) for lv in m[f]} for f in levels}),
        match_share=share,
        iterations=iterations,
        converged=converged,
        pairs=patterns.total,
        estimated=frozenset(levels) - frozenset(ignore),
    )


def combine_sessions(sessions: Sequence[Estimate]) -> dict[str, dict[str, LevelEstimate]]:
    """One m and u per level from several runs (one per blocking rule), as Splink combines them:
    each field's m and u are the means over the runs that estimated that field."""
    if not sessions:
        raise ValueError("no sessions to combine")
    combined: dict[str, dict[str, LevelEstimate]] = {}
    for name, field_levels in sessions[0].levels.items():
        estimating = [s for s in sessions if name in s.estimated]
        if not estimating:
            raise ValueError(f"no session estimated field {name!r}: every field needs one")
        combined[name] = {
            level: LevelEstimate(
                m=sum(s.levels[name][level].m for s in estimating) / len(estimating),
                u=sum(s.levels[name][level].u for s in estimating) / len(estimating),
            )
            for level in field_levels
        }
    return combined


class _Patterns:
    """Distinct vectors, their counts, and each vector's (field, level) pairs that take part."""

    def __init__(
        self, counts: Mapping[Vector, float], levels: FieldLevels, ignore: Collection[str] = ()
    ) -> None:
        self.levels = levels
        names = list(levels)
        known = {name: set(map(str, levels[name])) for name in names}
        for name, field_levels in known.items():
            if not field_levels:
                raise ValueError(f"field {name!r} has no levels")
            if MISSING in field_levels:
                raise ValueError(f"field {name!r}: {MISSING} is not a level to estimate")
        self.counts: list[float] = []
        self.cells: list[list[tuple[str, str]]] = []
        for vector, count in counts.items():
            if len(vector) != len(names):
                raise ValueError(
                    f"comparison vector {vector!r} has {len(vector)} levels for "
                    f"{len(names)} fields ({', '.join(names)})"
                )
            if count < 0 or not math.isfinite(count):
                raise ValueError(f"comparison vector {vector!r} has count {count}")
            cells = []
            for name, level in zip(names, vector, strict=True):
                level = str(level)
                if level == MISSING:
                    continue
                if level not in known[name]:
                    raise ValueError(
                        f"field {name!r}: level {level!r} is not one of "
                        f"{', '.join(sorted(known[name]))} (or {MISSING})"
                    )
                if name not in ignore:
                    cells.append((name, level))
            self.counts.append(float(count))
            self.cells.append(cells)
        self.total = sum(self.counts)

    def posteriors(self, m: Probabilities, u: Probabilities, share: float) -> list[float]:
        """E-step: each distinct vector's probability of being a match."""
        prior = _log_odds(share)
        evidence = {
            (name, level): math.log(m[name][level] / u[name][level])
            for name, field_levels in m.items()
            for level in field_levels
        }
        return [_logistic(prior + sum(evidence[c] for c in cells)) for cells in self.cells]

    def weighted_total(self, weights: Sequence[float]) -> float:
        return sum(c * w for c, w in zip(self.counts, weights, strict=True))

    def shares(
        self,
        weights: Sequence[float],
        smoothing: float,
        keep: Probabilities | None = None,
    ) -> dict[str, dict[str, float]]:
        """M-step: per field, the smoothed share of each level among the weighted pairs whose
        field takes part. A field no pair takes part in (ignored, or always missing) keeps its
        values from `keep`, or gets equal shares."""
        if smoothing < 0:
            raise ValueError(f"smoothing must not be negative, not {smoothing}")
        totals: dict[str, defaultdict[str, float]] = {
            name: defaultdict(float) for name in self.levels
        }
        for count, weight, cells in zip(self.counts, weights, self.cells, strict=True):
            for name, level in cells:
                totals[name][level] += count * weight
        result: dict[str, dict[str, float]] = {}
        for name, field_levels in self.levels.items():
            seen = totals[name]
            observed = sum(seen.values())
            if observed <= 0.0:
                result[name] = (
                    dict(keep[name])
                    if keep is not None
                    else {str(lv): 1.0 / len(field_levels) for lv in field_levels}
                )
                continue
            denominator = observed + smoothing * len(field_levels)
            result[name] = {
                str(lv): (seen[str(lv)] + smoothing) / denominator for lv in field_levels
            }
        return result


def _starting(
    levels: FieldLevels, given: Probabilities | None, what: str, *, strongest_first: bool
) -> dict[str, dict[str, float]]:
    """Checked starting values, or defaults that put matches in the strongest levels and
    non-matches in the weakest, so EM's two classes start (and stay) the right way round."""
    if given is None:
        start = {}
        for name, field_levels in levels.items():
            count = len(field_levels)
            raw = [0.1 ** (i if strongest_first else count - 1 - i) for i in range(count)]
            start[name] = {str(lv): r / sum(raw) for lv, r in zip(field_levels, raw, strict=True)}
        return start
    checked: dict[str, dict[str, float]] = {}
    for name, field_levels in levels.items():
        if name not in given:
            raise ValueError(f"{what}: field {name!r} is missing")
        values = given[name]
        checked[name] = {}
        for level in map(str, field_levels):
            value = values.get(level)
            if value is None:
                raise ValueError(f"{what}: {name}.{level} is missing")
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{what}: {name}.{level} must be in (0, 1], not {value}")
            checked[name][level] = float(value)
    return checked


def _require_positive(values: Probabilities, what: str) -> None:
    for name, field_values in values.items():
        for level, value in field_values.items():
            if value <= 0.0:
                raise ValueError(
                    f"{name}.{level}: no pair is in this level, so its {what} is 0 and its "
                    "weight infinite; use smoothing > 0"
                )


def _largest_change(before: Probabilities, after: Probabilities) -> float:
    return max(
        abs(after[name][level] - value)
        for name, values in before.items()
        for level, value in values.items()
    )


def _log_odds(share: float) -> float:
    return math.log(share / (1.0 - share))


def _logistic(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)


def _freeze(
    levels: Mapping[str, Mapping[str, LevelEstimate]],
) -> Mapping[str, Mapping[str, LevelEstimate]]:
    return MappingProxyType({name: MappingProxyType(dict(v)) for name, v in levels.items()})
