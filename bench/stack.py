"""The benchmarked system, started as `childlookup` processes on loopback: the three reference
connectors over a written population and the gateway in front of them, exactly as deployed.

Separate processes, so the benchmark driver's own work never shares a core's interpreter with the
gateway's; every process is terminated on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import free_port
from connectors.trust import JWKS_PATH
from gateway.demo import reference_source
from gateway.tokens import PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token

REDIS_URL = "redis://127.0.0.1:6379/0"
"""The machine's Redis (the tests' and CI's): what several gateway workers share their limits in."""

NO_LIMITS: Mapping[str, str] = {
    # One bench user looks up thousands of children a minute: lift the anti-harvesting limits,
    # which are measured in the tests, not here.
    "CHILDLOOKUP_LOOKUPS_PER_USER_PER_MINUTE": "1000000",
    "CHILDLOOKUP_LOOKUPS_PER_ORGANISATION_PER_MINUTE": "1000000",
    "CHILDLOOKUP_DISTINCT_CHILDREN_PER_USER_PER_DAY": "1000000",
}


@contextlib.contextmanager
def redis_limits() -> Iterator[dict[str, str]]:
    """Gateway settings for usage limits shared through the machine's Redis, under a key prefix of
    this run's own: several workers need them (`serve --workers N`). The prefix's keys are deleted
    on exit."""
    prefix = f"bench:{uuid.uuid4().hex[:10]}"
    try:
        yield {"CHILDLOOKUP_REDIS_URL": REDIS_URL, "CHILDLOOKUP_REDIS_PREFIX": prefix}
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


@dataclass(frozen=True)
class RunningStack:
    graphql_url: str
    token: str
    audit_db: Path
    pids: Mapping[str, int] = field(default_factory=dict)
    """Process id of the gateway ("gateway": with --workers N, the parent of the workers) and of
    each connector (by agency name), for benchmarks that read their CPU time."""


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


@contextlib.contextmanager
def running_stack(
    work: Path,
    population: Path,
    *,
    latency_ms: float = 0.0,
    gateway_env: Mapping[str, str] | None = None,
    role: str = "social_worker",
    workers: int = 1,
) -> Iterator[RunningStack]:
    """Connectors serving `population/<agency>.jsonl` and a gateway with its state in `work`,
    answer cache off; yields its GraphQL URL and a dev token for `role`."""
    ensure_dev_keys(work)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    gateway_port = free_port()
    # Connectors accept only requests the gateway signed, as deployed; that also gives them the
    # owner-notification route, so notifications are delivered rather than retried.
    jwks = f"http://127.0.0.1:{gateway_port}{JWKS_PATH}"
    try:
        sources = []
        for name in REFERENCE_AGENCIES:
            port = free_port()
            processes.append(
                _childlookup(
                    [
                        *("connector", "serve", "--agency", name, "--port", str(port)),
                        *("--records", str(population / f"{name}.jsonl")),
                        *("--latency-ms", str(latency_ms), "--gateway-jwks", jwks),
                    ],
                    env,
                    work / f"{name}.log",
                )
            )
            sources.append(
                reference_source(name, f"http://127.0.0.1:{port}").model_dump(mode="json")
            )
        for source in sources:
            wait_ready(f"{source['url'].rstrip('/')}/healthz")
        config = work / "sources.json"
        config.write_text(json.dumps({"sources": sources}))
        port = gateway_port
        audit_db = work / "audit.sqlite3"
        processes.append(
            _childlookup(
                ["serve", "--config", str(config), "--port", str(port), "--workers", str(workers)],
                env
                | dict(NO_LIMITS)
                | {
                    "CHILDLOOKUP_STATE_DIR": str(work),
                    "CHILDLOOKUP_CACHE_TTL_S": "0",
                    "CHILDLOOKUP_AUDIT_DB": str(audit_db),
                }
                | dict(gateway_env or {}),
                work / "gateway.log",
            )
        )
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        token = issue_dev_token(
            (work / PRIVATE_KEY_FILE).read_bytes(),
            role=role,
            organisation="BENCH",
            name="Bench",
            issuer="childlookup-dev",
            audience="childlookup-gateway",
        )
        names = [*REFERENCE_AGENCIES, "gateway"]
        pids = {name: process.pid for name, process in zip(names, processes, strict=True)}
        yield RunningStack(f"http://127.0.0.1:{port}/graphql", token, audit_db, pids)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


def _childlookup(args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `childlookup` process logging to a file: an unread pipe fills under load and stalls it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
