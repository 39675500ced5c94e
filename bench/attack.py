"""The outside attack of issue #10, reproduced and counted: harvesting by concurrency, and a burst.

Starts the reference connectors and a gateway as separate `childlookup` processes on loopback
(bench.stack), then:

- **harvest, per minute**: one user sends 8 simultaneous requests of 15 aliases each (120 lookups
  of different children) against the default limit of 60 lookups a minute;
- **harvest, per day**: one user (the per-minute limit lifted) sends 3 such bursts, 360 different
  children, against a daily cap of 200 distinct children;
- **burst**: 120 lookups sent at once by 8 users (limits lifted), each source with its usual 1 s
  budget, counting outcomes, source statuses and refusals; once per `--in-flight` setting.

    python -m bench.attack

Prints admitted and refused counts and the distinct children reached, and writes
bench/results/attack.json. All traffic goes to 127.0.0.1; every phase is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.report import write_report
from bench.stack import running_stack
from connectors.synthetic import generate_population, write_population
from gateway.tokens import PRIVATE_KEY_FILE, issue_dev_token

RESULTS = Path(__file__).resolve().parent / "results"
ALIASES = 15
REQUESTS_PER_BURST = 8
PHASE_TIMEOUT_S = 60.0


def _aliased(nhs_numbers: list[str], fields: str = "outcome") -> str:
    lookups = " ".join(
        f'c{i}: child(identify: {{nhsNumber: "{nhs}"}}, purpose: SAFEGUARDING_ENQUIRY)'
        f" {{ {fields} }}"
        for i, nhs in enumerate(nhs_numbers)
    )
    return f"{{ {lookups} }}"


def _token(work: Path, user: str) -> str:
    return issue_dev_token(
        (work / PRIVATE_KEY_FILE).read_bytes(),
        role="social_worker",
        organisation="ATTACK",
        name=user,
        issuer="childlookup-dev",
        audience="childlookup-gateway",
    )


async def _harvest(
    url: str, token: str, audit_db: Path, children: list[str], bursts: int
) -> dict[str, Any]:
    """Bursts of simultaneous aliased requests, each alias a different child. Counted from the
    audit log: a request with a refused alias answers with that error alone while its other
    aliases still run to their audit records."""
    headers = {"authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=REQUESTS_PER_BURST)
    async with httpx.AsyncClient(timeout=PHASE_TIMEOUT_S, limits=limits) as client:
        for burst in range(bursts):
            start = burst * REQUESTS_PER_BURST * ALIASES
            await asyncio.gather(
                *(
                    client.post(
                        url,
                        json={"query": _aliased(children[first : first + ALIASES])},
                        headers=headers,
                    )
                    for first in range(start, start + REQUESTS_PER_BURST * ALIASES, ALIASES)
                )
            )
    attempted = bursts * REQUESTS_PER_BURST * ALIASES
    rows = _audited(audit_db, attempted)
    refused = Counter(code for outcome, _, code in rows if outcome == "REFUSED")
    return {
        "attempted": attempted,
        # A request fails on its first refused alias; siblings still waiting for a place are
        # then cancelled before they start (nothing asked, nothing to audit).
        "never_started": attempted - len(rows),
        "admitted": sum(outcome != "REFUSED" for outcome, _, _ in rows),
        "refused": dict(refused),
        "distinct_children_reached": len({ref for outcome, ref, _ in rows if outcome != "REFUSED"}),
    }


def _audited(audit_db: Path, expected: int) -> list[tuple[str, str, str | None]]:
    """(outcome, child pseudonym, error code) of every audited lookup, once `expected` are in (or
    the phase times out)."""
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{audit_db}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT outcome, child_ref, json_extract(body, '$.error_code') FROM audit_log"
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


async def _burst(url: str, tokens: list[str], children: list[str], lookups: int) -> dict[str, Any]:
    """`lookups` simultaneous requests of one lookup each, spread over the users of `tokens`
    (limits lifted), each a different child: every lookup starts at once, as in the attack."""
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    query = (
        "query($nhs: String!) { child(identify: {nhsNumber: $nhs}, purpose: SAFEGUARDING_ENQUIRY)"
        " { outcome complete sources { status } } }"
    )
    limits = httpx.Limits(max_connections=lookups)
    async with httpx.AsyncClient(timeout=PHASE_TIMEOUT_S, limits=limits) as client:

        async def one(i: int) -> None:
            sent = time.monotonic()
            response = await client.post(
                url,
                json={"query": query, "variables": {"nhs": children[i]}},
                headers={"authorization": f"Bearer {tokens[i % len(tokens)]}"},
            )
            latencies.append((time.monotonic() - sent) * 1000)
            body = response.json()
            if body.get("errors"):
                outcomes["ERROR:" + body["errors"][0]["extensions"]["code"]] += 1
                return
            lookup = body["data"]["child"]
            outcomes[lookup["outcome"]] += 1
            statuses.update(s["status"] for s in lookup["sources"])

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(lookups)))
        wall = time.monotonic() - started
    latencies.sort()
    return {
        "lookups": lookups,
        "seconds": round(wall, 2),
        "outcomes": dict(outcomes),
        "source_statuses": dict(statuses),
        "p50_ms": round(latencies[len(latencies) // 2]),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]),
    }


def run(
    children: int, burst_lookups: int, in_flight: list[int | None], repeat: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="childlookup-attack-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=13, children=children)
        write_population(population, work / "population")
        nhs = [r.identifiers.nhs_number for r in population.health if r.identifiers.nhs_number]
        per_minute_env = {"CHILDLOOKUP_LOOKUPS_PER_USER_PER_MINUTE": "60"}
        per_day_env = {"CHILDLOOKUP_DISTINCT_CHILDREN_PER_USER_PER_DAY": "200"}
        results: dict[str, Any] = {}
        with running_stack(work / "minute", work / "population", gateway_env=per_minute_env) as s:
            token = _token(work / "minute", "Harvester")
            results["harvest_per_minute"] = asyncio.run(
                _harvest(s.graphql_url, token, s.audit_db, nhs, bursts=1)
            )
        with running_stack(work / "day", work / "population", gateway_env=per_day_env) as s:
            token = _token(work / "day", "Harvester")
            results["harvest_per_day"] = asyncio.run(
                _harvest(s.graphql_url, token, s.audit_db, nhs, bursts=3)
            )
        results["burst"] = []
        for cap in [c for c in in_flight for _ in range(repeat)]:
            env = {} if cap is None else {"CHILDLOOKUP_MAX_LOOKUPS_IN_FLIGHT": str(cap)}
            state = work / f"burst-{cap}"
            with running_stack(state, work / "population", gateway_env=env) as s:
                tokens = [_token(state, f"User {i}") for i in range(REQUESTS_PER_BURST)]
                burst = asyncio.run(_burst(s.graphql_url, tokens, nhs, burst_lookups))
            results["burst"].append({"max_lookups_in_flight": cap or "default", **burst})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--burst", type=int, default=REQUESTS_PER_BURST * ALIASES)
    parser.add_argument(
        "--in-flight",
        type=int,
        nargs="*",
        default=[],
        help="burst once per value of CHILDLOOKUP_MAX_LOOKUPS_IN_FLIGHT (default: the gateway's)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="bursts per setting")
    parser.add_argument("--out", type=Path, default=RESULTS / "attack.json")
    args = parser.parse_args()
    results = run(args.children, args.burst, args.in_flight or [None], args.repeat)
    write_report("attack", args.out, **results)
    for phase in ("harvest_per_minute", "harvest_per_day"):
        r = results[phase]
        print(
            f"{phase}: attempted {r['attempted']}, admitted {r['admitted']},"
            f" refused {r['refused']}, never started {r['never_started']},"
            f" distinct children reached {r['distinct_children_reached']}"
        )
    for b in results["burst"]:
        print(
            f"burst (in flight {b['max_lookups_in_flight']}): {b['lookups']} lookups at once,"
            f" all answered in {b['seconds']} s (p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms)"
            f" -> outcomes {b['outcomes']}, source statuses {b['source_statuses']}"
        )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
