"""The SQL connector at scale (issue #14): identifier lookups and demographic search over case
records databases of N children, beside the in-memory file connector over the same records.

    python -m bench.sql_connector --children 10000 100000 1000000 --requests 100 --rounds 3

For each N it builds one set of records - children drawn household by household by the synthetic
generator (`draw_children`: siblings sharing a family name and an address, twins, names, dates of
birth and Leeds postcodes as the demo's population has them), every child with their carers, and
the share known to children's services with an allocated worker and open episodes - and then:

- writes them into the worked case records schema (`la_case_records.write_records`, executemany
  in batches) in a SQLite file and in a PostgreSQL schema of its own on 127.0.0.1:5432 (database
  `test`, dropped afterwards), and into a JSON Lines file for the file connector;
- times the full blocking-key build (`refresh_blocking_keys(full=True)`) on each database;
- serves each with `create_sql_app`, and the file with `create_reference_app("social_care")`, as
  separate processes on loopback (uvicorn, uvloop, the CLI's JSON logs), and drives them one
  lookup at a time over HTTP, in rounds whose server order rotates: NHS number, UPN, and
  demographic searches exact, with a keying slip in one name, and with day and month swapped
  (given and family name swapped when the date cannot be), as `connectors.synthetic.noise` makes
  them. Every SQL answer is checked against the file connector's answer to the same request.

Per server: p50/p95 per kind of lookup, the share of lookups whose answer holds the child, start-up
time, RSS after start-up and after the run and its peak (/proc/<pid>/status); for the SQL
servers also the rows each demographic search fetched (the candidate query's rows, counted in the
server where they are handed to ranking) and SQL statements per lookup (a SQLAlchemy
`after_cursor_execute` listener). Per database: load time, full blocking-key build time, keys,
size. Prints a table and writes bench/results/sql_connector.json. Traffic goes only to
127.0.0.1, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
from sqlalchemy import Engine, event, insert, text
from starlette.types import ASGIApp, Receive, Scope, Send

import connectors.sql.backend as sql_backend
from bench.load import Connection, percentile
from bench.report import write_report
from bench.stack import wait_ready
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    Demographics,
    Identifiers,
    Indicators,
    Involvement,
    LookupRequest,
    LookupResponse,
    PersonName,
    RecordFlags,
)
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.search import rank_candidates
from connectors.serving import ServedApp, bind_socket, free_port, run, serve_all
from connectors.sql import create_engine, create_sql_app, refresh_blocking_keys
from connectors.sql import la_case_records as case_records
from connectors.sql.la_case_records.schema import children

# The writer's own record-to-rows mapping, so the bulk load writes exactly what it would.
from connectors.sql.la_case_records.writer import record_rows as case_record_rows
from connectors.synthetic import DEFAULT_TODAY, names
from connectors.synthetic.dates import age, primary_start, years_later
from connectors.synthetic.households import Child, draw_children
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.noise import misspell, swapped_day_month
from connectors.synthetic.services import CHILDRENS_SERVICES, EARLY_HELP, area_services

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 14
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
AGENCY = "social_care"
FIELDS = list(REFERENCE_AGENCIES[AGENCY].provides)
DATABASES: Final = ("sqlite", "postgres")
KINDS: Final = ("nhs_number", "upn", "demographics_exact", "demographics_typo", "demographics_swap")
COUNTERS_PATH = "/bench/counters"
BLOCKING_TABLE = "childlookup_blocking_keys"  # the worked mapping's `blocking.table`
DEADLINE_S = 10.0
MAX_SECONDS_PER_PHASE = 120
START_TIMEOUT_S = 900
AS_OF: Final = datetime.combine(DEFAULT_TODAY, clock_time(6), tzinfo=UTC)

# Who the records are about, as shares of all children: held NHS number as in the synthetic
# social care records ("medium" noise), a former family name, shielding, and the children known
# to children's services (allocated worker, open episodes), dealt into statuses as the synthetic
# population deals them.
NHS_NUMBER_HELD = 0.70
FORMER_FAMILY = 0.02
SHIELDED = 0.015
KNOWN = 0.35
_NO_INDICATORS: Final = Indicators(
    child_protection_plan=False, looked_after=False, child_in_need=False, early_help=False
)
_STATUSES: Final = tuple(
    Indicators(
        child_protection_plan=plan, looked_after=looked_after, child_in_need=need, early_help=help_
    )
    for plan, looked_after, need, help_ in (
        (False, False, False, True),  # early help
        (False, False, True, False),  # child in need
        (True, False, True, False),  # child protection plan
        (False, True, True, False),  # looked after
    )
)
_STATUS_SHARES: Final = (0.40, 0.30, 0.13, 0.17)
_SCHOOL_AGE = 4
_LOAD_CHUNK = 5_000
"""Records per round of inserts when loading (about 5,000 children and 10,000 carers rows)."""


# --- the records -----------------------------------------------------------------------------


def build_records(count: int, seed: int = SEED) -> list[ConnectorRecord]:
    """`count` case records, one per child, in LA child id order (the order both connectors rank
    equally strong candidates in)."""
    rng = random.Random(seed)
    issuer = IdentifierIssuer(rng)
    services = area_services(rng, issuer, count, KNOWN, 0.0)
    was_enabled = gc.isenabled()
    gc.disable()  # millions of objects, all kept: the collector's passes would only cost time
    try:
        kids = draw_children(rng, issuer, services, count, DEFAULT_TODAY)
        records = []
        for number, kid in enumerate(kids, start=1):
            record_id = f"LA-{number:07d}"
            indicators, involvements = _NO_INDICATORS, []
            if rng.random() < KNOWN:
                indicators = rng.choices(_STATUSES, _STATUS_SHARES)[0]
                early_help = bool(indicators.early_help)
                worker = rng.choice(
                    services.early_help_leads if early_help else services.social_workers
                )
                involvements = [
                    Involvement(
                        service="Early help" if early_help else "Children's social care",
                        organisation=EARLY_HELP if early_help else CHILDRENS_SERVICES,
                        practitioner=worker,
                        lead=True,
                        since=_since(rng, kid),
                    )
                ]
            former = []
            if rng.random() < FORMER_FAMILY:
                former = [rng.choice([n for n in names.FAMILY if n != kid.family])]
            records.append(
                ConnectorRecord(
                    record_id=record_id,
                    identifiers=Identifiers(
                        nhs_number=kid.nhs_number if rng.random() < NHS_NUMBER_HELD else None,
                        upn=_upn(issuer, kid),
                        local_id=record_id,
                    ),
                    name=PersonName(given=kid.given, family=kid.family, former_family=former),
                    date_of_birth=kid.born,
                    sex=kid.sex,
                    address=kid.household.address,
                    carers=list(kid.household.carers),
                    involvements=involvements,
                    indicators=indicators,
                    flags=RecordFlags(shielded=rng.random() < SHIELDED),
                    as_of=AS_OF,
                )
            )
        return records
    finally:
        if was_enabled:
            gc.enable()


def _upn(issuer: IdentifierIssuer, kid: Child) -> str | None:
    """A school-age child's UPN, allocated by their primary school the year they started."""
    if age(kid.born, DEFAULT_TODAY) < _SCHOOL_AGE:
        return None
    started = primary_start(kid.born, DEFAULT_TODAY)
    return issuer.upn(kid.household.primary.establishment, started.year)


def _since(rng: random.Random, kid: Child) -> Any:
    earliest = max(kid.born, years_later(DEFAULT_TODAY, -3))
    return earliest + timedelta(days=rng.randint(0, max(0, (DEFAULT_TODAY - earliest).days)))


# --- the lookups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One lookup to send, and the record of the child it is about."""

    kind: str
    request: LookupRequest
    record_id: str


def build_probes(records: Sequence[ConnectorRecord], per_kind: int) -> list[Probe]:
    """`per_kind` lookups of each kind, each about a different child drawn at random."""
    rng = random.Random(SEED + 1)
    chosen = rng.sample(records, min(len(records), per_kind * 4))
    probes: list[Probe] = []
    for kind in KINDS:
        made = 0
        for record in chosen:
            if made == per_kind:
                break
            request = _request(rng, kind, record)
            if request is not None:
                probes.append(Probe(kind, request, record.record_id))
                made += 1
    return probes


def _request(rng: random.Random, kind: str, record: ConnectorRecord) -> LookupRequest | None:
    identifiers, demographics = Identifiers(), None
    if kind == "nhs_number":
        if record.identifiers.nhs_number is None:
            return None
        identifiers = Identifiers(nhs_number=record.identifiers.nhs_number)
    elif kind == "upn":
        if record.identifiers.upn is None:
            return None
        identifiers = Identifiers(upn=record.identifiers.upn)
    else:
        demographics = _demographics(rng, kind, record)
    return LookupRequest(
        request_id=f"bench-{kind}-{record.record_id}",
        deadline=datetime(2100, 1, 1, tzinfo=UTC),  # replaced as each is sent
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="BENCH"),
        identifiers=identifiers,
        demographics=demographics,
        fields=FIELDS,
    )


def _demographics(rng: random.Random, kind: str, record: ConnectorRecord) -> Demographics:
    """What a practitioner would type for the child: as recorded, with one keying slip in the
    given or the family name, or with day and month swapped (the names keyed into each other's
    boxes when the date reads the same either way)."""
    assert record.name is not None
    assert record.address is not None
    given, family, born = record.name.given, record.name.family, record.date_of_birth
    assert born is not None
    if kind == "demographics_typo":
        if rng.random() < 0.5:
            given = misspell(rng, given)
        else:
            family = misspell(rng, family)
    elif kind == "demographics_swap":
        swapped = swapped_day_month(born)
        if swapped is None:
            given, family = family, given
        else:
            born = swapped
    return Demographics(
        given=given,
        family=family,
        date_of_birth=born,
        postcode=record.address.postcode,
        sex=record.sex,
    )


# --- the databases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """One loaded case records database and what building it cost."""

    name: str
    url: str
    load_s: float
    refresh_s: float
    keys: int
    size_mb: float
    blocking_mb: float


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _postgres_url(schema: str) -> str:
    return POSTGRES.replace("postgresql://", "postgresql+psycopg://") + (
        f"?options=-csearch_path%3D{schema}"
    )


async def load_database(
    name: str, url: str, records: Sequence[ConnectorRecord], size: Callable[[], Awaitable[Any]]
) -> Database:
    """Write `records` (dated yesterday, so a connector starting up finds no change to index),
    then build the blocking keys in full, timed."""
    started = time.perf_counter()
    await _bulk_write(url, records)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    summary = await refresh_blocking_keys(url, case_records.MAPPING, full=True)
    refresh_s = time.perf_counter() - started
    size_mb, blocking_mb = await size()
    return Database(
        name=name,
        url=url,
        load_s=round(load_s, 2),
        refresh_s=round(refresh_s, 2),
        keys=summary.keys,
        size_mb=size_mb,
        blocking_mb=blocking_mb,
    )


async def _bulk_write(url: str, records: Sequence[ConnectorRecord]) -> None:
    """The rows `la_case_records.write_records` writes for `records`, inserted into empty tables
    `_LOAD_CHUNK` records at a time (executemany), children before the rows that refer to them,
    in one transaction. `write_records` replaces what a table holds for each child first, a
    DELETE per table per 500 records, which on PostgreSQL slowed a 100,000-child load to minutes
    (the planner has no statistics for rows written earlier in the same transaction)."""
    await case_records.create_tables(url)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for start in range(0, len(records), _LOAD_CHUNK):
                rows: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
                for record in records[start : start + _LOAD_CHUNK]:
                    for table_name, row in case_record_rows(record):
                        rows[table_name].append(row)
                for row in rows[children.name]:
                    row["updated_at"] = yesterday
                for table in case_records.metadata.sorted_tables:  # referred-to tables first
                    if rows.get(table.name):
                        await connection.execute(insert(table), rows[table.name])
    finally:
        await engine.dispose()


def _sqlite_size(path: Path, url: str) -> Callable[[], Awaitable[tuple[float, float]]]:
    async def size() -> tuple[float, float]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                # dbstat is compiled into Python's SQLite on Debian; without it, no split.
                try:
                    blocking = (
                        await connection.execute(
                            text("SELECT sum(pgsize) FROM dbstat WHERE name LIKE :table"),
                            {"table": f"{BLOCKING_TABLE}%"},
                        )
                    ).scalar()
                except Exception:
                    blocking = None
        finally:
            await engine.dispose()
        files = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        return _mb(files), _mb(blocking) if blocking is not None else float("nan")

    return size


def _postgres_size(schema: str) -> Callable[[], Awaitable[tuple[float, float]]]:
    """The schema's size, after gathering the planner's statistics on every table in it, as an
    operator does after a bulk load (autovacuum would, in its own time): with only the child
    table analysed, demographic search at 100,000 children took 2-3x as long
    (docs/benchmarks.md)."""

    async def size() -> tuple[float, float]:
        query = (
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0),"
            " coalesce(sum(pg_total_relation_size(c.oid))"
            "  FILTER (WHERE c.relname LIKE %s), 0)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'"
        )
        async with await psycopg.AsyncConnection.connect(POSTGRES, autocommit=True) as conn:
            tables = await conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            )
            for (table,) in await tables.fetchall():
                await conn.execute(f'ANALYZE "{schema}"."{table}"')
            row = await (await conn.execute(query, (f"{BLOCKING_TABLE}%", schema))).fetchone()
        assert row is not None
        return _mb(row[0]), _mb(row[1])

    return size


@contextlib.contextmanager
def _postgres_schema(schema: str) -> Iterator[None]:
    """A schema of the benchmark's own, dropped afterwards whatever happened."""
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _mb(size: float) -> float:
    return round(float(size) / 1e6, 1)


# --- the servers (run as `python -m bench.sql_connector serve ...` in their own process) ------


@dataclass
class _Counters:
    """What the SQL connector did, counted in its own process: statements sent, and the rows
    each demographic search fetched (what the candidate query returned, handed to ranking)."""

    statements: int = 0
    lookups: int = 0
    candidate_rows: list[int] = field(default_factory=list)

    def take(self) -> dict[str, Any]:
        taken = {
            "statements": self.statements,
            "lookups": self.lookups,
            "candidate_rows": self.candidate_rows,
        }
        self.statements, self.lookups, self.candidate_rows = 0, 0, []
        return taken


def _counted(app: ASGIApp, counters: _Counters) -> ASGIApp:
    """`app`, with its counters served (and reset) at GET /bench/counters."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == COUNTERS_PATH:
            body = json.dumps(counters.take()).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["path"] == LOOKUP_PATH:
            counters.lookups += 1
        await app(scope, receive, send)

    return counted


def _count_sql(counters: _Counters) -> None:
    """Count every statement any engine sends, and the rows each candidate query fetched."""

    def statement(*_: object) -> None:
        counters.statements += 1

    event.listen(Engine, "after_cursor_execute", statement)

    def ranked(
        demographics: Demographics, records: Sequence[ConnectorRecord], limit: int = 10
    ) -> list[ConnectorRecord]:
        counters.candidate_rows.append(len(records))
        return rank_candidates(demographics, records, limit)

    # The backend ranks what its candidate query fetched: counting there counts those rows.
    sql_backend.rank_candidates = ranked  # type: ignore[attr-defined]


def _serve(args: argparse.Namespace) -> None:
    from gateway.logs import configure as configure_logging

    configure_logging()  # as `childlookup connector serve` does: a JSON line per lookup
    counters = _Counters()
    if args.kind == "file":
        app: ASGIApp = create_reference_app(AGENCY, args.records)
    else:
        _count_sql(counters)
        app = create_sql_app(database_url=args.database_url, mapping=case_records.MAPPING)
    gc.collect()
    served = ServedApp(args.kind, _counted(app, counters), bind_socket("127.0.0.1", args.port))
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([served], log_level="warning"))


@dataclass(frozen=True)
class _Server:
    name: str
    port: int
    pid: int
    startup_s: float


@contextlib.contextmanager
def _server(name: str, work: Path, extra: Sequence[str]) -> Iterator[_Server]:
    """A server process, ready; terminated on exit."""
    port = free_port()
    kind = "file" if name == "file" else "sql"
    started = time.perf_counter()
    with (work / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sql_connector",
                "serve",
                kind,
                "--port",
                str(port),
                *extra,
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=START_TIMEOUT_S)
        yield _Server(name, port, process.pid, round(time.perf_counter() - started, 2))
    finally:
        process.terminate()
        process.wait(timeout=30)


def _memory_mb(pid: int) -> dict[str, float]:
    """Resident set now and its peak, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": values["VmRSS"], "peak_rss_mb": values["VmHWM"]}


# --- the driver ------------------------------------------------------------------------------


@dataclass
class _Results:
    """One server's lookups, pooled over rounds, by kind."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    rows: dict[str, list[float]] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)
    errors: int = 0


async def _phase(
    server: _Server, kind: str, probes: Sequence[Probe], into: _Results
) -> dict[str, list[str]]:
    """Send each probe in turn, one at a time; returns each answer's record ids by request."""
    connection = await Connection.open("127.0.0.1", server.port)
    answers: dict[str, list[str]] = {}
    latencies = into.latencies_ms.setdefault(kind, [])
    stop_at = time.monotonic() + MAX_SECONDS_PER_PHASE
    try:
        for probe in probes:
            if time.monotonic() > stop_at:
                break
            deadline = datetime.now(UTC) + timedelta(seconds=DEADLINE_S)
            body = probe.request.model_copy(update={"deadline": deadline}).model_dump_json()
            payload = body.encode()
            started = time.perf_counter()
            status, raw = await connection.post(
                LOOKUP_PATH, payload, {"content-type": "application/json"}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                into.errors += 1
                continue
            records = LookupResponse.model_validate_json(raw).records
            answers[probe.request.request_id] = [r.model_dump_json() for r in records]
            into.found[kind] = into.found.get(kind, 0) + any(
                r.record_id == probe.record_id for r in records
            )
    finally:
        connection.close()
    async with httpx.AsyncClient() as client:
        counters = (await client.get(f"http://127.0.0.1:{server.port}{COUNTERS_PATH}")).json()
    into.rows.setdefault(kind, []).extend(counters["candidate_rows"])
    into.statements[kind] = into.statements.get(kind, 0) + counters["statements"]
    return answers


async def _drive(
    servers: Sequence[_Server], probes: Sequence[Probe], rounds: int
) -> tuple[dict[str, _Results], dict[str, int]]:
    """`rounds` rounds, the servers' order rotating each round; a warm-up round first (its
    answers compared across servers, not timed). Returns the results and, per SQL server, how
    many answers differed from the file connector's."""
    by_kind = {kind: [p for p in probes if p.kind == kind] for kind in KINDS}
    results = {server.name: _Results() for server in servers}
    answers: dict[str, dict[str, list[str]]] = {}
    for server in servers:
        warm = _Results()
        answers[server.name] = {}
        for kind in KINDS:
            answers[server.name].update(await _phase(server, kind, by_kind[kind], warm))
    differing = {
        name: sum(answers[name].get(rid) != found for rid, found in answers["file"].items())
        for name in answers
        if name != "file"
    }
    for round_ in range(rounds):
        shift = round_ % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            for kind in KINDS:
                await _phase(server, kind, by_kind[kind], results[server.name])
    return results, differing


def _summary(results: _Results) -> dict[str, Any]:
    kinds = {}
    for kind in KINDS:
        latencies = results.latencies_ms.get(kind, [])
        rows = results.rows.get(kind, [])
        kinds[kind] = {
            "lookups": len(latencies),
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p95_ms": percentile(latencies, 95) if latencies else None,
            "found_share": round(results.found.get(kind, 0) / max(1, len(latencies)), 4),
            "rows_fetched_p50": statistics.median(rows) if rows else None,
            "rows_fetched_p95": percentile(rows, 95) if rows else None,
            "rows_fetched_max": max(rows) if rows else None,
            "statements_per_lookup": round(results.statements.get(kind, 0) / len(latencies), 2)
            if latencies and results.statements.get(kind)
            else None,
        }
    return {"errors": results.errors, "kinds": kinds}


def measure(
    count: int, per_kind: int, rounds: int, databases: Sequence[str], work: Path
) -> dict[str, Any]:
    """Everything for `count` children."""
    started = time.perf_counter()
    records = build_records(count)
    generate_s = time.perf_counter() - started
    print(f"{count} children: records built in {generate_s:.1f} s", flush=True)
    probes = build_probes(records, per_kind)
    jsonl = work / f"records-{count}.jsonl"
    with jsonl.open("w") as out:
        for record in records:
            out.write(record.model_dump_json() + "\n")
    schema = f"bench_sql_{os.getpid()}_{count}"
    sqlite_path = work / f"case-records-{count}.db"
    with contextlib.ExitStack() as stack:
        loaded: list[Database] = []
        if "sqlite" in databases:
            url = _sqlite_url(sqlite_path)
            loaded.append(
                asyncio.run(load_database("sqlite", url, records, _sqlite_size(sqlite_path, url)))
            )
        if "postgres" in databases:
            stack.enter_context(_postgres_schema(schema))
            url = _postgres_url(schema)
            loaded.append(
                asyncio.run(load_database("postgres", url, records, _postgres_size(schema)))
            )
        for database in loaded:
            print(
                f"{count} children: {database.name} loaded in {database.load_s} s, blocking"
                f" keys built in {database.refresh_s} s",
                flush=True,
            )
        del records
        gc.collect()
        servers = [stack.enter_context(_server("file", work, ["--records", str(jsonl)]))]
        for database in loaded:
            extra = ["--database-url", database.url]
            servers.append(stack.enter_context(_server(database.name, work, extra)))
        memory_started = {s.name: _memory_mb(s.pid) for s in servers}
        results, differing = run(_drive(servers, probes, rounds))
        memory_after = {s.name: _memory_mb(s.pid) for s in servers}
    sqlite_path.unlink(missing_ok=True)
    jsonl.unlink(missing_ok=True)
    return {
        "children": count,
        "records_built_s": round(generate_s, 1),
        "databases": [{k: v for k, v in vars(d).items() if k != "url"} for d in loaded],
        "servers": {
            s.name: {
                "startup_s": s.startup_s,
                "rss_mb_started": memory_started[s.name]["rss_mb"],
                "rss_mb_after": memory_after[s.name]["rss_mb"],
                "peak_rss_mb": memory_after[s.name]["peak_rss_mb"],
                **_summary(results[s.name]),
            }
            for s in servers
        },
        "answers_differing_from_file": differing,
    }


def _ratios(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How each server's memory and latency grow from the smallest N to the largest, and the
    SQL servers' figures over the file connector's at each N."""
    if not runs:
        return {}
    first, last = runs[0], runs[-1]
    growth = {
        name: {
            "children": last["children"] / first["children"],
            "rss_after": round(
                last["servers"][name]["rss_mb_after"] / first["servers"][name]["rss_mb_after"], 2
            ),
            **{
                f"p50_{kind}": _ratio(
                    last["servers"][name]["kinds"][kind]["p50_ms"],
                    first["servers"][name]["kinds"][kind]["p50_ms"],
                )
                for kind in KINDS
            },
        }
        for name in first["servers"]
    }
    over_file = [
        {
            "children": run_["children"],
            **{
                name: {
                    "rss_after": _ratio(
                        server["rss_mb_after"], run_["servers"]["file"]["rss_mb_after"]
                    ),
                    **{
                        f"p50_{kind}": _ratio(
                            server["kinds"][kind]["p50_ms"],
                            run_["servers"]["file"]["kinds"][kind]["p50_ms"],
                        )
                        for kind in KINDS
                    },
                }
                for name, server in run_["servers"].items()
                if name != "file"
            },
        }
        for run_ in runs
    ]
    return {"largest_over_smallest": growth, "sql_over_file": over_file}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def _print(runs: Sequence[dict[str, Any]], out: Path) -> None:
    short = {
        "nhs_number": "nhs",
        "upn": "upn",
        "demographics_exact": "demo",
        "demographics_typo": "typo",
        "demographics_swap": "swap",
    }
    for run_ in runs:
        n = run_["children"]
        for database in run_["databases"]:
            print(
                f"{n:>8} {database['name']:<8} load {database['load_s']:>7} s  blocking keys"
                f" {database['keys']:>8} built in {database['refresh_s']:>6} s  size"
                f" {database['size_mb']:>7} MB (keys {database['blocking_mb']} MB)"
            )
    head = " ".join(f"{short[k] + ' p50/p95':>14}" for k in KINDS)
    print(
        f"{'children':>8} {'server':<8} {'start s':>7} {'RSS MB':>13} {head} {'rows p50/max':>13}"
    )
    for run_ in runs:
        for name, s in run_["servers"].items():
            cells = " ".join(
                f"{s['kinds'][k]['p50_ms']!s:>6}/{s['kinds'][k]['p95_ms']!s:<7}" for k in KINDS
            )
            rows = s["kinds"]["demographics_exact"]
            fetched = (
                f"{rows['rows_fetched_p50']}/{rows['rows_fetched_max']}"
                if rows["rows_fetched_p50"] is not None
                else "-"
            )
            print(
                f"{run_['children']:>8} {name:<8} {s['startup_s']:>7}"
                f" {s['rss_mb_started']:>6}/{s['rss_mb_after']:<6} {cells} {fetched:>13}"
            )
        found = {
            name: {short[k]: s["kinds"][k]["found_share"] for k in KINDS}
            for name, s in run_["servers"].items()
        }
        print(f"{'':>8} child found: {found}")
        print(
            f"{'':>8} SQL answers unlike the file connector's:"
            f" {run_['answers_differing_from_file']}"
        )
    print(f"report: {out}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="(internal) one server process")
    serve.add_argument("kind", choices=["sql", "file"])
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--records", type=Path)
    serve.add_argument("--database-url")
    parser.add_argument("--children", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=40, help="lookups per kind per phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--databases", nargs="+", choices=DATABASES, default=list(DATABASES))
    parser.add_argument("--out", type=Path, default=RESULTS / "sql_connector.json")
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="childlookup-bench-sql-") as tmp:
        for count in sorted(args.children):
            runs.append(measure(count, args.requests, args.rounds, args.databases, Path(tmp)))
            write_report(  # after each N, so a long run that is stopped keeps what it measured
                "sql_connector",
                args.out,
                lookups_per_kind_per_phase=args.requests,
                rounds=args.rounds,
                date=datetime.now(UTC).date().isoformat(),
                runs=runs,
                ratios=_ratios(runs),
            )
    _print(runs, args.out)


if __name__ == "__main__":
    main()
