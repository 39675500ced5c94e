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
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from connectors.protocol import ConnectorRecord
from connectors.synthetic import NoiseLevel, NoiseProfile, Source, generate_population
from gateway.linkage import Band, LinkageModel, Person

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


def calibrate(
    children: int, noise: NoiseLevel, seed: int, thresholds: Sequence[float], with_former: bool
) -> dict[str, Any]:
    population = generate_population(seed, children, noise=NoiseProfile.preset(noise))
    run = _Run(LinkageModel.load(), thresholds)
    copies = [
        _Record((source, r.record_id), population.truth[source, r.record_id], Person.from_record(r))
        for source in _COPIES
        for r in population.records(source)
    ]
    by_child: defaultdict[str, list[_Record]] = defaultdict(list)
    blocks: defaultdict[Hashable, list[_Record]] = defaultdict(list)
    for copy in copies:
        by_child[copy.child].append(copy)
        for key in _blocking_keys(copy.person):
            blocks[key].append(copy)
    households = {
        population.truth["health", r.record_id]: (r.address, r.date_of_birth)
        for r in population.health
    }
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
        _lookup(run, query, own, list(others.values()), twins)
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
) -> None:
    model = run.model
    scored = [(c, model.score(query, c.person).weight, True) for c in own]
    scored += [(c, model.score(query, c.person).weight, False) for c in others]
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
        if _ambiguous([c for c, _ in linked], model):
            tally.ambiguous_lookups += 1
            tally.records_missed += len(own)
            continue
        right = sum(is_match for _, is_match in linked)
        tally.links_right += right
        tally.links_wrong += len(linked) - right
        tally.records_missed += len(own) - right


def _ambiguous(linked: Sequence[_Record], model: LinkageModel) -> bool:
    """gateway.match's rule without identifiers: two links in one source, or two linked records
    the model rejects as one person."""
    sources = Counter(c.key[0] for c in linked)
    if any(count > 1 for count in sources.values()):
        return True
    return any(
        model.score(a.person, b.person).band is Band.REJECTED for a, b in combinations(linked, 2)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[20_000])
    parser.add_argument("--noise", nargs="+", default=["medium", "high"])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[14, 16, 18, 20, 22])
    parser.add_argument("--with-former", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "linkage_calibration.json")
    args = parser.parse_args()
    timing = time_scoring()
    print(
        f"Person.from_record {timing['person_from_record_us']} us, "
        f"score {timing['score_us']} us per pair"
    )
    runs = []
    for children in args.children:
        for noise in args.noise:
            run = calibrate(children, noise, args.seed, args.thresholds, args.with_former)
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
