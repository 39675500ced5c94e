"""The locator at scale (issue #16): publish rate, store size per million holdings, locate latency.

    python -m bench.locator --holdings 300000 --agencies 60 --locates 2000

For each store - a SQLite file, and a PostgreSQL schema of its own on 127.0.0.1:5432 (database
`test`, dropped afterwards; `--no-postgres` leaves it out) - it runs `childlookup locator serve`
as a process of its own on loopback (uvicorn, uvloop, its JSON logs), then:

- publishes `--holdings` holdings: children whose NHS-number pseudonyms are held by three
  agencies each, drawn at random out of `--agencies`, every agency publishing with the SDK's
  `LocatorPublisher` in signed batches of 5,000 (four agencies at a time), timed end to end over
  HTTP: pseudonyms/s;
- measures the store: the SQLite file (WAL checkpointed) or the tables' total relation size in
  PostgreSQL, per million holdings;
- times a no-change sync of one agency (list its holdings, diff, publish nothing);
- asks `--locates` times, one at a time, as the gateway asks (two pseudonyms, one held and one
  not, signed), and reports p50/p99 round trips.

Prints a table and writes bench/results/locator.json. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

from bench.load import percentile
from connectors.locator import (
    LOCATE_PATH,
    LocateRequest,
    LocatorPublisher,
    PseudonymRef,
    new_pseudonym_key,
    pseudonym,
)
from connectors.protocol import Identifiers
from connectors.serving import free_port
from connectors.trust import request_authorization, write_public_key

RESULTS: Final = Path(__file__).resolve().parent / "results"
POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
BATCH: Final = 5_000
HOLDERS_PER_CHILD: Final = 3
PARALLEL_AGENCIES: Final = 4
KEY = new_pseudonym_key("bench")


def _agencies(count: int, folder: Path) -> dict[str, ec.EllipticCurvePrivateKey]:
    keys = {f"la_{n:05d}": ec.generate_private_key(ec.SECP256R1()) for n in range(count)}
    entries = []
    for name, key in keys.items():
        write_public_key(folder / f"{name}.pub.pem", key.public_key())
        entries.append({"name": name, "public_key_file": f"{name}.pub.pem"})
    (folder / "agencies.json").write_text(json.dumps({"agencies": entries}))
    return keys


def _holdings(children: int, agencies: list[str]) -> dict[str, list[Identifiers]]:
    rng = random.Random(16)
    held: dict[str, list[Identifiers]] = defaultdict(list)
    for child in range(children):
        identifiers = Identifiers(nhs_number=str(9_000_000_000 + child))
        for agency in rng.sample(agencies, HOLDERS_PER_CHILD):
            held[agency].append(identifiers)
    return held


class _Locator:
    """`childlookup locator serve` as its own process."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "locator", "serve", "--port", str(self.port)],
            env=os.environ
            | env
            | {
                "CHILDLOOKUP_LOCATOR_STATE_DIR": str(folder / "state"),
                "CHILDLOOKUP_LOCATOR_AGENCIES_FILE": str(folder / "agencies.json"),
                "CHILDLOOKUP_LOCATOR_GATEWAY_PUBLIC_KEY_FILE": str(folder / "gateway.pub.pem"),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("the locator did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)


async def _publish(
    locator: _Locator,
    keys: dict[str, ec.EllipticCurvePrivateKey],
    held: dict[str, list[Identifiers]],
) -> dict[str, Any]:
    limit = asyncio.Semaphore(PARALLEL_AGENCIES)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(agency: str) -> int:
            async with limit:
                publisher = LocatorPublisher(
                    agency, locator.url, keys[agency], [KEY], client, batch_size=BATCH
                )
                return (await publisher.sync(held[agency])).published

        started = time.perf_counter()
        published = sum(await asyncio.gather(*(one(agency) for agency in held)))
        elapsed = time.perf_counter() - started
        biggest = max(held, key=lambda agency: len(held[agency]))
        publisher = LocatorPublisher(biggest, locator.url, keys[biggest], [KEY], client)
        sync_started = time.perf_counter()
        unchanged = await publisher.sync(held[biggest])
        sync_s = time.perf_counter() - sync_started
    assert unchanged.published == unchanged.withdrawn == 0
    return {
        "holdings": published,
        "publish_s": round(elapsed, 2),
        "publish_per_s": round(published / elapsed),
        "no_change_sync": {"holdings": len(held[biggest]), "seconds": round(sync_s, 3)},
    }


async def _locate(
    locator: _Locator, gateway: ec.EllipticCurvePrivateKey, children: int, count: int
) -> dict[str, Any]:
    rng = random.Random(7)
    timings: list[float] = []
    async with httpx.AsyncClient() as client:
        for n in range(count):
            held = pseudonym(KEY, "nhs_number", str(9_000_000_000 + rng.randrange(children)))
            absent = pseudonym(KEY, "upn", f"A{rng.randrange(10**12):012d}")
            body = (
                LocateRequest(
                    request_id=uuid.uuid4().hex,
                    pseudonyms=[
                        PseudonymRef(key_version=KEY.version, value=held),
                        PseudonymRef(key_version=KEY.version, value=absent),
                    ],
                )
                .model_dump_json()
                .encode()
            )
            started = time.perf_counter()
            authorization = request_authorization(
                gateway, body, issuer="childlookup-gateway", audience="childlookup-locator"
            )
            answer = await client.post(
                locator.url + LOCATE_PATH, content=body, headers={"authorization": authorization}
            )
            timings.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200 or len(answer.json()["holders"]) != 1:
                raise RuntimeError(f"locate {n} answered {answer.status_code}")
    return {
        "locates": count,
        "p50_ms": percentile(timings, 50),
        "p99_ms": percentile(timings, 99),
    }


def _sqlite_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _postgres_bytes(schema: str) -> int:
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(row[0] if row else 0)


def _run(store: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    keys = _agencies(args.agencies, folder)
    gateway = ec.generate_private_key(ec.SECP256R1())
    write_public_key(folder / "gateway.pub.pem", gateway.public_key())
    children = args.holdings // HOLDERS_PER_CHILD
    held = _holdings(children, list(keys))
    schema = f"bench_locator_{uuid.uuid4().hex[:8]}"
    if store == "sqlite":
        database = folder / "locator.sqlite3"
        env = {"CHILDLOOKUP_LOCATOR_DATABASE_URL": f"sqlite:///{database}"}
    else:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        env = {
            "CHILDLOOKUP_LOCATOR_DATABASE_URL": POSTGRES_URL,
            "CHILDLOOKUP_LOCATOR_DATABASE_SCHEMA": schema,
        }
    locator = _Locator(folder, env)
    try:
        result = asyncio.run(_publish(locator, keys, held))
        result |= asyncio.run(_locate(locator, gateway, children, args.locates))
    finally:
        locator.stop()
    try:
        size = _sqlite_bytes(database) if store == "sqlite" else _postgres_bytes(schema)
    finally:
        if store == "postgresql":
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    result["store_bytes"] = size
    result["mb_per_million_holdings"] = round(size / result["holdings"] * 1e6 / 2**20, 1)
    return {"store": store, "agencies": args.agencies} | result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdings", type=int, default=300_000)
    parser.add_argument("--agencies", type=int, default=60)
    parser.add_argument("--locates", type=int, default=2_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    stores = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    results = []
    for store in stores:
        with tempfile.TemporaryDirectory() as folder:
            results.append(_run(store, args, Path(folder)))
    print(
        f"{'store':<11} {'holdings':>9} {'publish/s':>10} {'MB/M holdings':>14}"
        f" {'no-change sync':>15} {'locate p50':>11} {'p99':>7}"
    )
    for r in results:
        sync = r["no_change_sync"]
        print(
            f"{r['store']:<11} {r['holdings']:>9} {r['publish_per_s']:>10} "
            f"{r['mb_per_million_holdings']:>14} {sync['seconds']:>9}s/{sync['holdings']:<5}"
            f" {r['p50_ms']:>9}ms {r['p99_ms']:>5}ms"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "locator.json").write_text(json.dumps({"runs": results}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'locator.json'}")


if __name__ == "__main__":
    main()
