"""/metrics: what the gateway counts, read as Prometheus reads it from a real gateway on loopback,
who may read it, and worker processes adding up in multiprocess mode."""

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from connectors.serving import free_port
from gateway import metrics
from gateway.audit import NotificationDispatcher, RetryPolicy, SqliteAuditStore, SqliteOutbox
from gateway.breakers import Breakers
from gateway.capacity import Capacity
from gateway.config import REPO_ROOT, Settings
from gateway.demo import reference_source
from gateway.errors import GatewayError
from gateway.metrics import Scrape, scrape_access
from gateway.scrape_tokens import TokenFile
from gateway.transport import ConnectorTransport
from tests.factories import (
    CHECKPOINT_KEY,
    NHS,
    audit_record,
    health_record,
    outbox_message,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import GATEWAY_SIGNER, reference_stack

TOKEN = "m" * 40
RECORDS = {
    "health": [health_record()],
    "education": [school_record()],
    "social_care": [social_care_record()],
}
LABELS = {"purpose", "outcome", "source", "status", "code", "decision", "revision", "le"} | {
    "witness",
    "state",
    "kind",
    "reason",
    "side",
}
"""Every label a childlookup metric may carry (`le` is a histogram bucket's bound; the witness
metrics appear here when a test run earlier in this process had witnesses, the routing metric's
`kind` and `reason` when one routed, the TLS reload counter's `side`, server or connectors, when
one was refused)."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(url: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/metrics", headers=headers, timeout=10)


def _samples(url: str) -> Samples:
    response = _scrape(url)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name.startswith("childlookup_")
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def test_lookups_sources_policy_and_audit_are_counted(tmp_path):
    with reference_stack(tmp_path, RECORDS, metrics_token=TOKEN) as stack:
        before = _samples(stack.url)
        found = stack.lookup("social_worker", NHS)["data"]["child"]
        stack.lookup("social_worker", synthetic_nhs(77))
        after = _samples(stack.url)
    found_lookups = {"purpose": "SAFEGUARDING_ENQUIRY", "outcome": "FOUND"}
    assert _grew(before, after, "childlookup_lookups_total", **found_lookups) == 1
    not_found = {"purpose": "SAFEGUARDING_ENQUIRY", "outcome": "NOT_FOUND"}
    assert _grew(before, after, "childlookup_lookups_total", **not_found) == 1
    assert _grew(before, after, "childlookup_lookup_duration_seconds_count", outcome="FOUND") == 1
    for source in RECORDS:
        answered = {"source": source, "status": "ANSWERED", "code": ""}
        assert _grew(before, after, "childlookup_source_answers_total", **answered) == 1
        latency = {"source": source, "status": "ANSWERED"}
        assert _grew(before, after, "childlookup_source_latency_seconds_count", **latency) == 1
    for decision in ("plan", "release"):
        timed = _grew(before, after, "childlookup_policy_decision_seconds_count", decision=decision)
        assert timed == 2
    assert _grew(before, after, "childlookup_audit_commit_seconds_count") == 2
    revision = {"revision": found["policyRevision"]}
    assert _value(after, "childlookup_policy_info", **revision) == 1
    assert _grew(before, after, "childlookup_lookups_in_flight") == 0  # each place given back


def test_no_metric_label_holds_personal_data(tmp_path):
    with reference_stack(tmp_path, RECORDS, metrics_token=TOKEN) as stack:
        stack.lookup("social_worker", NHS)
        samples = _samples(stack.url)
    labels = {label for _, sample_labels in samples for label in sample_labels}
    assert {name for name, _ in labels} <= LABELS
    values = " ".join(value for _, value in labels)
    for personal in [NHS, "Amelia", "Hart", "LS6 2AB", "Test User", "ORG1", "social_worker"]:
        assert personal not in values


def test_metrics_are_read_with_the_bearer_token_only(tmp_path):
    with reference_stack(tmp_path, RECORDS, metrics_token=TOKEN) as stack:
        missing, wrong, right = (_scrape(stack.url, t) for t in (None, "x" * 40, TOKEN))
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")
    assert "childlookup_lookups_in_flight" in right.text


def test_without_a_token_dev_serves_this_host_and_production_nobody(tmp_path, production_settings):
    dev_dir, production_dir = tmp_path / "dev", tmp_path / "production"
    dev_dir.mkdir()
    production_dir.mkdir()
    with reference_stack(dev_dir, RECORDS) as stack:
        dev = _scrape(stack.url, None)
    with reference_stack(production_dir, RECORDS, **production_settings(production_dir)) as stack:
        production = _scrape(stack.url, None)
    assert dev.status_code == 200
    assert production.status_code == 404


OTHER = "o" * 40


@pytest.mark.parametrize(
    ("authorization", "client", "tokens", "dev", "access"),
    [
        (None, "127.0.0.1", None, True, Scrape.ALLOWED),
        (None, "::1", None, True, Scrape.ALLOWED),
        (None, "10.1.2.3", None, True, Scrape.NOT_SERVED),
        (None, "127.0.0.1", None, False, Scrape.NOT_SERVED),
        (None, "127.0.0.1", (TOKEN,), True, Scrape.UNAUTHENTICATED),
        (f"Basic {TOKEN}", "10.1.2.3", (TOKEN,), False, Scrape.UNAUTHENTICATED),
        (f"bearer {TOKEN}", "10.1.2.3", (TOKEN,), False, Scrape.ALLOWED),
        (f"Bearer {TOKEN}", "10.1.2.3", (OTHER, TOKEN), False, Scrape.ALLOWED),
        (f"Bearer {TOKEN}", "127.0.0.1", (), True, Scrape.UNAUTHENTICATED),
    ],
)
def test_who_may_scrape(authorization, client, tokens, dev, access):
    assert scrape_access(authorization, client, tokens=tokens, dev=dev) is access


def test_a_token_file_is_rotated_with_no_restart_and_an_unusable_one_lets_nobody_in(
    tmp_path, caplog
):
    """The scraper's token moves from TOKEN to OTHER while the gateway runs: both for a while,
    then OTHER alone; a file broken meanwhile refuses every scrape, and says so."""
    tokens = tmp_path / "metrics-tokens"
    tokens.write_text(f"{TOKEN}\n")
    with reference_stack(tmp_path, RECORDS, metrics_token_file=tokens) as stack:

        def codes() -> tuple[int, int]:
            return _scrape(stack.url, TOKEN).status_code, _scrape(stack.url, OTHER).status_code

        first = codes()
        _replace(tokens, f"{TOKEN}\n\n{OTHER}\n")
        both = codes()
        _replace(tokens, f"{OTHER}\n")
        moved = codes()
        with caplog.at_level(logging.ERROR, logger="childlookup.gateway"):
            _replace(tokens, "too-short\n")
            broken = codes()
        _replace(tokens, f"{OTHER}\n")
        mended = codes()
    assert [first, both, moved, broken, mended] == [
        (200, 401),
        (200, 200),
        (401, 200),
        (401, 401),
        (401, 200),
    ]
    [unusable] = [
        r for r in caplog.records if getattr(r, "event", None) == "metrics_tokens_unusable"
    ]
    assert "line 1: a token is at least 32 characters" in unusable.context["reason"]


def _replace(path, text: str) -> None:
    """Write the file whole beside it and rename it into place, as a secret is replaced."""
    written = path.with_name(path.name + ".new")
    written.write_text(text)
    os.replace(written, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no token"),
        (f"{TOKEN}\nshort\n", "line 2: a token is at least 32 characters"),
        (None, "cannot be read"),
    ],
)
def test_an_unusable_token_file_stops_start_up_saying_why(tmp_path, text, message):
    tokens = tmp_path / "metrics-tokens"
    if text is not None:
        tokens.write_text(text)
    with pytest.raises(ValueError, match=message):
        TokenFile(tokens)


def test_a_token_and_a_token_file_are_not_both_set(tmp_path):
    with pytest.raises(ValidationError, match="not both"):
        Settings(metrics_token=TOKEN, metrics_token_file=tmp_path / "tokens")


def test_limit_refusals_are_counted_by_code(tmp_path):
    with reference_stack(
        tmp_path, RECORDS, metrics_token=TOKEN, lookups_per_user_per_minute=1
    ) as stack:
        before = _samples(stack.url)
        stack.lookup("social_worker", NHS)
        stack.lookup("social_worker", NHS)
        after = _samples(stack.url)
    assert _grew(before, after, "childlookup_limit_refusals_total", code="RATE_LIMITED") == 1
    refused = {"purpose": "SAFEGUARDING_ENQUIRY", "outcome": "RATE_LIMITED"}
    assert _grew(before, after, "childlookup_lookups_total", **refused) == 1


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.anyio
async def test_places_in_flight_and_shed_lookups_are_counted():
    capacity = Capacity(max_in_flight=1, max_wait_ms=10)
    in_flight, shed = (
        _sample("childlookup_lookups_in_flight"),
        _sample("childlookup_lookups_shed_total"),
    )
    await capacity.acquire()
    assert _sample("childlookup_lookups_in_flight") == in_flight + 1
    with pytest.raises(GatewayError):
        await capacity.acquire()
    assert _sample("childlookup_lookups_shed_total") == shed + 1
    capacity.release()
    assert _sample("childlookup_lookups_in_flight") == in_flight


def test_circuit_states_are_published():
    breakers = Breakers(["metrics_test"], 1, 60.0, on_change=metrics.circuit_changed)
    assert _sample("childlookup_source_circuit_state", source="metrics_test") == 0
    breaker = breakers["metrics_test"]
    breaker.settle(breaker.admit(), failed=True)
    assert _sample("childlookup_source_circuit_state", source="metrics_test") == 2


@pytest.mark.anyio
async def test_the_dispatcher_publishes_outbox_depth_age_and_dead_letters(tmp_path):
    audit = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    outbox = SqliteOutbox(audit.path)
    now = time.time()
    waiting = dataclasses.replace(outbox_message("m-wait"), created_at=now - 100)
    too_old = dataclasses.replace(outbox_message("m-old"), created_at=now - 7200)
    await audit.append(audit_record("a-1"), [waiting, too_old])
    retry = RetryPolicy(
        timeout_s=1, base_s=60, max_s=60, max_attempts=10, max_age_s=3600, poll_s=60
    )
    source = reference_source("social_care", f"http://127.0.0.1:{free_port()}")  # nobody there
    dead, retried = (
        _sample("childlookup_notification_attempts_total", outcome="DEAD"),
        _sample("childlookup_notification_attempts_total", outcome="RETRY"),
    )
    checked = _sample("childlookup_outbox_checked_timestamp_seconds")
    try:
        async with ConnectorTransport() as transport:
            dispatcher = NotificationDispatcher(
                outbox, transport, GATEWAY_SIGNER, [source], retry, {}
            )
            dispatcher.start()
            for _ in range(500):
                if _sample("childlookup_outbox_checked_timestamp_seconds") > checked:
                    break
                await asyncio.sleep(0.01)
            await dispatcher.aclose()
    finally:
        outbox.close()
        audit.close()
    assert _sample("childlookup_outbox_pending") == 1
    assert 100 <= _sample("childlookup_outbox_oldest_pending_age_seconds") < 200
    assert _sample("childlookup_outbox_dead_letters") == 1
    assert _sample("childlookup_notification_attempts_total", outcome="DEAD") == dead + 1
    assert _sample("childlookup_notification_attempts_total", outcome="RETRY") == retried + 1


_WORKER = """
import sys
from gateway import metrics
metrics.LOOKUPS.labels("DIRECT_CARE", "FOUND").inc()
metrics.SOURCE_SECONDS.labels("health", "ANSWERED").observe(0.1)
metrics.LOOKUPS_IN_FLIGHT.inc()
if sys.argv[1] == "stops":
    metrics.process_stopped()
"""

_SCRAPE = """
from gateway import metrics
print(metrics.exposition()[0].decode())
"""


def test_worker_processes_add_up_in_multiprocess_mode(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_DIR_ENV, str(tmp_path))
    (tmp_path / "counter_12345.db").write_bytes(b"a previous run")
    metrics.prepare_multiprocess()  # as the supervisor does before starting its workers
    assert list(tmp_path.iterdir()) == []
    env = {metrics.MULTIPROC_DIR_ENV: str(tmp_path), "PATH": "/usr/bin:/bin"}

    def python(code: str, *args: str) -> tuple[int, str]:
        with subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        ) as process:
            out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        return process.pid, out

    def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        _, page = python(_SCRAPE)  # any worker's /metrics
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(page)
            for s in family.samples
        }

    python(_WORKER, "stops")
    crashed, _ = python(_WORKER, "crashes")
    samples = scrape()
    found = frozenset({("purpose", "DIRECT_CARE"), ("outcome", "FOUND")})
    assert samples[("childlookup_lookups_total", found)] == 2
    answered = frozenset({("source", "health"), ("status", "ANSWERED")})
    assert samples[("childlookup_source_latency_seconds_count", answered)] == 2
    assert samples[("childlookup_lookups_in_flight", frozenset())] == 1  # the crashed one's
    metrics.worker_exited(crashed)  # as the supervisor does for a worker that died
    assert scrape()[("childlookup_lookups_in_flight", frozenset())] == 0
    assert scrape()[("childlookup_lookups_total", found)] == 2  # counts are kept
