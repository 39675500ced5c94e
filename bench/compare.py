"""Our stack against a peer, in the same run: childlookup (gateway + three reference connectors)
and Hive Gateway in front of three plain REST backends serving the same records with the same
added latency (bench/peer/, see its README). The peer does no auth, policy, signing or audit: the
difference is what those cost, plus the difference between the two gateways' runtimes.

    npm ci --prefix bench/peer          # once
    python -m bench.compare --latency-ms 0 20 --requests 300 --concurrency 16 --rounds 3
    python -m bench.compare --workers 2 ...   # two processes a gateway, each side (Redis limits)

For each connector latency, both systems run at once on loopback over one written synthetic
population, and are measured in alternating phases (ours, peer, peer, ours, ...: one at a time,
then `--concurrency` at a time, `--rounds` times), so whatever else the machine does hits both.
Each (round, mode) gives both sides the same children, a different child per lookup; our answer
cache is off and the peer has none. Per side and mode: p50/p95/p99 over all rounds' lookups,
lookups/s (lookups over the phases' summed wall time), and CPU ms per lookup of each process -
gateway (its process tree), backends, and this load generator - from /proc/<pid>/stat. Ours also
counts the lookups that asked an agency a second time, with an identifier another agency's
answer held (identity recall: two source round trips by design; the peer asks once), and gives
the other lookups' p50 and p99 apart. Then ours over the peer round by round (p50, lookups/s,
gateway CPU, gateway and backends' CPU): each round's two phases ran back to back, so these
ratios - their median and range - are the reading that survives the machine's drift. Which side
goes first alternates from round to round. With `--workers N`, each gateway runs N processes:
ours `serve --workers N` (its usage limits then shared through the machine's Redis, as deployed),
Hive Gateway `--fork N`. With `--pin`, each gateway's threads run on the first CPU and everything
else - backends, connectors, this load generator - on the others, as in a deployment where the
agencies' connectors run on their own machines: the gateways are then compared on a core of their
own, not also charged for the connectors sharing it.

Prints a table and writes bench/results/compare.json. Traffic goes only to 127.0.0.1, and every
loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Read, drive, percentile
from bench.report import write_report
from bench.stack import redis_limits, running_stack, wait_ready
from connectors.protocol import FieldId
from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import free_port
from connectors.synthetic import generate_population, write_population

RESULTS = Path(__file__).resolve().parent / "results"
PEER_DIR = Path(__file__).resolve().parent / "peer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP = 300  # lookups per side, once sequentially and once concurrently: V8 needs ~300

# Comparable fields on both sides: identity, location, who works with the child, indicators. Ours
# also returns what the peer cannot (source statuses, withheld fields, the audit id): that is part
# of the job, so it is asked for.
OURS_QUERY = """query($nhs: String!) {
  child(identify: {nhsNumber: $nhs}, purpose: SAFEGUARDING_ENQUIRY) {
  outcome complete
  child {
    name { given family } dateOfBirth { value } sex { value }
    address { lines postcode } school { name phone } gpPractice { name phone }
    carers { name relationship phone }
    involvements { service organisation practitioner { name role phone } lead sensitive
                   broker { name phone } }
    indicators { childProtectionPlan { value } lookedAfter { value } childInNeed { value }
                 earlyHelp { value } }
  }
  sources { source status askedWith } withheld { field reason } auditId } }"""

_RECORD = """name { given family } date_of_birth sex address { lines postcode } {place}
  carers { name relationship phone }
  involvements { service organisation practitioner { name role phone } lead sensitive
                 broker { name phone } }"""
_PEER_AGENCIES = {
    # agency -> (field on Child, type prefix, what only this agency holds)
    "health": ("health", "Health", "gp_practice { name phone }"),
    "education": ("education", "Education", "school { name phone }"),
    "social_care": (
        "socialCare",
        "SocialCare",
        "indicators { child_protection_plan looked_after child_in_need early_help }",
    ),
}
PEER_QUERY = (
    "query($nhs: String!) { child(nhsNumber: $nhs) {\n"
    + "\n".join(
        f"  {field} {{ __typename ... on {prefix}Record {{ "
        + _RECORD.replace("{place}", own)
        + f" }} ... on {prefix}NoRecord {{ status }} }}"
        for field, prefix, own in _PEER_AGENCIES.values()
    )
    + " } }"
)

PEER_FIELDS = {
    # What our gateway asks each connector for a social worker's SAFEGUARDING_ENQUIRY (everything
    # the agency provides but sensitive service details; `childlookup policy explain --role
    # social_worker --purpose SAFEGUARDING_ENQUIRY`), so the peer's backends minimise alike.
    name: [f.value for f in profile.provides if f is not FieldId.SENSITIVE_SERVICE_DETAILS]
    for name, profile in REFERENCE_AGENCIES.items()
}


# --- CPU time from /proc ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks) of a live process, all its threads included."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and brackets
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _tree(root: int) -> list[int]:
    """`root` and every live descendant (uvicorn's workers under `serve --workers N`)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _pin(roots: Iterable[int], cpus: set[int]) -> None:
    """Every thread of every process in `roots`' trees onto `cpus`. Affinity belongs to a thread,
    not a process (Node starts its pool threads at start-up); threads started later inherit
    their creator's."""
    for root in roots:
        for pid in _tree(root):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(ProcessLookupError):
                        os.sched_setaffinity(int(task.name), cpus)


def _cpu_ticks(pids: Sequence[int]) -> int:
    return sum(stat[1] for pid in pids if (stat := _stat(pid)) is not None)


@dataclass(frozen=True)
class Side:
    """One system under test: where to send lookups and which processes do the work."""

    name: str
    url: str
    headers: Mapping[str, str]
    query: str
    read: Read
    """Outcome, per-agency statuses (ANSWERED / NO_RECORD / ...) and whether an agency was asked
    again (a second round, with an identifier a first answer held) of one 200 response."""
    processes: Mapping[str, int]
    """Role ("gateway", "health", ...) -> root pid; a role's CPU is its whole process tree's."""

    def snapshot(self) -> dict[str, int]:
        return {role: _cpu_ticks(_tree(pid)) for role, pid in self.processes.items()}


def _read_ours(body: dict[str, Any]) -> tuple[str, list[str], bool]:
    lookup = body["data"]["child"]
    statuses = [f"{s['source']}:{s['status']}" for s in lookup["sources"]]
    return lookup["outcome"], statuses, any(len(s["askedWith"]) > 1 for s in lookup["sources"])


def _read_peer(body: dict[str, Any]) -> tuple[str, list[str], bool]:
    child = body["data"]["child"]
    statuses = []
    for agency, (field, prefix, _) in _PEER_AGENCIES.items():
        answer = child[field]
        if answer is None:
            statuses.append(f"{agency}:FAILED")
        elif answer["__typename"] == f"{prefix}Record":
            statuses.append(f"{agency}:ANSWERED")
        else:
            statuses.append(f"{agency}:NO_RECORD")
    found = any(s.endswith(":ANSWERED") for s in statuses)
    return ("FOUND" if found else "NOT_FOUND"), statuses, False  # one round: NHS number only


# --- the load --------------------------------------------------------------------------------


async def _drive(
    side: Side, nhs_numbers: Sequence[str], concurrency: int, bystander: Side
) -> dict[str, Any]:
    """One phase: every NHS number once, `concurrency` keep-alive connections at a time. The
    `bystander` (the other side, idle) has its CPU time read too: work it does meanwhile (ours
    delivering owner notifications late, say) would be taken from the side measured."""
    cpu_before, idle_before = side.snapshot(), bystander.snapshot()
    own_before = time.process_time()
    phase = await drive(side.url, side.headers, side.query, side.read, nhs_numbers, concurrency)
    own = time.process_time() - own_before
    cpu_after, idle_after = side.snapshot(), bystander.snapshot()
    return {
        "latencies_ms": phase.latencies_ms,
        "one_round_latencies_ms": phase.one_round_ms,
        "asked_again_latencies_ms": phase.asked_again_ms,
        "wall_s": phase.wall_s,
        "cpu_ticks": {role: cpu_after[role] - cpu_before[role] for role in cpu_before},
        "load_generator_cpu_s": own,
        "bystander_cpu_ms": (sum(idle_after.values()) - sum(idle_before.values()))
        / CLOCK_TICKS
        * 1000,
        "response_bytes_mean": statistics.fmean(phase.sizes) if phase.sizes else 0.0,
        "outcomes": phase.outcomes,
        "source_statuses": phase.statuses,
    }


def _summary(phases: Sequence[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """All rounds of one side and mode, pooled."""
    latencies = [ms for phase in phases for ms in phase["latencies_ms"]]
    one_round = [ms for phase in phases for ms in phase["one_round_latencies_ms"]]
    lookups = len(latencies)
    wall = sum(phase["wall_s"] for phase in phases)
    ticks: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for phase in phases:
        ticks.update(phase["cpu_ticks"])
        outcomes.update(phase["outcomes"])
        statuses.update(phase["source_statuses"])
    per_lookup = {
        role: round(ticks[role] / CLOCK_TICKS * 1000 / lookups, 3)
        for role in phases[0]["cpu_ticks"]
    }
    return {
        "concurrency": concurrency,
        "lookups": lookups,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        # Lookups that asked an agency a second time (with an identifier a first answer held)
        # take two round trips by design; the peer never does. The rest, apart:
        "asked_again": sum(len(phase["asked_again_latencies_ms"]) for phase in phases),
        "one_round_p50_ms": percentile(one_round, 50) if one_round else None,
        "one_round_p99_ms": percentile(one_round, 99) if one_round else None,
        "mean_ms": round(statistics.fmean(latencies), 3),
        "throughput_rps": round(lookups / wall, 1),
        "per_round_rps": [round(len(p["latencies_ms"]) / p["wall_s"], 1) for p in phases],
        "per_round_p50_ms": [percentile(p["latencies_ms"], 50) for p in phases],
        "cpu_ms_per_lookup": per_lookup,
        "load_generator_cpu_ms_per_lookup": round(
            sum(p["load_generator_cpu_s"] for p in phases) * 1000 / lookups, 3
        ),
        "response_bytes_mean": round(statistics.fmean(p["response_bytes_mean"] for p in phases)),
        "other_side_cpu_ms_meanwhile": [round(p["bystander_cpu_ms"]) for p in phases],
        "outcomes": dict(outcomes),
        "source_statuses": dict(sorted(statuses.items())),
    }


# --- the peer --------------------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench.compare needs Node.js (20 or later) on PATH for the peer")
    if not (PEER_DIR / "node_modules" / "@graphql-hive" / "gateway").is_dir():
        raise SystemExit("the peer is not installed: run `npm ci --prefix bench/peer` first")
    return node


@contextlib.contextmanager
def running_peer(
    work: Path, population: Path, *, latency_ms: float, workers: int = 1
) -> Iterator[Side]:
    """The three REST backends over `population/<agency>.jsonl` and Hive Gateway in front of
    them (`workers` processes), composed afresh from bench/peer/mesh.config.mjs; yields the peer
    as a Side."""
    node = _node()
    bin_dir = PEER_DIR / "node_modules" / ".bin"
    supergraph = work / "supergraph.graphql"
    compose_log = work / "peer-compose.log"
    with compose_log.open("wb") as log:
        subprocess.run(
            [node, str(bin_dir / "mesh-compose"), "-c", "mesh.config.mjs", "-o", str(supergraph)],
            cwd=PEER_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )
    env = {**os.environ, "NODE_ENV": "production"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for agency in REFERENCE_AGENCIES:
            port = free_port()
            processes[agency] = _spawn(
                [
                    *(node, str(PEER_DIR / "backend.mjs"), "--agency", agency),
                    *("--records", str(population / f"{agency}.jsonl"), "--port", str(port)),
                    *("--latency-ms", str(latency_ms), "--fields", ",".join(PEER_FIELDS[agency])),
                ],
                env,
                work / f"peer-{agency}.log",
            )
            env[f"PEER_{agency.upper()}_URL"] = f"http://127.0.0.1:{port}"
        for agency in REFERENCE_AGENCIES:
            wait_ready(f"{env[f'PEER_{agency.upper()}_URL']}/healthz")
        port = free_port()
        processes["gateway"] = _spawn(
            [
                *(node, str(bin_dir / "hive-gateway"), "supergraph", str(supergraph)),
                *("-c", "gateway.mjs", "--host", "127.0.0.1", "--port", str(port)),
                *("--fork", str(workers)),
            ],
            env,
            work / "peer-gateway.log",
            cwd=PEER_DIR,
        )
        wait_ready(f"http://127.0.0.1:{port}/readiness")
        yield Side(
            name="peer",
            url=f"http://127.0.0.1:{port}/graphql",
            headers={"content-type": "application/json"},
            query=PEER_QUERY,
            read=_read_peer,
            processes={role: p.pid for role, p in processes.items()},
        )
    finally:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            _stop(process)


def _spawn(
    args: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`args` in a process group of its own, which _stop ends whole (Hive's forked workers)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """Wait for a process sent SIGTERM; its group is killed if it is not gone within `grace_s`
    (Hive Gateway with `--fork 2` waits for its workers to drain for longer than that)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace_s)


# --- the run ---------------------------------------------------------------------------------


def run(
    latency_ms: float,
    requests: int,
    concurrency: int,
    rounds: int,
    children: int,
    workers: int = 1,
    pin: bool = False,
) -> dict[str, Any]:
    modes = (("sequential", 1), ("concurrent", concurrency))
    needed = 2 * WARM_UP + rounds * len(modes) * requests
    with tempfile.TemporaryDirectory(prefix="childlookup-compare-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=11, children=max(children, needed))
        write_population(population, work / "population")
        nhs_numbers = [
            r.identifiers.nhs_number for r in population.health if r.identifiers.nhs_number
        ]
        cursor = 0

        def take(count: int) -> list[str]:
            nonlocal cursor
            chosen = [nhs_numbers[(cursor + i) % len(nhs_numbers)] for i in range(count)]
            cursor += count
            return chosen

        with contextlib.ExitStack() as running:
            limits = running.enter_context(redis_limits()) if workers > 1 else {}
            stack = running.enter_context(
                running_stack(
                    work / "ours",
                    work / "population",
                    latency_ms=latency_ms,
                    gateway_env=limits,
                    workers=workers,
                )
            )
            peer = running.enter_context(
                running_peer(work, work / "population", latency_ms=latency_ms, workers=workers)
            )
            ours = Side(
                name="ours",
                url=stack.graphql_url,
                headers={
                    "authorization": f"Bearer {stack.token}",
                    "content-type": "application/json",
                },
                query=OURS_QUERY,
                read=_read_ours,
                processes=dict(stack.pids),
            )
            sides = (ours, peer)
            if pin:
                # This process's tree holds both stacks: all of it onto the other CPUs, then
                # each gateway's tree onto the first.
                gateway_cpu, *others = sorted(os.sched_getaffinity(0))
                _pin([os.getpid()], set(others))
                _pin([side.processes["gateway"] for side in sides], {gateway_cpu})
            for _, mode_concurrency in modes:  # warm-up: connections, caches, V8's JIT
                batch = take(WARM_UP)
                for side, other in (sides, sides[::-1]):
                    _check(asyncio.run(_drive(side, batch, mode_concurrency, other)), side.name)
            phases: dict[tuple[str, str], list[dict[str, Any]]] = {}
            order: list[str] = []
            for round_ in range(rounds):
                # Who goes first alternates, so neither side always runs on the machine the
                # other has just warmed (or left busy).
                pairs = (sides, sides[::-1]) if round_ % 2 == 0 else (sides[::-1], sides)
                for mode, mode_concurrency in modes:
                    batch = take(requests)
                    for side, other in pairs:
                        phase = asyncio.run(_drive(side, batch, mode_concurrency, other))
                        phases.setdefault((side.name, mode), []).append(phase)
                        order.append(f"{side.name}:{mode}")
    return {
        "connector_latency_ms": latency_ms,
        "gateway_processes": workers,
        "pinned": pin,
        "phase_order": order,
        **{
            side: {
                mode: _summary(phases[(side, mode)], mode_concurrency)
                for mode, mode_concurrency in modes
            }
            for side in ("ours", "peer")
        },
        "ours_to_peer": {
            mode: _paired(phases[("ours", mode)], phases[("peer", mode)]) for mode, _ in modes
        },
    }


def _paired(ours: Sequence[dict[str, Any]], peer: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Ours over the peer, round by round: each round's two phases ran back to back on the same
    children, so their ratio cancels the drift of a shared VM (up to 40% within minutes here)
    that pooling every round's lookups would keep. The median and range over rounds."""
    figures: dict[str, Callable[[dict[str, Any]], float]] = {
        "p50": lambda phase: percentile(phase["latencies_ms"], 50),
        "lookups_per_s": lambda phase: len(phase["latencies_ms"]) / phase["wall_s"],
        "gateway_cpu": lambda phase: phase["cpu_ticks"]["gateway"] / len(phase["latencies_ms"]),
        "stack_cpu": lambda phase: sum(phase["cpu_ticks"].values()) / len(phase["latencies_ms"]),
    }
    paired: dict[str, Any] = {}
    for name, figure in figures.items():
        ratios = [round(figure(o) / figure(p), 3) for o, p in zip(ours, peer, strict=True)]
        paired[name] = {
            "median": round(statistics.median(ratios), 3),
            "min": min(ratios),
            "max": max(ratios),
            "rounds": ratios,
        }
    return paired


def _check(phase: dict[str, Any], side: str) -> None:
    """Every child of the population is found by every lookup: anything else in the warm-up (a
    source refusing, a lookup failing) is a fault of the stack, not a number to measure."""
    if set(phase["outcomes"]) != {"FOUND"} or not phase["latencies_ms"]:
        raise SystemExit(f"{side} failed during warm-up: {dict(phase['outcomes'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--requests", type=int, default=300, help="lookups per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="phases per side and mode")
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes a gateway (ours and Hive's), 1 to 4"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each gateway on the first CPU, backends and the load generator on the others",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "compare.json")
    args = parser.parse_args()
    if not 1 <= args.workers <= 4:
        parser.error("--workers is 1 to 4")
    if args.pin and (args.workers != 1 or len(os.sched_getaffinity(0)) < 2):
        parser.error("--pin takes one process a gateway and at least two CPUs")
    started = time.monotonic()
    runs = [
        run(
            latency,
            args.requests,
            args.concurrency,
            args.rounds,
            args.children,
            args.workers,
            args.pin,
        )
        for latency in args.latency_ms
    ]
    elapsed = round(time.monotonic() - started, 1)
    write_report(
        "compare",
        args.out,
        peer=_peer_versions(),
        queries={"ours": OURS_QUERY, "peer": PEER_QUERY},
        settings=vars(args) | {"out": str(args.out)},
        elapsed_s=elapsed,
        runs=runs,
    )
    _print_table(runs)
    print(f"run took {elapsed} s; report: {args.out}")


def _peer_versions() -> dict[str, str]:
    versions = {
        "node": subprocess.run(
            [_node(), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    }
    lock = json.loads((PEER_DIR / "package-lock.json").read_text())
    for name in (
        "@graphql-hive/gateway",
        "@graphql-mesh/compose-cli",
        "@omnigraph/json-schema",
        "@graphql-tools/delegate",
        "graphql",
    ):
        versions[name] = lock["packages"][f"node_modules/{name}"]["version"]
    return versions


def _print_table(runs: Sequence[dict[str, Any]]) -> None:
    head = (
        f"{'conn ms':>7} {'side':>5} {'mode':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'req/s':>7}"
        f" {'gw cpu':>7} {'backends cpu':>20} {'bytes':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        pinned = ", on a CPU of its own" if r["pinned"] else ""
        print(f"{'':>7} each gateway: {r['gateway_processes']} process(es){pinned}")
        for mode in ("sequential", "concurrent"):
            for side in ("ours", "peer"):
                m = r[side][mode]
                cpu = m["cpu_ms_per_lookup"]
                backends = "/".join(f"{cpu[a]:.2f}" for a in REFERENCE_AGENCIES)
                print(
                    f"{r['connector_latency_ms']:>7g} {side:>5} {'c' + str(m['concurrency']):>6}"
                    f" {m['p50_ms']:>7.2f} {m['p95_ms']:>7.2f} {m['p99_ms']:>7.2f}"
                    f" {m['throughput_rps']:>7.1f} {cpu['gateway']:>7.2f} {backends:>20}"
                    f" {m['response_bytes_mean']:>6}"
                )
        for side in ("ours", "peer"):
            print(f"{'':>7} {side:>5} outcomes {r[side]['sequential']['outcomes']}")
        for mode in ("sequential", "concurrent"):
            m = r["ours"][mode]
            if m["asked_again"]:
                print(
                    f"{'':>7}  ours {'c' + str(m['concurrency']):>6} {m['asked_again']} of"
                    f" {m['lookups']} asked an agency again; the others: p50"
                    f" {m['one_round_p50_ms']:.2f} p99 {m['one_round_p99_ms']:.2f}"
                )
        for mode in ("sequential", "concurrent"):
            paired = r["ours_to_peer"][mode]
            print(
                f"{'':>7}  ours/peer {'c' + str(r['ours'][mode]['concurrency']):>4} round by round,"
                " median (range): "
                + "  ".join(
                    f"{label} {paired[key]['median']:.2f} ({paired[key]['min']:.2f}-"
                    f"{paired[key]['max']:.2f})"
                    for key, label in _PAIRED_LABELS.items()
                )
            )
    print(
        "CPU is ms per lookup (user+system, whole process tree); backends are health/education/"
        "social_care; bytes is the mean GraphQL response size; stack CPU is the gateway's and its"
        " backends' together."
    )


_PAIRED_LABELS = {
    "p50": "p50",
    "lookups_per_s": "lookups/s",
    "gateway_cpu": "gateway CPU",
    "stack_cpu": "stack CPU",
}


if __name__ == "__main__":
    main()
