"""Connector record store benchmark: load time and lookup latency of the file-backed backend, and
the candidate search (blocking) connectors answer demographic lookups with.

    python -m bench.records --records 100000 200000 --noise medium high --recall-children 100000

Three measurements:
- identifier lookups: load time and lookup latency of `FileBackend` over records holding only
  identifiers, so the figures are the identifier index alone;
- candidate search: build time, memory and search latency of `CandidateIndex` over the health
  records of a synthetic population, searched with the demographics the education records hold
  (noisy copies of the same children, as a real demographic lookup would bring);
- blocking recall: on a population at each noise level, the share of lookups, made with a child's
  health-record demographics, whose candidates from the education and the social care records
  include that child's record. The gateway can only link what blocking returns, so this bounds
  the recall of demographic matching.

Prints a table and writes bench/results/records.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from bench.report import write_report
from connectors.protocol import (
    Caller,
    ConnectorRecord,
    Demographics,
    FieldId,
    Identifiers,
    LookupRequest,
)
from connectors.records import FileBackend
from connectors.search import DEFAULT_LIMIT, CandidateIndex
from connectors.synthetic import NoiseLevel, NoiseProfile, Population, generate_population

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 11
PROBES = 2000


def _request(nhs: str) -> LookupRequest:
    return LookupRequest(
        request_id="bench",
        deadline=datetime(2100, 1, 1, tzinfo=UTC),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="BENCH"),
        identifiers=Identifiers(nhs_number=nhs),
        fields=[FieldId.NAME],
    )


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)


def measure(count: int, probes: int = PROBES) -> dict[str, float]:
    template = ConnectorRecord(
        record_id="R%d",
        identifiers=Identifiers(nhs_number="9%09d", upn="U%012d"),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    ).model_dump_json()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        path.write_text("".join(template % (i, i, i) + "\n" for i in range(count)))
        started = time.perf_counter()
        backend = FileBackend.from_jsonl(path)
        load_s = time.perf_counter() - started
    step = max(1, count // probes)
    requests = [_request(f"9{i:09d}") for i in range(0, count, step)]

    async def lookups() -> list[float]:
        timings = []
        for request in requests:
            t = time.perf_counter()
            await backend.lookup(request)
            timings.append((time.perf_counter() - t) * 1e6)
        return timings

    timings = asyncio.run(lookups())
    return {
        "records": count,
        "load_s": round(load_s, 3),
        "lookup_p50_us": round(statistics.median(timings), 2),
        "lookup_p99_us": _percentile(timings, 99),
    }


def _demographics(record: ConnectorRecord) -> Demographics | None:
    """What a practitioner holding this record would look the child up with; None when the record
    lacks a name, date of birth or address."""
    name, address = record.name, record.address
    if name is None or record.date_of_birth is None or address is None:
        return None
    return Demographics(
        given=name.given,
        family=name.family,
        date_of_birth=record.date_of_birth,
        postcode=address.postcode,
        sex=record.sex,
        former_family=name.former_family[0] if name.former_family else None,
    )


def _population(children: int, noise: NoiseLevel) -> Population:
    """A population whose objects the collector then leaves alone, as a loaded connector's are
    (see `FileBackend.from_jsonl`); otherwise full collections over millions of records would be
    timed as part of building and searching."""
    population = generate_population(SEED, children, noise=NoiseProfile.preset(noise))
    gc.freeze()
    return population


def measure_search(count: int, probes: int = PROBES) -> dict[str, Any]:
    """Build and search latency of a `CandidateIndex` over `count` health records."""
    population = _population(count, "medium")
    started = time.perf_counter()
    index = CandidateIndex(population.health)
    build_s = time.perf_counter() - started
    gc.freeze()
    tracemalloc.start()
    traced = CandidateIndex(population.health)
    index_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    del traced
    step = max(1, len(population.education) // probes)
    queries = [
        query
        for record in population.education[::step]
        if (query := _demographics(record)) is not None
    ]
    timings, sizes = [], []
    for query in queries:
        t = time.perf_counter()
        found = index.search(query)
        timings.append((time.perf_counter() - t) * 1e6)
        sizes.append(len(found))
    return {
        "records": count,
        "build_s": round(build_s, 3),
        "index_mb": round(index_mb, 1),
        "searches": len(queries),
        "search_p50_us": round(statistics.median(timings), 2),
        "search_p99_us": _percentile(timings, 99),
        "mean_candidates": round(statistics.mean(sizes), 2),
    }


def measure_recall(children: int, noise: NoiseLevel) -> list[dict[str, Any]]:
    """Blocking recall in each copying source for a population of `children` at `noise`."""
    population = _population(children, noise)
    health_of = {
        population.truth["health", record.record_id]: record for record in population.health
    }
    rows = []
    for source in ("education", "social_care"):
        records = population.records(source)
        index = CandidateIndex(records)
        found = first = lookups = at_cap = 0
        sizes = []
        for record in records:
            query = _demographics(health_of[population.truth[source, record.record_id]])
            if query is None:
                continue
            candidates = index.search(query)
            lookups += 1
            found += any(c.record_id == record.record_id for c in candidates)
            first += bool(candidates) and candidates[0].record_id == record.record_id
            at_cap += len(candidates) == DEFAULT_LIMIT
            sizes.append(len(candidates))
        rows.append(
            {
                "noise": noise,
                "source": source,
                "records": len(records),
                "lookups": lookups,
                "recall": round(found / lookups, 5),
                "missed": lookups - found,
                "share_first": round(first / lookups, 4),
                "mean_candidates": round(statistics.mean(sizes), 2),
                "share_at_cap": round(at_cap / lookups, 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 200_000])
    parser.add_argument(
        "--noise", nargs="+", default=["medium", "high"], choices=get_args(NoiseLevel)
    )
    parser.add_argument("--recall-children", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "records.json")
    args = parser.parse_args()
    lookups = [measure(n) for n in args.records]
    searches = [measure_search(n) for n in args.records]
    recall = [row for level in args.noise for row in measure_recall(args.recall_children, level)]
    write_report(
        "records",
        args.out,
        candidate_limit=DEFAULT_LIMIT,
        runs=lookups,
        candidate_search=searches,
        blocking_recall=recall,
    )
    for row in lookups:
        print(
            f"{row['records']:>8} records  load {row['load_s']:>6} s  lookup p50"
            f" {row['lookup_p50_us']:>6} us  p99 {row['lookup_p99_us']:>6} us"
        )
    for row in searches:
        print(
            f"{row['records']:>8} records  candidate index build {row['build_s']:>6} s"
            f"  {row['index_mb']:>6} MB  search p50 {row['search_p50_us']:>7} us"
            f"  p99 {row['search_p99_us']:>7} us  {row['mean_candidates']} candidates"
        )
    for row in recall:
        print(
            f"noise {row['noise']:<6} {row['source']:<11} {row['records']:>7} records"
            f"  recall {row['recall']:.5f} ({row['missed']} missed of {row['lookups']})"
            f"  first {row['share_first']:.2%}  {row['mean_candidates']} candidates,"
            f" {row['share_at_cap']:.2%} at the cap"
        )


if __name__ == "__main__":
    main()
