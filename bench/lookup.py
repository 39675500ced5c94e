"""Lookup latency and throughput benchmark: real connectors, real gateway, real HTTP on loopback.

Starts the three reference connectors (each with an added latency) and the gateway as separate
processes, then drives lookups from this process: first one at a time (latency), then with
concurrency (throughput). The answer cache is off and each lookup asks for a different child, so
every lookup pays for policy, fan-out and a committed audit write.

    python -m bench.lookup --latency-ms 0 20 --requests 400 --concurrency 16

Prints a table and writes bench/results/lookup.json. Traffic goes only to 127.0.0.1, and every
loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.load import drive, percentile
from bench.report import write_report
from bench.stack import running_stack
from connectors.synthetic import generate_population, write_population

RESULTS = Path(__file__).resolve().parent / "results"
QUERY = """query($nhs: String!) {
  child(identify: {nhsNumber: $nhs}, purpose: SAFEGUARDING_ENQUIRY) {
  outcome complete child { name { given family } involvements { service organisation } }
  sources { source status latencyMs } withheld { field reason } auditId } }"""


def _read(body: dict[str, Any]) -> tuple[str, list[str], bool]:
    lookup = body["data"]["child"]
    statuses = [f"{s['source']}:{s['status']}" for s in lookup["sources"]]
    return lookup["outcome"], statuses, False  # QUERY does not ask which lookups asked again


async def _drive(
    url: str, token: str, nhs_numbers: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    children = [nhs_numbers[i % len(nhs_numbers)] for i in range(requests)]
    phase = await drive(url, headers, QUERY, _read, children, concurrency)
    latencies = phase.latencies_ms
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "throughput_rps": round(len(latencies) / phase.wall_s, 1),
        "outcomes": dict(phase.outcomes),
        "source_statuses": dict(phase.statuses),
    }


def run(latency_ms: float, requests: int, concurrency: int, children: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="childlookup-bench-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=11, children=children)
        write_population(population, work / "population")
        nhs_numbers = [
            r.identifiers.nhs_number for r in population.health if r.identifiers.nhs_number
        ]
        with running_stack(work, work / "population", latency_ms=latency_ms) as stack:
            url, token = stack.graphql_url, stack.token
            asyncio.run(_drive(url, token, nhs_numbers, 50, 1))  # warm-up
            sequential = asyncio.run(_drive(url, token, nhs_numbers, requests, 1))
            concurrent = asyncio.run(_drive(url, token, nhs_numbers, requests, concurrency))
    return {
        "connector_latency_ms": latency_ms,
        "sequential": sequential,
        "concurrent": concurrent,
        "p50_over_slowest_connector": (
            round(sequential["p50_ms"] / latency_ms, 3) if latency_ms else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS / "lookup.json")
    args = parser.parse_args()
    runs = [
        run(latency, args.requests, args.concurrency, args.children) for latency in args.latency_ms
    ]
    write_report("lookup", args.out, runs=runs)
    print(f"{'connector ms':>12} {'mode':>10} {'p50':>8} {'p95':>8} {'p99':>8} {'req/s':>8}")
    for r in runs:
        for mode in ("sequential", "concurrent"):
            m = r[mode]
            print(
                f"{r['connector_latency_ms']:>12} {mode + str(m['concurrency']):>10}"
                f" {m['p50_ms']:>8} {m['p95_ms']:>8} {m['p99_ms']:>8} {m['throughput_rps']:>8}"
            )
        print(f"{'':>12} outcomes {r['sequential']['outcomes']}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
