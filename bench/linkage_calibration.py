"""Linkage model calibration on synthetic populations: recall, wrong links and twins per threshold.

    python -m bench.linkage_calibration --children 20000 --noise medium high

For each labelled population (connectors.synthetic) every child's health record plays the
practitioner's query (given and family name, date of birth, postcode, sex; the former family name
only with --with-former) and is scored against

- the child's own education and social care records: the true matches, and
- every other child's education or social care record sharing a blocking key with the query -
  date of birth, postcode, family name and birth year, or given and family name: the
  non-matches, among them the child's siblings and twins, which share family name and address.

Two views are reported per link threshold. Pairs: the share of true pairs linked, the non-match
pairs linked, and twins linked. Lookups: the match stage's rules replayed without identifiers -
candidates at or above the threshold are linked, unless one source has two of them or two linked
records score REJECTED against each other (AMBIGUOUS: nothing merged) - giving the precision and
recall of links the end-to-end benchmark measures. Both assume blocking returns the child's own
records; this measures the model, not a connector's candidate search.

Prints a table per population and writes bench/results/linkage_calibration.json.

    python -m bench.linkage_calibration --em --children 20000 --noise medium high \
        --write bench/results/estimated.toml

--em instead estimates the model from the records themselves, as a source without labels would
(gateway.linkage.estimate, Splink's recipe): u from random query-record pairs, m by
expectation-maximisation with u fixed, once per blocking rule (leaving out the fields the rule
blocks on) and averaged; and, for comparison, a full EM of m and u on all blocked pairs. It prints
per level the configured m, u and weight, the true ones measured with the labels (m over every
true pair, u over the random pairs that are not matches), and the estimated ones; with --write it
writes the estimate as a model file in model.toml's shape (checked with LinkageModel.load) and the
name-frequency table beside it. Results go to bench/results/linkage_estimate.json. --model PATH
calibrates another model file, such as one --em wrote, instead of the packaged one.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

from connectors.protocol import ConnectorRecord
from connectors.synthetic import (
    NoiseLevel,
    NoiseProfile,
    Population,
    Source,
    generate_population,
)
from gateway.linkage import (
    FIELD_LEVELS,
    Band,
    LevelEstimate,
    LinkageConfigError,
    LinkageModel,
    NameFrequencies,
    Person,
    Vector,
    combine_sessions,
    expectation_maximisation,
    level_shares,
    sample_pairs,
)

RESULTS = Path(__file__).resolve().parent / "results"
_COPIES: tuple[Source, ...] = ("education", "social_care")


@dataclass(frozen=True)
class _Record:
    key: tuple[str, str]
    child: str
    person: Person


@dataclass
class _Tally:
    """Counts for one link threshold."""

    true_pairs_linked: int = 0
    false_pairs_linked: int = 0
    twins_linked: int = 0
    links_right: int = 0
    links_wrong: int = 0
    records_missed: int = 0
    ambiguous_lookups: int = 0

    def report(self, true_pairs: int) -> dict[str, float]:
        links = self.links_right + self.links_wrong
        found = self.links_right + self.records_missed
        return {
            "pair_recall": round(self.true_pairs_linked / true_pairs, 5),
            "pair_false_links": self.false_pairs_linked,
            "twins_linked": self.twins_linked,
            "lookup_precision": round(self.links_right / links, 6) if links else 1.0,
            "lookup_recall": round(self.links_right / found, 5) if found else 1.0,
            "wrong_links": self.links_wrong,
            "ambiguous_lookups": self.ambiguous_lookups,
        }


@dataclass
class _Run:
    model: LinkageModel
    thresholds: Sequence[float]
    tallies: dict[float, _Tally] = field(default_factory=dict)
    true_pairs: int = 0
    non_match_pairs: int = 0
    twin_pairs: int = 0
    copy_pair_bands: Counter[str] = field(default_factory=Counter)
    buckets: defaultdict[int, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )

    def __post_init__(self) -> None:
        self.tallies = {t: _Tally() for t in self.thresholds}


def _query(health: ConnectorRecord, with_former: bool) -> Person:
    """The practitioner's query for a child: the health record's demographics, which a
    practitioner is unlikely to know the former family name for."""
    person = Person.from_record(health)
    return person if with_former else replace(person, former_family=())


def _blocking_keys(person: Person) -> Iterator[Hashable]:
    yield "date_of_birth", person.date_of_birth
    yield "postcode", person.postcode
    if person.date_of_birth is not None:
        yield "family_year", person.family_key, person.date_of_birth.year
    yield "names", person.given_key, person.family_key


def _index_copies(
    population: Population, keys: Callable[[Person], Iterable[Hashable]]
) -> tuple[list[_Record], defaultdict[str, list[_Record]], defaultdict[Hashable, list[_Record]]]:
    """The education and social care records, by child (none: []) and by blocking key."""
    copies = [
        _Record((source, r.record_id), population.truth[source, r.record_id], Person.from_record(r))
        for source in _COPIES
        for r in population.records(source)
    ]
    by_child: defaultdict[str, list[_Record]] = defaultdict(list)
    blocks: defaultdict[Hashable, list[_Record]] = defaultdict(list)
    for copy in copies:
        by_child[copy.child].append(copy)
        for key in keys(copy.person):
            blocks[key].append(copy)
    return copies, by_child, blocks


def calibrate(
    children: int,
    noise: NoiseLevel,
    seed: int,
    thresholds: Sequence[float],
    with_former: bool,
    model: LinkageModel | None = None,
) -> dict[str, Any]:
    population = generate_population(seed, children, noise=NoiseProfile.preset(noise))
    run = _Run(model or LinkageModel.load(), thresholds)
    _, by_child, blocks = _index_copies(population, _blocking_keys)
    households = {
        population.truth["health", r.record_id]: (r.address, r.date_of_birth)
        for r in population.health
    }
    # Health holds every child and answers with both twins (gateway.match: twins in view), so a
    # child born with a sibling on the same day is always scored with the twins' weights.
    births = Counter((repr(address), born) for address, born in households.values())
    started = time.perf_counter()
    for health in population.health:
        child = population.truth["health", health.record_id]
        query = _query(health, with_former)
        own = by_child[child]
        others = {
            c.key: c
            for key in _blocking_keys(query)
            for c in blocks.get(key, ())
            if c.child != child
        }
        twins = {
            k
            for k, c in others.items()
            if households[c.child] == households[child]  # same address, same birthday
        }
        address, born = households[child]
        in_view = births[repr(address), born] > 1
        _lookup(run, query, own, list(others.values()), twins, in_view)
    elapsed = time.perf_counter() - started
    pairs = run.true_pairs + run.non_match_pairs
    return {
        "children": children,
        "noise": noise,
        "seed": seed,
        "with_former": with_former,
        "true_pairs": run.true_pairs,
        "non_match_pairs": run.non_match_pairs,
        "twin_pairs": run.twin_pairs,
        "true_share_of_pairs": round(run.true_pairs / pairs, 5),
        "copy_vs_copy_bands": dict(run.copy_pair_bands),
        "scoring_us_per_pair_with_bookkeeping": round(elapsed / pairs * 1e6, 2),
        "by_threshold": {str(t): tally.report(run.true_pairs) for t, tally in run.tallies.items()},
        "true_share_by_weight": {
            f"{low}..{low + 2}": round(m / (m + n), 5)
            for low, (m, n) in sorted(run.buckets.items())
            if m + n >= 20
        },
    }


def _lookup(
    run: _Run,
    query: Person,
    own: Sequence[_Record],
    others: Sequence[_Record],
    twins: set[tuple[str, str]],
    in_view: bool,
) -> None:
    model = run.model
    scored = [(c, model.score(query, c.person, twins=in_view).weight, True) for c in own]
    scored += [(c, model.score(query, c.person, twins=in_view).weight, False) for c in others]
    run.true_pairs += len(own)
    run.non_match_pairs += len(others)
    run.twin_pairs += len(twins)
    for _, weight, is_match in scored:
        run.buckets[int(weight // 2) * 2][0 if is_match else 1] += 1
    if len(own) == len(_COPIES):
        run.copy_pair_bands[model.score(own[0].person, own[1].person).band] += 1
    for threshold, tally in run.tallies.items():
        linked = [(c, is_match) for c, weight, is_match in scored if weight >= threshold]
        tally.true_pairs_linked += sum(is_match for _, is_match in linked)
        tally.false_pairs_linked += sum(not is_match for _, is_match in linked)
        tally.twins_linked += sum(c.key in twins for c, _ in linked)
        if _ambiguous([c for c, _ in linked], model, in_view):
            tally.ambiguous_lookups += 1
            tally.records_missed += len(own)
            continue
        right = sum(is_match for _, is_match in linked)
        tally.links_right += right
        tally.links_wrong += len(linked) - right
        tally.records_missed += len(own) - right


def _ambiguous(linked: Sequence[_Record], model: LinkageModel, in_view: bool) -> bool:
    """gateway.match's rule without identifiers: two links in one source, or two linked records
    the model rejects as one person (pairwise, which is stricter than the gateway's anchor)."""
    sources = Counter(c.key[0] for c in linked)
    if any(count > 1 for count in sources.values()):
        return True
    return any(
        model.score(a.person, b.person, twins=in_view).band is Band.REJECTED
        for a, b in combinations(linked, 2)
    )


def time_scoring(pairs: int = 20_000, seed: int = 3) -> dict[str, float]:
    """Mean time of Person.from_record and of LinkageModel.score on realistic pairs."""
    population = generate_population(seed, 2_000)
    model = LinkageModel.load()
    records = list(population.health) + list(population.education)
    gc.collect()  # the generator's garbage is not the scorer's cost
    started = time.perf_counter()
    people = [Person.from_record(r) for r in records]
    person_us = (time.perf_counter() - started) / len(records) * 1e6
    sample = [(people[i % len(people)], people[(i * 7919) % len(people)]) for i in range(pairs)]
    started = time.perf_counter()
    for a, b in sample:
        model.score(a, b)
    score_us = (time.perf_counter() - started) / pairs * 1e6
    return {"person_from_record_us": round(person_us, 2), "score_us": round(score_us, 2)}


# --- estimating the model from the records themselves (--em) ----------------------------------

_LEVELS: dict[str, tuple[str, ...]] = {
    name: tuple(str(level) for level in levels) for name, levels in FIELD_LEVELS.items()
}
# Splink's training sessions: one EM per blocking rule, leaving out the fields the rule agrees on
# (family name and birth year also constrain the date of birth's levels). Not postcode: what is
# left of a pair blocked on postcode - family name above all - tells a household from strangers,
# so EM's "match" class there is the household (siblings counted as one child), not the child.
_SESSION_IGNORES: dict[str, frozenset[str]] = {
    "date_of_birth": frozenset({"date_of_birth"}),
    "family_year": frozenset({"family", "date_of_birth"}),
    "names": frozenset({"given", "family"}),
}


def _vector(model: LinkageModel, a: Person, b: Person) -> Vector:
    """A pair's comparison levels in FIELD_LEVELS order, whatever levels the model has."""
    levels = {c.field: str(c.level) for c in model.score(a, b).comparisons}
    return tuple(levels.get(name, "MISSING") for name in _LEVELS)


def _configured_model() -> dict[str, Any]:
    text = resources.files("gateway.linkage").joinpath("model.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def estimate_from_records(
    children: int, noise: NoiseLevel, seed: int, with_former: bool, sample: int, smoothing: float
) -> tuple[dict[str, Any], dict[str, dict[str, LevelEstimate]], NameFrequencies]:
    """Estimate m and u from one synthetic population without its labels, and measure the true
    ones with them."""
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        clock = now

    population = generate_population(seed, children, noise=NoiseProfile.preset(noise))
    lap("generate_s")
    model = LinkageModel.load()
    queries = [
        (population.truth["health", r.record_id], _query(r, with_former)) for r in population.health
    ]
    copies, by_child, blocks = _index_copies(population, _usable_keys)
    lap("prepare_s")

    sessions: dict[str, Counter[Vector]] = {rule: Counter() for rule in _SESSION_IGNORES}
    session_matches: Counter[str] = Counter()
    blocked: Counter[Vector] = Counter()
    true_vectors: Counter[Vector] = Counter()
    true_pairs_blocked = 0
    for child, query in queries:
        vectors: dict[tuple[str, str], Vector] = {}
        for key in _usable_keys(query):
            rule = str(key[0])
            for c in blocks.get(key, ()):
                vector = vectors.get(c.key)
                if vector is None:
                    vector = vectors[c.key] = _vector(model, query, c.person)
                if rule in sessions:
                    sessions[rule][vector] += 1
                    session_matches[rule] += c.child == child
        blocked.update(vectors.values())
        for c in by_child[child]:
            true_pairs_blocked += c.key in vectors
            true_vectors[vectors.get(c.key) or _vector(model, query, c.person)] += 1
    lap("compare_blocked_s")

    rng = random.Random(seed)
    sampled: Counter[Vector] = Counter()
    sampled_non_matches: Counter[Vector] = Counter()
    for (child, query), copy in sample_pairs(queries, copies, sample, rng):
        vector = _vector(model, query, copy.person)
        sampled[vector] += 1
        if copy.child != child:
            sampled_non_matches[vector] += 1
    u = level_shares(sampled, _LEVELS, smoothing=smoothing)
    lap("sample_u_s")

    runs = {
        rule: expectation_maximisation(
            counts, _LEVELS, fixed_u=u, ignore=_SESSION_IGNORES[rule], smoothing=smoothing
        )
        for rule, counts in sessions.items()
    }
    estimated = combine_sessions(list(runs.values()))
    lap("em_sessions_s")
    full = expectation_maximisation(blocked, _LEVELS, smoothing=smoothing)
    lap("em_full_s")
    frequencies = NameFrequencies.from_people(query for _, query in queries)
    lap("frequencies_s")
    timings["total_s"] = round(time.perf_counter() - started, 2)

    configured = _configured_model()
    true_m = level_shares(true_vectors, _LEVELS, smoothing=0.0)
    true_u = level_shares(sampled_non_matches, _LEVELS, smoothing=0.0)
    table = []
    for name, levels in _LEVELS.items():
        for level in levels:
            config = configured.get(name, {}).get("levels", {}).get(level, {})
            table.append(
                {
                    "field": name,
                    "level": level,
                    "configured": _m_u(config.get("m"), config.get("u")),
                    "true": _m_u(true_m[name][level], true_u[name][level]),
                    "estimated": _m_u(estimated[name][level].m, estimated[name][level].u),
                    "full_em": _m_u(full.levels[name][level].m, full.levels[name][level].u),
                }
            )
    result = {
        "children": children,
        "noise": noise,
        "seed": seed,
        "with_former": with_former,
        "smoothing": smoothing,
        "distinct_vectors_blocked": len(blocked),
        "blocked_pairs": blocked.total(),
        "true_pairs": true_vectors.total(),
        "true_pairs_blocked": true_pairs_blocked,
        "true_share_of_blocked_pairs": round(true_pairs_blocked / blocked.total(), 5),
        "sampled_pairs": sample,
        "sampled_matches": sampled.total() - sampled_non_matches.total(),
        "sessions": {
            rule: {
                "pairs": run.pairs,
                "match_share": round(run.match_share, 6),
                "true_match_share": round(session_matches[rule] / run.pairs, 6),
                "iterations": run.iterations,
                "converged": run.converged,
                "left_out": sorted(_SESSION_IGNORES[rule]),
            }
            for rule, run in runs.items()
        },
        "full_em": {
            "match_share": round(full.match_share, 6),
            "true_match_share": round(true_pairs_blocked / blocked.total(), 6),
            "iterations": full.iterations,
            "converged": full.converged,
        },
        "levels": table,
        "frequencies": _frequency_summary(frequencies, configured),
        "timings": timings,
    }
    return result, estimated, frequencies


def _usable_keys(person: Person) -> Iterator[tuple[Hashable, ...]]:
    """The script's blocking keys, less those with a missing part (which would block together
    every record missing it)."""
    for key in _blocking_keys(person):
        assert isinstance(key, tuple)
        if None not in key:
            yield key


def _m_u(m: float | None, u: float | None) -> dict[str, float | None]:
    weight = None
    if m is not None and u is not None and m > 0 and u > 0:
        weight = round(math.log2(m / u), 2)
    return {"m": m, "u": u, "weight": weight}


def _frequency_summary(frequencies: NameFrequencies, configured: dict[str, Any]) -> dict[str, Any]:
    summary = {}
    for name in ("given", "family"):
        average_u = configured[name]["levels"]["EXACT"]["u"]
        listed = frequencies.counts[name]
        bits = [frequencies.adjustment_bits(name, key, average_u) for key in listed]
        summary[name] = {
            "records": frequencies.records[name],
            "names_listed": len(listed),
            "records_with_a_listed_name": sum(listed.values()),
            "configured_exact_u": average_u,
            "sum_of_squared_shares": round(
                sum((n / frequencies.records[name]) ** 2 for n in listed.values()), 6
            ),
            "adjustment_bits_min": round(min(bits), 2) if bits else None,
            "adjustment_bits_max": round(max(bits), 2) if bits else None,
            "adjustment_bits_unlisted": round(
                frequencies.adjustment_bits(name, "\x00unlisted", average_u), 2
            ),
        }
    return summary


def write_estimated_model(
    path: Path, estimated: dict[str, dict[str, LevelEstimate]], run: dict[str, Any]
) -> str | None:
    """Write the estimate in model.toml's shape - every other setting (cut-offs, thresholds,
    prior, twin weights) as configured - and return LinkageModel.load's objection, if any."""
    config = _configured_model()
    for name, levels in estimated.items():
        config[name]["levels"] = {
            level: {"m": float(f"{e.m:.8g}"), "u": float(f"{e.u:.8g}")}
            for level, e in levels.items()
        }
    header = [
        "Estimated by bench.linkage_calibration --em (gateway.linkage.estimate) from a synthetic",
        f"population of {run['children']:,} children, noise {run['noise']}, seed {run['seed']}: "
        f"u from {run['sampled_pairs']:,} random pairs,",
        "m by EM with u fixed, one session per blocking rule, averaged. Everything but the",
        "[*.levels] tables is copied from the packaged model.toml.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_toml(config, header), encoding="utf-8")
    try:
        LinkageModel.load(path)
    except LinkageConfigError as exc:
        return str(exc)
    return None


def _toml(config: dict[str, Any], header: Sequence[str]) -> str:
    """TOML for a model config: top-level settings, then one [section] per table, with tables of
    numbers two levels down (a level's m and u) written inline."""
    lines = [f"# {line}" for line in header]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in config.items() if not _is_table(v)]

    def section(path: list[str], table: dict[str, Any]) -> None:
        entries = [
            f"{_toml_key(k)} = {_toml_value(v)}"
            for k, v in table.items()
            if not _is_table(v) or (len(path) >= 2 and not any(map(_is_table, v.values())))
        ]
        if entries:
            lines.extend(["", f"[{'.'.join(map(_toml_key, path))}]", *entries])
        for key, value in table.items():
            if _is_table(value) and not (
                len(path) >= 2 and not any(map(_is_table, value.values()))
            ):
                section([*path, key], value)

    for key, value in config.items():
        if _is_table(value):
            section([key], value)
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"cannot write {value!r} as TOML")


def _print_estimate(run: dict[str, Any]) -> None:
    print(
        f"\n{run['children']} children, noise {run['noise']}: {run['blocked_pairs']:,} blocked "
        f"pairs ({run['distinct_vectors_blocked']} distinct vectors; "
        f"{run['true_pairs_blocked']:,} of {run['true_pairs']:,} true pairs), "
        f"{run['sampled_pairs']:,} random pairs for u ({run['sampled_matches']} of them matches)"
    )
    for rule, session in run["sessions"].items():
        print(
            f"  session {rule:<13} {session['pairs']:>9,.0f} pairs, lambda "
            f"{session['match_share']:.4f} (true {session['true_match_share']:.4f}), "
            f"{session['iterations']} iterations"
            f"{'' if session['converged'] else ' (not converged)'}, "
            f"left out: {', '.join(session['left_out'])}"
        )
    full = run["full_em"]
    print(
        f"  full EM on all blocked pairs: lambda {full['match_share']:.4f} "
        f"(true {full['true_match_share']:.4f}), "
        f"{full['iterations']} iterations{'' if full['converged'] else ' (not converged)'}"
    )
    print(
        f"  {'field':<13} {'level':<10} | {'configured m, u, bits':^27} | "
        f"{'true m, u, bits':^27} | {'estimated m, u, bits':^27} | full EM bits"
    )
    for row in run["levels"]:
        cells = " | ".join(_cell(row[column]) for column in ("configured", "true", "estimated"))
        print(
            f"  {row['field']:<13} {row['level']:<10} | {cells} | "
            f"{_bits(row['full_em']['weight']):>7}"
        )
    for name, summary in run["frequencies"].items():
        print(
            f"  {name} names: {summary['names_listed']} listed (held by "
            f"{summary['records_with_a_listed_name']:,} of {summary['records']:,} records), "
            f"sum of squared shares {summary['sum_of_squared_shares']} (configured EXACT u "
            f"{summary['configured_exact_u']}); adjustment {summary['adjustment_bits_min']} to "
            f"{summary['adjustment_bits_max']} bits, "
            f"unlisted +{summary['adjustment_bits_unlisted']}"
        )
    timings = run["timings"]
    print("  took " + ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in timings.items()))


def _cell(value: dict[str, float | None]) -> str:
    m, u = value["m"], value["u"]
    if m is None or u is None:
        return f"{'-':^27}"
    return f"{m:>8.2g} {u:>8.2g} {_bits(value['weight']):>7}"


def _bits(weight: float | None) -> str:
    return "-inf" if weight is None else f"{weight:+.1f}"


def run_estimates(args: argparse.Namespace) -> None:
    runs = []
    several = len(args.children) * len(args.noise) > 1
    for children in args.children:
        for noise in args.noise:
            run, estimated, frequencies = estimate_from_records(
                children, noise, args.seed, args.with_former, args.sample, args.smoothing
            )
            _print_estimate(run)
            if args.write is not None:
                path = args.write
                if several:
                    path = path.with_name(f"{path.stem}-{noise}-{children}{path.suffix}")
                refused = write_estimated_model(path, estimated, run)
                names = path.with_name(f"{path.stem}.frequencies.json")
                frequencies.save(names)
                run["written"] = {"model": str(path), "frequencies": str(names)}
                run["model_refused"] = refused
                print(f"  wrote {path} and {names}")
                if refused:
                    print(f"  LinkageModel.load refuses the estimate: {refused}")
            runs.append(run)
    out = args.out or RESULTS / "linkage_estimate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "linkage_estimate", "runs": runs}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[20_000])
    parser.add_argument("--noise", nargs="+", default=["medium", "high"])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[14, 16, 18, 20, 22])
    parser.add_argument("--with-former", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--model", type=Path, default=None, help="a model file to calibrate (default: packaged)"
    )
    parser.add_argument(
        "--em", action="store_true", help="estimate m and u from the records (EM) instead"
    )
    parser.add_argument(
        "--sample", type=int, default=1_000_000, help="--em: random pairs for u (Splink's way)"
    )
    parser.add_argument(
        "--smoothing", type=float, default=0.5, help="--em: pseudo-count per level, in pairs"
    )
    parser.add_argument(
        "--write", type=Path, default=None, help="--em: write the estimated model here (TOML)"
    )
    args = parser.parse_args()
    if args.em:
        run_estimates(args)
        return
    args.out = args.out or RESULTS / "linkage_calibration.json"
    model = LinkageModel.load(args.model)
    timing = time_scoring()
    print(
        f"Person.from_record {timing['person_from_record_us']} us, "
        f"score {timing['score_us']} us per pair"
    )
    runs = []
    for children in args.children:
        for noise in args.noise:
            run = calibrate(children, noise, args.seed, args.thresholds, args.with_former, model)
            runs.append(run)
            _print(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "linkage_calibration", "timing": timing, "runs": runs}, indent=2)
    )


def _print(run: dict[str, Any]) -> None:
    print(
        f"\n{run['children']} children, noise {run['noise']}: {run['true_pairs']} true pairs,"
        f" {run['non_match_pairs']} non-match pairs ({run['twin_pairs']} twins);"
        f" copy vs copy {run['copy_vs_copy_bands']}"
    )
    print("  link  pair recall  false pairs  twins  lookup precision  lookup recall  ambiguous")
    for threshold, row in run["by_threshold"].items():
        print(
            f"  {float(threshold):>4}  {row['pair_recall']:>11}  {row['pair_false_links']:>11}"
            f"  {row['twins_linked']:>5}  {row['lookup_precision']:>16}"
            f"  {row['lookup_recall']:>13}  {row['ambiguous_lookups']:>9}"
        )


if __name__ == "__main__":
    main()
