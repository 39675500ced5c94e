"""Throughput and latency of the deployment shapes of issue #11, side by side in one run.

The same lookup load (bench.lookup's keep-alive driver, answer cache off, a different child per
lookup) against the gateway as one or two worker processes, with the audit log in SQLite or in
PostgreSQL and the limits in process or in Redis:

    python -m bench.scale --requests 600 --concurrency 16

PostgreSQL (127.0.0.1:5432, database test) and Redis (127.0.0.1:6379) must be running; each run
uses a schema and a key prefix of its own and removes them. Prints a table and writes
bench/results/scale.json. Traffic goes only to 127.0.0.1 and every phase is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.lookup import _drive
from bench.report import write_report
from bench.stack import redis_limits, running_stack
from connectors.synthetic import generate_population, write_population
from gateway.audit import upgrade_schema, writer_role

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Shape:
    workers: int
    audit: str  # "sqlite" or "postgres"
    limits: str  # "process" or "redis"

    @property
    def name(self) -> str:
        return (
            f"{self.workers} worker{'s' if self.workers > 1 else ''}, {self.audit}, {self.limits}"
        )


SHAPES = (
    Shape(1, "sqlite", "process"),
    Shape(1, "sqlite", "redis"),
    Shape(1, "postgres", "process"),
    Shape(1, "postgres", "redis"),
    Shape(2, "sqlite", "redis"),
    Shape(2, "postgres", "redis"),
)


def _env(shape: Shape, schema: str) -> dict[str, str]:
    if shape.audit == "postgres":
        return {"CHILDLOOKUP_DATABASE_URL": POSTGRES_URL, "CHILDLOOKUP_DATABASE_SCHEMA": schema}
    return {}


def _drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'DROP ROLE IF EXISTS "{writer_role(schema)}"')


def run(
    shape: Shape, work: Path, nhs: list[str], requests: int, concurrency: int
) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    state = work / f"{shape.workers}-{shape.audit}-{shape.limits}"
    try:
        if shape.audit == "postgres":
            upgrade_schema(POSTGRES_URL, schema)
        with contextlib.ExitStack() as stack:
            limits = stack.enter_context(redis_limits()) if shape.limits == "redis" else {}
            running = stack.enter_context(
                running_stack(
                    state,
                    work / "population",
                    gateway_env=_env(shape, schema) | limits,
                    workers=shape.workers,
                )
            )
            asyncio.run(_drive(running.graphql_url, running.token, nhs, 60, concurrency))
            measured = asyncio.run(
                _drive(running.graphql_url, running.token, nhs, requests, concurrency)
            )
    finally:
        if shape.audit == "postgres":
            _drop_schema(schema)
    return {"shape": shape.name, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="childlookup-scale-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=17, children=args.children)
        write_population(population, work / "population")
        nhs = [r.identifiers.nhs_number for r in population.health if r.identifiers.nhs_number]
        for shape in SHAPES:
            runs.append(run(shape, work, nhs, args.requests, args.concurrency))
            r = runs[-1]
            print(
                f"{r['shape']:<32} {r['throughput_rps']:>7} lookups/s  p50 {r['p50_ms']:>7} ms"
                f"  p99 {r['p99_ms']:>7} ms  outcomes {r['outcomes']}",
                flush=True,
            )
    write_report("scale", args.out, concurrency=args.concurrency, runs=runs)
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
