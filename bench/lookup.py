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
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.report import write_report
from bench.stack import running_stack
from connectors.synthetic import generate_population, write_population

RESULTS = Path(__file__).resolve().parent / "results"
QUERY = """query($nhs: String!) { child(nhsNumber: $nhs, purpose: SAFEGUARDING_ENQUIRY) {
  outcome complete child { name { given family } involvements { service organisation } }
  sources { source status latencyMs } withheld { field reason } auditId } }"""
MAX_SECONDS_PER_PHASE = 120


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


class _Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the gateway's two cores,
    so it must cost as little as possible or it would be measuring itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        head = f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._writer.write(head.encode() + body)
        status_line, *header_lines = (
            (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        )
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def _drive(
    url: str, token: str, nhs_numbers: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(nhs_numbers[i % len(nhs_numbers)])
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    target = httpx.URL(url)
    stop_at = time.monotonic() + MAX_SECONDS_PER_PHASE

    async def worker() -> None:
        connection = await _Connection.open(target.host, target.port or 80)
        try:
            while not queue.empty() and time.monotonic() < stop_at:
                nhs = queue.get_nowait()
                payload = json.dumps({"query": QUERY, "variables": {"nhs": nhs}}).encode()
                started = time.perf_counter()
                status, raw = await connection.post(target.path, payload, headers)
                latencies.append((time.perf_counter() - started) * 1000)
                body = json.loads(raw)
                if status != 200 or body.get("errors"):
                    outcomes[f"ERROR:{status}"] += 1
                    continue
                lookup = body["data"]["child"]
                outcomes[lookup["outcome"]] += 1
                statuses.update(f"{s['source']}:{s['status']}" for s in lookup["sources"])
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "p99_ms": _percentile(latencies, 99),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "throughput_rps": round(len(latencies) / wall, 1),
        "outcomes": dict(outcomes),
        "source_statuses": dict(statuses),
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
