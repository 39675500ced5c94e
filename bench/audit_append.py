"""What one hash chain costs with several writers: audit appends per second into PostgreSQL from
one gateway process and from three at once (each its own process and pool, all serialised on the
chain's advisory lock), beside the SQLite file for reference.

    python -m bench.audit_append --records 600 --in-flight 32

Two ways of appending, per writer: `sequential` (each append awaited before the next: one
transaction per record, the worst case) and `concurrent` (`--in-flight` appends at a time, as
lookups finishing together arrive: group commit puts them in shared transactions). PostgreSQL
(127.0.0.1:5432, database test) must be running; the run uses a schema of its own and removes it.
Prints a table and writes bench/results/audit_append.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.report import write_report
from gateway.audit import (
    Access,
    AuditRecord,
    AuditStore,
    CheckpointKeys,
    PostgresAuditStore,
    SqliteAuditStore,
    upgrade_schema,
    utc_now,
    writer_role,
)

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
KEY = CheckpointKeys.signing_with(Ed25519PrivateKey.from_private_bytes(b"k" * 32))


@dataclass(frozen=True)
class Result:
    store: str
    writers: int
    mode: str
    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


def _record(writer: int, i: int) -> AuditRecord:
    access = Access(
        at=utc_now(),
        subject=f"bench:writer-{writer}",
        name="Bench",
        role="gp",
        organisation="BENCH",
        purpose="DIRECT_CARE",
        justification=None,
        child_ref=f"nhs:{i:032x}",
    )
    return AuditRecord(
        access=access,
        audit_id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        outcome="FOUND",
        denial=None,
        error_code=None,
        policy_revision="bench",
    )


async def _append(store: AuditStore, writer: int, records: int, in_flight: int) -> float:
    """Seconds to append `records`, `in_flight` at a time (1: one after another)."""
    started = time.perf_counter()
    for start in range(0, records, in_flight):
        batch = range(start, min(records, start + in_flight))
        await asyncio.gather(*(store.append(_record(writer, i)) for i in batch))
    return time.perf_counter() - started


def _postgres_writer(schema: str, writer: int, records: int, in_flight: int, at: float) -> float:
    store = PostgresAuditStore(POSTGRES_URL, schema, checkpoint_key=KEY)
    try:
        asyncio.run(_append(store, writer, 10, 1))  # connections open before the clock starts
        time.sleep(max(0.0, at - time.time()))  # every writer starts together
        return asyncio.run(_append(store, writer, records, in_flight))
    finally:
        store.close()


def _postgres(writers: int, records: int, in_flight: int) -> float:
    """Wall-clock seconds for `writers` processes to append `records` each."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    upgrade_schema(POSTGRES_URL, schema)
    try:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(writers, mp_context=spawn) as pool:
            at = time.time() + 3.0
            runs = [
                pool.submit(_postgres_writer, schema, w, records, in_flight, at)
                for w in range(writers)
            ]
            [run.result() for run in runs]
            elapsed = time.time() - at
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            (count,) = conn.execute("SELECT count(*) FROM audit_log").fetchone() or (0,)
        assert count == writers * (records + 10), count
        check = PostgresAuditStore(POSTGRES_URL, schema, checkpoint_key=KEY)
        assert check.verify().ok
        check.close()
        return elapsed
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{writer_role(schema)}"')


def _sqlite(records: int, in_flight: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteAuditStore(Path(tmp) / "audit.sqlite3", checkpoint_key=KEY)
        try:
            return asyncio.run(_append(store, 0, records, in_flight))
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600, help="appends per writer")
    parser.add_argument("--in-flight", type=int, default=32, help="concurrent appends per writer")
    args = parser.parse_args()
    modes: dict[str, int] = {"sequential": 1, "concurrent": args.in_flight}
    runs: list[tuple[str, int, str, Callable[[], float]]] = []
    for mode, in_flight in modes.items():
        runs.append(("sqlite", 1, mode, partial(_sqlite, args.records, in_flight)))
        for writers in (1, 3):
            runs.append(
                ("postgres", writers, mode, partial(_postgres, writers, args.records, in_flight))
            )
    results = []
    print(f"{'store':<9} {'writers':>7} {'mode':<11} {'records':>8} {'appends/s':>10}")
    for store, writers, mode, run in runs:
        result = Result(store, writers, mode, writers * args.records, run())
        results.append(result)
        print(f"{store:<9} {writers:>7} {mode:<11} {result.records:>8} {result.per_second:>10.0f}")
    write_report(
        "audit_append",
        RESULTS / "audit_append.json",
        records_per_writer=args.records,
        in_flight=args.in_flight,
        results=[asdict(r) | {"per_second": round(r.per_second)} for r in results],
    )


if __name__ == "__main__":
    main()
