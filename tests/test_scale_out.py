"""Three gateway processes, one truth: PostgreSQL holds the audit log and outbox, Redis the limits.

Each gateway is a real `childlookup serve` process on loopback; the agencies are reference
connectors. What must hold across instances: the rate limit is exact under a burst spread over
all three; one hash chain verifies; every owner notice is delivered once; and `kill -9` of one
instance mid-load loses no audit record of any lookup that returned data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from connectors.protocol import Identifiers
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer, free_port
from connectors.trust import ensure_key_pair, load_public_key
from gateway.audit import upgrade_schema
from gateway.demo import reference_source
from gateway.tokens import PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.processes import CLI, wait_for
from tests.stack import eventually, gateway_verifier, write_records

CHILDREN = [synthetic_nhs(500 + i) for i in range(90)]
QUERY = "query($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { outcome auditId } }"


class CountingSink:
    """The social care agency's notification sink, counting every delivery it is handed."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []

    async def keep(self, notification: Any) -> bool:
        first = notification.message_id not in self.deliveries
        self.deliveries.append(notification.message_id)
        return first


@contextlib.contextmanager
def three_gateways(
    tmp: Path, postgres: tuple[str, str], redis: tuple[str, str], **settings: str
) -> Iterator[tuple[list[str], CountingSink, dict[str, str], list[subprocess.Popen[str]]]]:
    """Health and social care connectors (every child on a protection plan, so every lookup
    obliges a notice to social care) and three gateways sharing PostgreSQL, Redis, one audit key
    and one request-signing key. Yields the gateways' URLs, the sink, their environment and the
    processes."""
    url, schema = postgres
    upgrade_schema(url, schema)
    ensure_dev_keys(tmp)
    signing_key = ensure_key_pair(tmp / "gateway.pem", tmp / "gateway.pub.pem")
    health = [health_record(nhs, record_id=f"H{i}") for i, nhs in enumerate(CHILDREN)]
    plans = [
        social_care_record(nhs, record_id=f"LA{i}", identifiers=Identifiers(nhs_number=nhs))
        for i, nhs in enumerate(CHILDREN)
    ]
    sink = CountingSink()
    verifier = gateway_verifier(load_public_key(tmp / "gateway.pub.pem"))
    apps = {
        "health": create_reference_app("health", write_records(tmp / "health.jsonl", health)),
        "social_care": create_reference_app(
            "social_care",
            write_records(tmp / "social_care.jsonl", plans),
            verifier=verifier,
            notifications=sink,
        ),
    }
    env = os.environ | {
        "CHILDLOOKUP_STATE_DIR": str(tmp),
        "CHILDLOOKUP_DATABASE_URL": url,
        "CHILDLOOKUP_DATABASE_SCHEMA": schema,
        "CHILDLOOKUP_REDIS_URL": redis[0],
        "CHILDLOOKUP_REDIS_PREFIX": redis[1],
        "CHILDLOOKUP_REQUEST_SIGNING_KEY_FILE": str(signing_key),
        "CHILDLOOKUP_CACHE_TTL_S": "0",
        "CHILDLOOKUP_DECISION_LOG": "off",
        "CHILDLOOKUP_NOTIFICATION_POLL_S": "0.2",
        **{f"CHILDLOOKUP_{name.upper()}": value for name, value in settings.items()},
    }
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(BackgroundServer(app)).url for name, app in apps.items()}
        config = tmp / "sources.json"
        sources = [reference_source(name, u).model_dump(mode="json") for name, u in urls.items()]
        config.write_text(json.dumps({"sources": sources}))
        ports = [free_port() for _ in range(3)]
        # Each gateway logs to a file: an unread pipe fills under load and stalls the process.
        gateways = [
            subprocess.Popen(
                [*CLI, "serve", "--config", str(config), "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stack.enter_context((tmp / f"gateway-{port}.log").open("w")),
                text=True,
            )
            for port in ports
        ]
        try:
            for port, gateway in zip(ports, gateways, strict=True):
                assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
            yield [f"http://127.0.0.1:{port}" for port in ports], sink, env, gateways
        finally:
            for gateway in gateways:
                if gateway.poll() is None:
                    gateway.terminate()
            for gateway in gateways:
                gateway.wait(timeout=30)


def _token(tmp: Path, name: str) -> str:
    return issue_dev_token(
        (tmp / PRIVATE_KEY_FILE).read_bytes(),
        role="ed_clinician",
        organisation="RX1",
        name=name,
        issuer="childlookup-dev",
        audience="childlookup-gateway",
    )


def _audit(postgres: tuple[str, str]) -> list[tuple[str, str, str]]:
    """(audit id, subject, outcome) of every record, in chain order."""
    url, schema = postgres
    with psycopg.connect(url) as conn:
        table = sql.Identifier(schema, "audit_log")
        return conn.execute(
            sql.SQL("SELECT audit_id, subject, outcome FROM {} ORDER BY seq").format(table)
        ).fetchall()


def _verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "audit", "verify", "--state-dir", env["CHILDLOOKUP_STATE_DIR"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _lookup(client: httpx.AsyncClient, url: str, token: str, nhs: str) -> dict[str, Any]:
    response = await client.post(
        f"{url}/graphql",
        json={"query": QUERY, "variables": {"nhs": nhs}},
        headers={"authorization": f"Bearer {token}"},
    )
    return response.json()  # type: ignore[no-any-return]


def test_a_burst_over_three_gateways_is_limited_exactly_and_told_once(
    tmp_path, postgres_schema, redis_prefix
):
    with three_gateways(
        tmp_path, postgres_schema, redis_prefix, lookups_per_user_per_minute="30"
    ) as (urls, sink, env, _):
        token = _token(tmp_path, "Burst User")

        async def burst() -> list[dict[str, Any]]:
            limits = httpx.Limits(max_connections=len(CHILDREN))
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                return await asyncio.gather(
                    *(_lookup(client, urls[i % 3], token, nhs) for i, nhs in enumerate(CHILDREN))
                )

        answers = asyncio.run(burst())
        found = [a["data"]["child"]["auditId"] for a in answers if a.get("data")]
        refused = [a["errors"][0]["extensions"]["code"] for a in answers if a.get("errors")]
        eventually(lambda: len(set(sink.deliveries)) >= 30, timeout_s=30)
        time.sleep(1.0)  # long enough for any second delivery of a notice to arrive
        audit = _audit(postgres_schema)
        verified = _verify(env)

    assert len(found) == 30
    assert refused == ["RATE_LIMITED"] * 60
    assert sorted(outcome for _, _, outcome in audit) == ["FOUND"] * 30 + ["REFUSED"] * 60
    assert len(sink.deliveries) == len(set(sink.deliveries)) == 30
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit log intact: 90 records" in verified.stdout


def test_kill_9_of_one_gateway_mid_load_loses_no_audit_record_of_an_answer(
    tmp_path, postgres_schema, redis_prefix
):
    with three_gateways(tmp_path, postgres_schema, redis_prefix) as (urls, _, env, gateways):
        token = _token(tmp_path, "Load User")
        victim = gateways[1].pid

        async def load(stop_at: float, kill_at: float) -> list[str]:
            answered: list[str] = []
            async with httpx.AsyncClient(timeout=10) as client:

                async def worker(n: int) -> None:
                    i = n
                    while time.monotonic() < stop_at:
                        if time.monotonic() >= kill_at:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(victim, signal.SIGKILL)
                        try:
                            answer = await _lookup(
                                client, urls[i % 3], token, CHILDREN[i % len(CHILDREN)]
                            )
                        except httpx.HTTPError:
                            answer = {}  # the killed gateway: no answer, no data
                        if (answer.get("data") or {}).get("child"):
                            answered.append(answer["data"]["child"]["auditId"])
                        i += 6

                await asyncio.gather(*(worker(n) for n in range(6)))
            return answered

        now = time.monotonic()
        answered = asyncio.run(load(stop_at=now + 4.0, kill_at=now + 1.5))
        audited = {audit_id for audit_id, _, _ in _audit(postgres_schema)}
        verified = _verify(env)

    assert gateways[1].returncode == -signal.SIGKILL
    assert len(answered) > 50
    assert set(answered) <= audited
    assert verified.returncode == 0, verified.stdout + verified.stderr
