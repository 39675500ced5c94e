"""National routing benchmark (issue #16): out of thousands of agencies, how many does a lookup
ask, does it find every agency that holds a record about the child, and what does it cost.

    python -m bench.national --children 20000 --lookups 300

Starts the national stack (gateway.national: agency shards, the locator, the gateway, each a
`childlookup` process on loopback) over a national synthetic population written once into a
reusable directory (`--population`, default `.childlookup/bench-national/...`), with a fresh
state directory so that the locator's store starts empty and the publishing of every agency's
holdings is timed. Then, from this process (one keep-alive httpx client):

- warm-up lookups of other children until the locator's answers are trusted (the gateway fetches
  each signer's keys on first contact) - how long that took is reported;
- the sampled children by NHS number once, as "first contact": most agencies they reach are
  asked for the first time, so the gateway fetches their keys (reported apart);
- a seeded sample of children, movers over-sampled (a quarter moved authority, a quarter moved
  school only, half stayed) so that they are measured, each looked up as a social worker making a
  safeguarding enquiry by NHS number, by UPN (children with one) and by the demographics a
  practitioner would hold (given and family name, date of birth, postcode, sex), one at a time;
- per lookup, against the population's ground truth (`truth.jsonl`): the sources asked (status
  other than NOT_ASKED; with and without the two identity sources and the locator), the agencies
  asked in vain (NO_RECORD), the recall of the agencies holding a record about the child (those
  answering with recordsMatched > 0, over those that hold one; children no agency holds are
  counted, not scored), complete, outcome and latency;
- the NHS-number lookups again, 4 at a time, with each process's CPU time (/proc);
- the locator's size: its SQLite store (checkpointed, once the stack has stopped; the holdings
  table and its index from `dbstat`) and its holdings (`/v1/status`), per holding and per child,
  extrapolated to a million children; its publish rate (pseudonyms over the shards' time to
  publish every agency);
- then the three-source stack (bench.stack) over a population of as many children, the same
  number of NHS-number lookups, one at a time and 4 at a time: latency and CPU ratios.

The answer cache is off and the anti-harvesting limits lifted (bench.stack.NO_LIMITS). Prints
tables and writes bench/results/national.json. Traffic goes only to 127.0.0.1; every loop is
bounded in count and time; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import httpx

from bench.report import write_report
from bench.stack import NO_LIMITS, running_stack
from connectors.agencies import STATUS_PATH
from connectors.national import IDENTITY_SOURCES
from connectors.synthetic import generate_population, write_population
from connectors.synthetic.national import (
    RECORD_FILES,
    ChildTruth,
    load_national,
    load_national_records,
    load_national_truth,
)
from gateway.national import NationalOptions, national_stack
from gateway.types import LOCATOR_SOURCE

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
POPULATIONS: Final = ROOT / ".childlookup" / "bench-national"
QUERY: Final = """query($id: ChildIdentity!) {
  child(identify: $id, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete sources { source status recordsMatched askedBecause failureCode } } }"""
ORGANISATION: Final = "LA-E0800001"
CONCURRENCY: Final = 4
WARM_UP: Final = 20
WARM_UP_MAX: Final = 400
MAX_SECONDS_PER_PHASE: Final = 600
TARGET_MEDIAN_ASKED: Final = 6
UNASKED: Final = "NOT_ASKED"
NOT_AGENCIES: Final = frozenset({*IDENTITY_SOURCES, LOCATOR_SOURCE})
"""Sources that are asked on every lookup and hold no casework: the identity sources and the
locator. `asked_agencies` leaves them out."""

Kind = Literal["nhs_number", "upn", "demographics"]
KINDS: Final[tuple[Kind, ...]] = ("nhs_number", "upn", "demographics")
Stratum = Literal["stayed", "moved_authority", "moved_school"]
STRATA: Final[tuple[Stratum, ...]] = ("stayed", "moved_authority", "moved_school")


# --- the sample ----------------------------------------------------------------------------------


def stratum_of(child: ChildTruth) -> Stratum:
    """A child who moved authority counts as such whether or not they also moved school."""
    if child.moved_authority:
        return "moved_authority"
    return "moved_school" if child.moved_school else "stayed"


def sample_children(truth: Sequence[ChildTruth], size: int, seed: int) -> list[ChildTruth]:
    """`size` children drawn without replacement, a quarter from those who moved authority, a
    quarter from those who moved school only, the rest from those who stayed (a stratum short
    of children gives what it has, and the others make up the number where they can)."""
    rng = random.Random(seed)
    by_stratum: dict[Stratum, list[ChildTruth]] = {s: [] for s in STRATA}
    for child in truth:
        by_stratum[stratum_of(child)].append(child)
    wanted = {"moved_authority": size // 4, "moved_school": size // 4}
    wanted["stayed"] = size - wanted["moved_authority"] - wanted["moved_school"]
    chosen: list[ChildTruth] = []
    for stratum in STRATA:
        pool = by_stratum[stratum]
        chosen += rng.sample(pool, min(wanted[stratum], len(pool)))
    if len(chosen) < size:
        taken = {c.child for c in chosen}
        rest = [c for c in truth if c.child not in taken]
        chosen += rng.sample(rest, min(size - len(chosen), len(rest)))
    return chosen


def identify(kind: Kind, child: ChildTruth) -> dict[str, Any] | None:
    """The `identify` argument for a lookup of `child` by `kind`; None when the child has no UPN."""
    if kind == "nhs_number":
        return {"nhsNumber": child.nhs_number}
    if kind == "upn":
        return None if child.upn is None else {"upn": child.upn}
    return {
        "demographics": {
            "givenName": child.given,
            "familyName": child.family,
            "dateOfBirth": child.date_of_birth.isoformat(),
            "postcode": child.postcode,
            "sex": child.sex.name,
        }
    }


# --- one lookup, scored ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One lookup against the truth about its child."""

    child: str
    nhs_number: str
    kind: Kind
    stratum: Stratum
    latency_ms: float
    outcome: str
    complete: bool
    asked: int
    """Sources asked, the identity sources and the locator included."""
    asked_agencies: int
    """Agencies asked (routed or located), without the identity sources and the locator."""
    in_vain: int
    """Agencies asked that answered NO_RECORD."""
    holders: int
    found: int
    """Holders in the truth that answered with at least one matched record."""
    missed: tuple[str, ...]
    """Holders not found, each with what the answer said of them: `name:STATUS:REASONS`, or
    `name:not asked`."""
    locator: str
    """The locator's status in the answer (`absent` when it was not among the sources)."""
    failed: tuple[str, ...] = ()
    """Sources asked that gave no usable answer: `name:STATUS:failureCode`."""

    @property
    def recall(self) -> float | None:
        """None for a child no agency holds a record about: nothing to find."""
        return self.found / self.holders if self.holders else None


def measure(
    answer: Mapping[str, Any], child: ChildTruth, kind: Kind, latency_ms: float
) -> Measured:
    """Score a GraphQL answer (`{"data": {"child": ...}}`, or one with errors) against `child`'s
    truth."""
    outcome, complete, sources = read_answer(answer)
    asked = [s for s in sources if s["status"] != UNASKED]
    agencies = [s for s in asked if s["source"] not in NOT_AGENCIES]
    by_name = {s["source"]: s for s in sources}
    found = [h for h in child.holders if by_name.get(h, {}).get("recordsMatched", 0) > 0]
    missed = tuple(
        _why_missed(holder, by_name.get(holder)) for holder in child.holders if holder not in found
    )
    return Measured(
        child=child.child,
        nhs_number=child.nhs_number,
        kind=kind,
        stratum=stratum_of(child),
        latency_ms=round(latency_ms, 3),
        outcome=outcome,
        complete=complete,
        asked=len(asked),
        asked_agencies=len(agencies),
        in_vain=sum(s["status"] == "NO_RECORD" for s in agencies),
        holders=len(child.holders),
        found=len(found),
        missed=missed,
        locator=by_name.get(LOCATOR_SOURCE, {}).get("status", "absent"),
        failed=tuple(
            f"{s['source']}:{s['status']}:{s.get('failureCode') or '-'}"
            for s in asked
            if s["status"] not in _ANSWERED
        ),
    )


_ANSWERED: Final = frozenset({"ANSWERED", "NO_RECORD"})


def read_answer(answer: Mapping[str, Any]) -> tuple[str, bool, list[dict[str, Any]]]:
    """Outcome, complete and sources of a GraphQL answer; an answer with errors (or none) is
    `ERROR:<codes>`, incomplete, with no sources."""
    lookup = None if answer.get("errors") else (answer.get("data") or {}).get("child")
    if lookup is None:
        errors = answer.get("errors") or [{}]
        codes = sorted({str((e.get("extensions") or {}).get("code", "ERROR")) for e in errors})
        return "ERROR:" + ",".join(codes), False, []
    return lookup["outcome"], lookup["complete"], lookup["sources"]


def _why_missed(holder: str, source: Mapping[str, Any] | None) -> str:
    if source is None or source["status"] == UNASKED:
        return f"{holder}:not asked"
    return f"{holder}:{source['status']}:{'+'.join(source.get('askedBecause') or ()) or '-'}"


# --- summaries -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (as bench.load); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def latency(values_ms: Sequence[float], wall_s: float | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "lookups": len(values_ms),
        "p50_ms": percentile(values_ms, 50),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "mean_ms": round(statistics.fmean(values_ms), 3) if values_ms else None,
    }
    if wall_s:
        summary["lookups_per_s"] = round(len(values_ms) / wall_s, 1)
    return summary


def summarise(measured: Sequence[Measured]) -> dict[str, Any]:
    """What a set of lookups shows: sources asked, agencies asked in vain, recall (overall and
    where every agency answered), complete rate, outcomes, latency."""
    if not measured:
        return {"lookups": 0}
    scored = [m for m in measured if m.recall is not None]
    complete = [m for m in scored if m.complete]
    asked = [m.asked for m in measured]
    agencies = [m.asked_agencies for m in measured]
    return {
        "lookups": len(measured),
        "asked_median": statistics.median(asked),
        "asked_p90": percentile(asked, 90),
        "asked_max": max(asked),
        "agencies_asked_median": statistics.median(agencies),
        "agencies_asked_p90": percentile(agencies, 90),
        "agencies_asked_max": max(agencies),
        "in_vain_mean": round(statistics.fmean(m.in_vain for m in measured), 3),
        "in_vain_total": sum(m.in_vain for m in measured),
        "agencies_asked_total": sum(agencies),
        "no_holder": len(measured) - len(scored),
        "recall": _recall(scored),
        "recall_when_complete": _recall(complete),
        "lookups_recall_below_1": sum(m.found < m.holders for m in scored),
        "complete_rate": round(sum(m.complete for m in measured) / len(measured), 4),
        "outcomes": dict(sorted(Counter(m.outcome for m in measured).items())),
        "sources_failed": dict(
            sorted(Counter(_failure(f) for m in measured for f in m.failed).items())
        ),
        **{k: v for k, v in latency([m.latency_ms for m in measured]).items() if k != "lookups"},
    }


def _failure(failed: str) -> str:
    """`la_e0800001:TIMED_OUT:TIMEOUT` -> `la:TIMED_OUT:TIMEOUT`: by kind of source, not name."""
    name, _, rest = failed.partition(":")
    return f"{name.split('_')[0]}:{rest}"


def _recall(scored: Sequence[Measured]) -> float | None:
    """Holders found over holders, pooled over the lookups (a child held by four agencies weighs
    four times one held by one)."""
    holders = sum(m.holders for m in scored)
    return round(sum(m.found for m in scored) / holders, 4) if holders else None


def by_kind_and_stratum(measured: Sequence[Measured]) -> dict[str, dict[str, Any]]:
    """`{kind: {"all": ..., stratum: ...}}`, kinds and strata with no lookup left out."""
    report: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        of_kind = [m for m in measured if m.kind == kind]
        if not of_kind:
            continue
        report[kind] = {"all": summarise(of_kind)}
        for stratum in STRATA:
            in_stratum = [m for m in of_kind if m.stratum == stratum]
            if in_stratum:
                report[kind][stratum] = summarise(in_stratum)
    return report


def locator_footprint(
    *, store_bytes: int, holdings_bytes: int, holdings: int, children: int
) -> dict[str, Any]:
    """The locator's size per holding and per child, and for a million children."""
    per_child = store_bytes / children if children else 0.0
    return {
        "store_bytes": store_bytes,
        "holdings_table_and_index_bytes": holdings_bytes,
        "holdings": holdings,
        "children": children,
        "holdings_per_child": round(holdings / children, 3) if children else None,
        "bytes_per_holding": round(store_bytes / holdings, 1) if holdings else None,
        "holdings_bytes_per_holding": round(holdings_bytes / holdings, 1) if holdings else None,
        "store_mb_per_million_children": round(per_child * 1_000_000 / 1e6, 1),
    }


# --- driving the gateway -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    variables: dict[str, Any]
    answer: dict[str, Any]
    latency_ms: float


async def drive(
    url: str, token: str, variables: Sequence[dict[str, Any]], concurrency: int
) -> tuple[list[Answered], float]:
    """Ask every lookup, `concurrency` at a time over keep-alive connections: the answers in
    the order asked, and the wall time. A phase stops at MAX_SECONDS_PER_PHASE."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    answered: list[Answered | None] = [None] * len(variables)
    pending = iter(range(len(variables)))
    stop_at = time.monotonic() + MAX_SECONDS_PER_PHASE
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for index in pending:
                if time.monotonic() > stop_at:
                    return
                body = json.dumps({"query": QUERY, "variables": variables[index]}).encode()
                started = time.perf_counter()
                reply = await client.post(url, content=body)
                elapsed = (time.perf_counter() - started) * 1000
                try:
                    answer = reply.json()
                except ValueError:
                    answer = {}
                if reply.status_code != 200 and not answer.get("errors"):
                    answer = {"errors": [{"extensions": {"code": f"HTTP_{reply.status_code}"}}]}
                answered[index] = Answered(variables[index], answer, elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return [a for a in answered if a is not None], wall


async def warm(url: str, token: str, variables: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Look up children one at a time until the locator's answers are trusted (the gateway
    fetches the locator's keys on first contact), and at least WARM_UP of them; at most
    `variables`. What it took, and each lookup's locator status."""
    statuses: list[str] = []
    started = time.monotonic()
    answers: list[Answered] = []
    for index in range(0, len(variables), WARM_UP):
        batch, _ = await drive(url, token, variables[index : index + WARM_UP], 1)
        answers += batch
        statuses += [_locator_status(a.answer) for a in batch]
        if statuses and statuses[-1] in _ANSWERED:
            break
    return {
        "lookups": len(answers),
        "seconds": round(time.monotonic() - started, 1),
        "locator_statuses": dict(Counter(statuses)),
        "locator_trusted_at_end": bool(statuses) and statuses[-1] in _ANSWERED,
    }


def _locator_status(answer: Mapping[str, Any]) -> str:
    sources = read_answer(answer)[2]
    return next(
        (
            s["status"] if s["status"] in _ANSWERED else f"{s['status']}:{s.get('failureCode')}"
            for s in sources
            if s["source"] == LOCATOR_SOURCE
        ),
        "absent",
    )


def phase(answers: Sequence[Answered], wall_s: float) -> dict[str, Any]:
    """Latency, outcomes and complete rate of a phase of lookups."""
    read = [read_answer(a.answer) for a in answers]
    return {
        **latency([a.latency_ms for a in answers], wall_s),
        "complete_rate": round(sum(c for _, c, _ in read) / len(read), 4) if read else None,
        "outcomes": dict(sorted(Counter(o for o, _, _ in read).items())),
    }


# --- the runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The national population asked for: `childlookup synth --national`'s arguments."""

    children: int
    seed: int
    local_authorities: int
    practices: int
    schools: int

    def directory(self) -> Path:
        return POPULATIONS / (
            f"{self.children}-seed{self.seed}"
            f"-la{self.local_authorities}-gp{self.practices}-school{self.schools}"
        )


def ensure_population(directory: Path, shape: Shape) -> None:
    """Write the national population to `directory` unless one is there already."""
    if (directory / "national.json").exists():
        return
    print(f"writing a national population of {shape.children:,} children to {directory} ...")
    subprocess.run(
        [
            *(sys.executable, "-m", "gateway.cli", "synth", "--national"),
            *("--seed", str(shape.seed), "--children", str(shape.children)),
            *("--out", str(directory), "--local-authorities", str(shape.local_authorities)),
            *("--practices", str(shape.practices), "--schools", str(shape.schools)),
        ],
        check=True,
        capture_output=True,
    )


def run_national(
    directory: Path, state_dir: Path, lookups: int, seed: int, shards: int
) -> dict[str, Any]:
    """The national stack's part of the report (see the module docstring)."""
    truth = load_national_truth(directory)
    manifest = load_national(directory)
    children = sample_children(truth, lookups, seed)
    sequential = [(c, k, v) for k in KINDS for c in children if (v := identify(k, c)) is not None]
    by_nhs = [(c, "nhs_number", {"id": identify("nhs_number", c)}) for c in children]
    rng = random.Random(seed + 1)
    warm_up = [
        {"id": identify("nhs_number", c)} for c in rng.sample(truth, min(WARM_UP_MAX, len(truth)))
    ]
    if state_dir.exists():
        shutil.rmtree(state_dir)  # an empty locator, so that publishing is measured
    options = NationalOptions(
        directory=directory,
        state_dir=state_dir,
        seed=manifest.seed,
        children=manifest.children,
        shards=shards,
        gateway_env={**NO_LIMITS, "CHILDLOOKUP_CACHE_TTL_S": "0"},
    )
    print(f"starting the national stack ({len(manifest.agencies):,} agencies) ...", flush=True)
    with national_stack(options) as stack:
        print(f"every agency published: {dict(stack.timings)} s from launch", flush=True)
        published_at = time.monotonic()
        shards_status = [httpx.get(url + STATUS_PATH, timeout=5).json() for url in stack.shard_urls]
        locator_status = httpx.get(stack.locator_url + "/v1/status", timeout=5).json()
        token = stack.token("social_worker", ORGANISATION, "Bench")
        warmed = asyncio.run(warm(stack.graphql_url, token, warm_up))
        first, first_wall = asyncio.run(
            drive(stack.graphql_url, token, [v for _, _, v in by_nhs], 1)
        )
        answered, seq_wall = asyncio.run(
            drive(stack.graphql_url, token, [{"id": v} for _, _, v in sequential], 1)
        )
        cpu_before = cpu_ms(stack.pids)
        concurrent, conc_wall = asyncio.run(
            drive(stack.graphql_url, token, [v for _, _, v in by_nhs], CONCURRENCY)
        )
        cpu = cpu_per_lookup(cpu_before, cpu_ms(stack.pids), len(concurrent))
        stack.check_alive()
        measured_within_s = round(time.monotonic() - published_at, 1)
        files_live = _files(state_dir / "locator")
        timings, sources = dict(stack.timings), stack.agencies
    measured = [
        measure(a.answer, child, kind, a.latency_ms)
        for (child, kind, _), a in zip(sequential, answered, strict=False)
    ]
    first_contact = [
        measure(a.answer, child, "nhs_number", a.latency_ms)
        for (child, _, _), a in zip(by_nhs, first, strict=False)
    ]
    hidden = hidden_from_search(directory, {c.nhs_number for c in children})
    by_kind = by_kind_and_stratum(measured)
    searchable = [m for m in measured if m.kind == "demographics" and m.nhs_number not in hidden]
    if searchable:  # the children a demographic search may find at all
        by_kind["demographics"]["not restricted or shielded"] = summarise(searchable)
    stored = _store(state_dir / "locator")
    holdings = sum(v["holdings"] for v in locator_status["versions"])
    publish_s = max(s["all_published_s"] or 0.0 for s in shards_status)
    report = {
        "population": {
            "directory": str(directory),
            "seed": manifest.seed,
            "children": manifest.children,
            "agencies": dict(Counter(a.kind for a in manifest.agencies)),
            "moved_authority": sum(c.moved_authority for c in truth),
            "moved_school": sum(c.moved_school for c in truth),
            "no_holder": sum(not c.holders for c in truth),
            "holders_median": statistics.median(len(c.holders) for c in truth),
            "holder_records": sum(len(c.holders) for c in truth),
        },
        "stack": {
            "sources": sources,
            "shards": shards,
            "timings_s": timings,
            "shards_all_published_s": [s["all_published_s"] for s in shards_status],
            "measured_within_s_of_publish": measured_within_s,
        },
        "sample": {
            "seed": seed,
            "children": len(children),
            "by_stratum": dict(Counter(stratum_of(c) for c in children)),
            "lookups": len(sequential),
        },
        "warm_up": warmed,
        "first_contact_nhs_number": {
            **summarise(first_contact),
            "lookups_per_s": round(len(first) / first_wall, 1),
        },
        "sequential": by_kind,
        "sequential_wall_s": round(seq_wall, 2),
        "sample_restricted_or_shielded": len(hidden),
        "concurrent_nhs_number": {
            "concurrency": CONCURRENCY,
            **phase(concurrent, conc_wall),
            "cpu_ms_per_lookup": cpu,
        },
        "locator": {
            **locator_footprint(
                store_bytes=stored["file_bytes"],
                holdings_bytes=stored["holdings_bytes"],
                holdings=holdings,
                children=manifest.children,
            ),
            "files_while_running": files_live,
            "tables_bytes": stored["tables"],
            "status": locator_status,
            "publish_s": publish_s,
            "pseudonyms_per_s": round(holdings / publish_s, 1) if publish_s else None,
        },
        "misses": [asdict(m) for m in measured if m.recall is not None and m.found < m.holders],
        "lookups": [asdict(m) for m in measured],
    }
    return report


def _files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.glob("*.sqlite3*"))}


def _store(directory: Path) -> dict[str, Any]:
    """The locator's SQLite store once it has stopped (its WAL checkpointed on close): the files'
    size and each table's and index's bytes, from `dbstat`."""
    tables: dict[str, int] = {}
    for path in sorted(directory.glob("*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                tables[name] = tables.get(name, 0) + int(size)
    return {
        "file_bytes": sum(_files(directory).values()),
        "holdings_bytes": tables.get("holdings", 0) + tables.get("holdings_by_agency", 0),
        "tables": tables,
    }


def cpu_ms(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU time (user + system, all threads) each process has used so far, from /proc."""
    used = {}
    for name, pid in pids.items():
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
        used[name] = (int(fields[11]) + int(fields[12])) * 1000 / _TICKS
    return used


def cpu_per_lookup(
    before: Mapping[str, float], after: Mapping[str, float], lookups: int
) -> dict[str, float]:
    return {n: round((after[n] - before[n]) / lookups, 2) for n in after if n in before and lookups}


_TICKS: Final = os.sysconf("SC_CLK_TCK")


def hidden_from_search(directory: Path, nhs_numbers: set[str]) -> set[str]:
    """Of `nhs_numbers`, those with a restricted or shielded record at any agency (a restricted
    health record, an open shielded case at a local authority): by design never found by
    demographics (gateway.shield_safe), so not counted against routing's recall."""
    hidden = set()
    for kind in RECORD_FILES:
        for held in load_national_records(directory, kind):
            number = held.record.identifiers.nhs_number
            flags = held.record.flags
            if number in nhs_numbers and (flags.restricted or flags.shielded):
                hidden.add(number)
    return hidden


def run_three_source(children: int, lookups: int, seed: int) -> dict[str, Any]:
    """The three reference connectors and the gateway (bench.stack) over a population of
    `children`: `lookups` NHS-number lookups one at a time, then CONCURRENCY at a time."""
    with tempfile.TemporaryDirectory(prefix="childlookup-bench-national-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=11, children=children)
        write_population(population, work / "population")
        numbers = sorted(
            {n for r in population.health if (n := r.identifiers.nhs_number) is not None}
        )
        del population
        rng = random.Random(seed)
        asked = [{"id": {"nhsNumber": n}} for n in rng.sample(numbers, min(lookups, len(numbers)))]
        warm_up = [
            {"id": {"nhsNumber": n}} for n in rng.sample(numbers, min(WARM_UP, len(numbers)))
        ]
        try:
            with running_stack(work, work / "population", gateway_env=NO_LIMITS) as stack:
                url, token = stack.graphql_url, stack.token
                asyncio.run(drive(url, token, warm_up, 1))
                sequential, seq_wall = asyncio.run(drive(url, token, asked, 1))
                cpu_before = cpu_ms(stack.pids)
                concurrent, conc_wall = asyncio.run(drive(url, token, asked, CONCURRENCY))
                cpu = cpu_per_lookup(cpu_before, cpu_ms(stack.pids), len(concurrent))
        except RuntimeError as error:  # keep the national results; say why this part is missing
            log = work / "gateway.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ThreeSourceFailed(f"{error}\n{tail}") from error
    asked_sources = [
        sum(s["status"] != UNASKED for s in read_answer(a.answer)[2]) for a in sequential
    ]
    return {
        "children": children,
        "sequential": {
            **phase(sequential, seq_wall),
            "asked_median": statistics.median(asked_sources) if asked_sources else None,
        },
        "concurrent": {
            "concurrency": CONCURRENCY,
            **phase(concurrent, conc_wall),
            "cpu_ms_per_lookup": cpu,
        },
    }


class ThreeSourceFailed(RuntimeError):
    """The three-source stack did not start or stopped (the message ends with its gateway log)."""


def ratios(national: Mapping[str, Any], three: Mapping[str, Any]) -> dict[str, float | None]:
    """National over three-source latency, NHS-number lookups, sequential and concurrent."""
    pairs = {
        "sequential": (national["sequential"]["nhs_number"]["all"], three["sequential"]),
        "concurrent": (national["concurrent_nhs_number"], three["concurrent"]),
    }
    out: dict[str, float | None] = {}
    for mode, (ours, theirs) in pairs.items():
        for q in ("p50_ms", "p99_ms"):
            a, b = ours.get(q), theirs.get(q)
            out[f"{mode}_{q}"] = round(a / b, 2) if a and b else None
    return out


# --- the command ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--children", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=300, help="children sampled")
    parser.add_argument("--seed", type=int, default=7, help="the population's seed")
    parser.add_argument("--sample-seed", type=int, default=16)
    parser.add_argument("--local-authorities", type=int, default=153)
    parser.add_argument("--practices", type=int, default=500)
    parser.add_argument("--schools", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--population", type=Path, help="reused national population directory")
    parser.add_argument("--state-dir", type=Path, help="emptied first (default: a new temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "national.json")
    args = parser.parse_args(argv)
    shape = Shape(args.children, args.seed, args.local_authorities, args.practices, args.schools)
    directory = args.population or shape.directory()
    ensure_population(directory, shape)
    with tempfile.TemporaryDirectory(prefix="childlookup-national-state-") as tmp:
        state_dir = args.state_dir or Path(tmp) / "state"
        national = run_national(directory, state_dir, args.lookups, args.sample_seed, args.shards)
    print("starting the three-source stack ...", flush=True)
    nhs_lookups = national["sequential"]["nhs_number"]["all"]["lookups"]
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.national", *(argv or sys.argv[1:])]),
        **national,
        "targets": targets(national),
    }
    try:
        three = run_three_source(national["population"]["children"], nhs_lookups, args.sample_seed)
    except ThreeSourceFailed as error:
        report["three_source"] = {"error": str(error)}
        write_report("national", args.out, **report)
        print(f"the three-source stack failed, no latency comparison: {error}")
        raise SystemExit(1) from error
    report["three_source"] = three
    report["latency_ratio_national_over_three_source"] = ratios(national, three)
    write_report("national", args.out, **report)
    print(render(report))
    print(f"report: {args.out}")


def targets(report: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's two targets, per kind of lookup: median sources asked (all of them, identity
    sources and locator included) at most 6; recall 1.0 where every agency answered."""
    out = {}
    for kind, strata in report["sequential"].items():
        every = strata["all"]
        out[kind] = {
            "median_sources_asked": every["asked_median"],
            "median_sources_asked_met": every["asked_median"] <= TARGET_MEDIAN_ASKED,
            "recall_when_complete": every["recall_when_complete"],
            "recall_when_complete_met": every["recall_when_complete"] == 1.0,
        }
    return out


def render(report: Mapping[str, Any]) -> str:
    """The report's tables, as printed (and pasted into docs/benchmarks.md)."""
    rows = [
        "| lookup | children | n | sources asked p50 / p90 / max | agencies asked p50 / max"
        " | asked in vain (mean) | recall | recall when complete | complete | outcomes"
        " | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows_of = [
        (kind, stratum, s)
        for kind, strata in report["sequential"].items()
        for stratum, s in strata.items()
    ]
    rows_of.append(("nhs_number, first contact", "all", report["first_contact_nhs_number"]))
    for kind, stratum, s in rows_of:
        outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items())
        rows.append(
            f"| {kind} | {stratum} | {s['lookups']}"
            f" | {s['asked_median']:g} / {s['asked_p90']:g} / {s['asked_max']}"
            f" | {s['agencies_asked_median']:g} / {s['agencies_asked_max']}"
            f" | {s['in_vain_mean']:.2f} | {_number(s['recall'])}"
            f" | {_number(s['recall_when_complete'])} | {s['complete_rate']:.1%}"
            f" | {outcomes} | {s['p50_ms']} | {s['p99_ms']} |"
        )
    three, conc = report["three_source"], report["concurrent_nhs_number"]
    nhs = report["sequential"]["nhs_number"]["all"]
    ratio = report["latency_ratio_national_over_three_source"]
    rows += [
        "",
        "| NHS-number lookups | national p50 / p99 ms | three-source p50 / p99 ms | ratio p50 / p99"
        " | national / three-source lookups/s |",
        "|---|---|---|---|---|",
        f"| 1 at a time | {nhs['p50_ms']} / {nhs['p99_ms']}"
        f" | {three['sequential']['p50_ms']} / {three['sequential']['p99_ms']}"
        f" | {ratio['sequential_p50_ms']} / {ratio['sequential_p99_ms']}"
        f" | {1000 / nhs['mean_ms']:.1f} / {three['sequential']['lookups_per_s']} |",
        f"| {conc['concurrency']} at a time | {conc['p50_ms']} / {conc['p99_ms']}"
        f" | {three['concurrent']['p50_ms']} / {three['concurrent']['p99_ms']}"
        f" | {ratio['concurrent_p50_ms']} / {ratio['concurrent_p99_ms']}"
        f" | {conc['lookups_per_s']} / {three['concurrent']['lookups_per_s']} |",
    ]
    ours_cpu, theirs_cpu = conc["cpu_ms_per_lookup"], three["concurrent"]["cpu_ms_per_lookup"]
    rows += [
        "",
        f"CPU ms per NHS-number lookup ({conc['concurrency']} at a time): national "
        + ", ".join(f"{name} {ms}" for name, ms in ours_cpu.items())
        + f" (total {sum(ours_cpu.values()):.1f}); three-source "
        + ", ".join(f"{name} {ms}" for name, ms in theirs_cpu.items())
        + f" (total {sum(theirs_cpu.values()):.1f})",
    ]
    loc = report["locator"]
    rows += [
        "",
        "| locator | value |",
        "|---|---|",
        f"| holdings (pseudonyms held) | {loc['holdings']:,}"
        f" ({loc['holdings_per_child']} per child) |",
        f"| SQLite store, checkpointed | {loc['store_bytes'] / 1e6:.1f} MB"
        f" ({loc['bytes_per_holding']} bytes per holding; holdings table and index"
        f" {loc['holdings_bytes_per_holding']}) |",
        f"| per million children | {loc['store_mb_per_million_children']:,} MB |",
        f"| publish, every agency | {loc['publish_s']} s, {loc['pseudonyms_per_s']} pseudonyms/s |",
    ]
    return "\n".join(rows)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
