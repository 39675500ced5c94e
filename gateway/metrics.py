"""What the gateway counts, for Prometheus: every metric in one place, and the /metrics page.

Labels are only `purpose`, `outcome`, `source`, `status`, `code`, `witness` and `state` (of a
witness of the audit log) and, for policy timings, `decision` (plan or release): small fixed sets
of codes and configured names. Never a child, a
practitioner, an organisation, a request id or anything from an answer - a metric is kept for
months by whoever scrapes it, and a label is an index into it.

Several worker processes (`childlookup serve --workers N`) each count their own lookups. With
PROMETHEUS_MULTIPROC_DIR set (in every worker's environment, before it imports this module),
prometheus-client keeps each process's values in files there and /metrics adds them all up,
whichever worker serves the scrape: counters and histograms are summed, lookups in flight summed
over live processes, circuit states the worst (highest) over live processes, and the outbox
figures - read from the shared audit database - are the most recent any process saw. The
supervisor calls `prepare_multiprocess` before starting the workers (the directory must start
empty, or a previous run's counts carry on) and `worker_exited(pid)` for each worker that dies or
is replaced (one stopping normally does it itself, in `process_stopped`), or the live gauges keep
counting its last values.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from enum import Enum, StrEnum
from ipaddress import ip_address
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from gateway.breakers import CIRCUIT_OPEN, CircuitState
from gateway.types import SourceAnswer, SourceStatus

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

_SOURCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_POLICY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_AUDIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LOOKUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LOOKUPS = Counter(
    "childlookup_lookups",
    "Lookups that started (had a place), by purpose and outcome: a LookupOutcome, or the error"
    " code the caller got (RATE_LIMITED, POLICY_UNAVAILABLE, AUDIT_UNAVAILABLE, ...).",
    ["purpose", "outcome"],
)
LOOKUP_SECONDS = Histogram(
    "childlookup_lookup_duration_seconds",
    "Time from a lookup's start (after any wait for a place) to its audit record, by outcome.",
    ["outcome"],
    buckets=_LOOKUP_BUCKETS,
)
LOOKUPS_IN_FLIGHT = Gauge(
    "childlookup_lookups_in_flight",
    "Lookups holding one of the process's places (CHILDLOOKUP_MAX_LOOKUPS_IN_FLIGHT).",
    multiprocess_mode="livesum",
)
LOOKUPS_WAITING = Gauge(
    "childlookup_lookups_waiting",
    "Lookups waiting for a place.",
    multiprocess_mode="livesum",
)
LOOKUPS_SHED = Counter(
    "childlookup_lookups_shed",
    "Lookups refused OVERLOADED before they started: nothing asked, counted or audited.",
)
LIMIT_REFUSALS = Counter(
    "childlookup_limit_refusals",
    "Lookups refused by the anti-harvesting limits, by refusal code.",
    ["code"],
)
SOURCE_ANSWERS = Counter(
    "childlookup_source_answers",
    "Sources' answers to lookups, by source, status and error code (empty when none); answers"
    " from the cache included.",
    ["source", "status", "code"],
)
ROUTED_ASKS = Counter(
    "childlookup_routed_asks",
    "Agencies asked because the locator or an identity route named them (gateway.routing), by"
    " kind, by why (reasons joined with +), and by outcome: held (it had a record about the"
    " child), not_held (asked in vain) or no_answer.",
    ["kind", "reason", "outcome"],
)
SOURCE_SECONDS = Histogram(
    "childlookup_source_latency_seconds",
    "Time to each source's answer, by source and status: sources actually asked only (not"
    " skipped, not from the cache, not CIRCUIT_OPEN).",
    ["source", "status"],
    buckets=_SOURCE_BUCKETS,
)
SOURCE_RETRIES = Counter(
    "childlookup_source_retries",
    "Requests sent a second time because the first connection was refused.",
    ["source"],
)
CIRCUIT_STATE = Gauge(
    "childlookup_source_circuit_state",
    "Each source's circuit breaker: 0 closed, 1 half-open (probing), 2 open (skipped).",
    ["source"],
    multiprocess_mode="livemax",
)
POLICY_SECONDS = Histogram(
    "childlookup_policy_decision_seconds",
    "Time the policy took to decide, by decision (plan, release).",
    ["decision"],
    buckets=_POLICY_BUCKETS,
)
AUDIT_COMMIT_SECONDS = Histogram(
    "childlookup_audit_commit_seconds",
    "Time to commit a lookup's audit record (with its owner notifications).",
    buckets=_AUDIT_BUCKETS,
)
NOTIFICATIONS = Counter(
    "childlookup_notification_attempts",
    "Owner notification delivery attempts, by outcome (DELIVERED, RETRY, DEAD).",
    ["outcome"],
)
OUTBOX_PENDING = Gauge(
    "childlookup_outbox_pending",
    "Owner notifications waiting to be delivered.",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_PENDING_AGE = Gauge(
    "childlookup_outbox_oldest_pending_age_seconds",
    "Age of the oldest notification waiting (0 when none).",
    multiprocess_mode="mostrecent",
)
OUTBOX_DEAD_LETTERS = Gauge(
    "childlookup_outbox_dead_letters",
    "Notifications given up on: each agency must be told by other means.",
    multiprocess_mode="mostrecent",
)
OUTBOX_CHECKED = Gauge(
    "childlookup_outbox_checked_timestamp_seconds",
    "When the outbox figures were last read (by the notification dispatcher).",
    multiprocess_mode="mostrecent",
)


class WitnessState(StrEnum):
    """Where the gateway stands with one witness of its audit log (gateway.audit.witnessing)."""

    OK = "ok"
    """It acknowledged every checkpoint sent so far."""
    FAILING = "failing"
    """It did not answer, or not with a receipt the gateway trusts: tried again each poll."""
    DIVERGED = "diverged"
    """It holds a checkpoint the log contradicts: the log was cut back or rewritten (or the
    witness is wrong). Nothing more is sent to it until the gateway restarts; a person must look."""


AUDIT_WITNESS_STATE = Gauge(
    "childlookup_audit_witness_state",
    "Each witness of the audit log: 1 for the state it is in (ok, failing, diverged), 0 others.",
    ["witness", "state"],
    multiprocess_mode="mostrecent",
)
AUDIT_WITNESS_BEHIND = Gauge(
    "childlookup_audit_witness_behind",
    "How far the latest checkpoint a witness holds is behind the log's latest, in records"
    " (sequence numbers); known once the witness has answered.",
    ["witness"],
    multiprocess_mode="mostrecent",
)

TLS_VALID_UNTIL = Gauge(
    "childlookup_tls_valid_until_timestamp_seconds",
    "When the gateway's https stops working unless new files are put in place: the loaded"
    " certificate's expiry, or the earliest next update of its client CRLs (unset without TLS).",
    multiprocess_mode="mostrecent",
)

CONNECTOR_TLS_VALID_UNTIL = Gauge(
    "childlookup_connector_tls_valid_until_timestamp_seconds",
    "When the gateway's TLS towards connectors stops working unless new files are put in place:"
    " its client certificate's expiry, else its CA's (unset without either).",
    multiprocess_mode="mostrecent",
)

TLS_RELOADS_REFUSED = Counter(
    "childlookup_tls_reloads_refused_total",
    "Changed TLS files that failed their checks and were not taken up (the loaded ones stay in"
    " use; the tls_reload_failed log line says why), by side: server (portals to the gateway) or"
    " connectors (the gateway's client side).",
    ["side"],
)

_CIRCUIT_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def lookup_finished(purpose: str, outcome: str, seconds: float) -> None:
    LOOKUPS.labels(purpose, outcome).inc()
    LOOKUP_SECONDS.labels(outcome).observe(seconds)


def sources_answered(answers: Iterable[SourceAnswer]) -> None:
    for answer in answers:
        SOURCE_ANSWERS.labels(answer.source, answer.status.value, answer.error_code or "").inc()
        asked = answer.status is not SourceStatus.NOT_ASKED and not answer.cached
        if asked and answer.latency_ms is not None and answer.error_code != CIRCUIT_OPEN:
            SOURCE_SECONDS.labels(answer.source, answer.status.value).observe(
                answer.latency_ms / 1000
            )


def routed_asked(answers: Iterable[SourceAnswer], kind_of: Callable[[str], str]) -> None:
    for answer in answers:
        outcome = {SourceStatus.ANSWERED: "held", SourceStatus.NO_RECORD: "not_held"}.get(
            answer.status, "no_answer"
        )
        reason = "+".join(r.value for r in answer.asked_because)
        ROUTED_ASKS.labels(kind_of(answer.source), reason, outcome).inc()


def circuit_changed(source: str, state: CircuitState) -> None:
    CIRCUIT_STATE.labels(source).set(_CIRCUIT_VALUE[state])


def tls_valid_until(moment: datetime) -> None:
    TLS_VALID_UNTIL.set(moment.timestamp())


def tls_reload_refused(side: str) -> None:
    TLS_RELOADS_REFUSED.labels(side).inc()


def connector_tls_valid_until(moment: datetime) -> None:
    CONNECTOR_TLS_VALID_UNTIL.set(moment.timestamp())


def outbox_observed(pending: int, oldest_pending_age_s: float, dead: int) -> None:
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST_PENDING_AGE.set(oldest_pending_age_s)
    OUTBOX_DEAD_LETTERS.set(dead)
    OUTBOX_CHECKED.set_to_current_time()


def witness_observed(witness: str, state: WitnessState, behind: int | None) -> None:
    for each in WitnessState:
        AUDIT_WITNESS_STATE.labels(witness, each.value).set(1 if each is state else 0)
    if behind is not None:
        AUDIT_WITNESS_BEHIND.labels(witness).set(behind)


class PolicyRevision(Collector):
    """`childlookup_policy_info{revision=...} 1`: the revision new lookups are decided by, read
    when scraped (a reload swaps it). With several workers, the revision of the one scraped."""

    def __init__(self, revision: Callable[[], str]) -> None:
        self._revision = revision

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("childlookup_policy", "The live policy revision.")
        info.add_metric([], {"revision": self._revision()})
        yield info


class _ThisProcess(Collector):
    """Everything registered in the default registry (this module's metrics, and the process and
    Python runtime collectors prometheus-client adds)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR_ENV))


def exposition(collectors: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The /metrics page: this process's metrics, or every worker's from the multiprocess
    directory, plus `collectors` read now. Blocking (the directory's files): call off the loop."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiprocess(directory: Path | None = None) -> Path:
    """For a supervisor, before it starts its workers: `directory` (else PROMETHEUS_MULTIPROC_DIR,
    else a new temporary directory), created if need be and emptied of an earlier run's files,
    set as PROMETHEUS_MULTIPROC_DIR for the workers to inherit."""
    configured = os.environ.get(MULTIPROC_DIR_ENV)
    if directory is None:
        directory = Path(configured) if configured else Path(tempfile.mkdtemp("-metrics"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    return directory


def worker_exited(pid: int) -> None:
    """For a supervisor: drop a dead worker's live gauges from the totals."""
    mark_process_dead(pid)  # type: ignore[no-untyped-call]


def process_stopped() -> None:
    """Drop this worker's live gauges (in flight, circuit states) from the multiprocess totals."""
    if multiprocess():
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class Scrape(Enum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    NOT_SERVED = "not served"


def scrape_access(
    authorization: str | None,
    client_host: str | None,
    *,
    tokens: Sequence[str] | None,
    dev: bool,
) -> Scrape:
    """Who may read /metrics. The figures hold no personal data, but they do show how much
    looking-up goes on, for what, and which agency is down right now: with tokens configured
    (gateway.scrape_tokens) only a scraper presenting one as a bearer token; without, in dev mode
    only a client on this host, and in production nobody (a reverse proxy on the same host would
    make every client look local)."""
    if tokens is not None:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and any(
            hmac.compare_digest(presented.encode(), token.encode()) for token in tokens
        ):
            return Scrape.ALLOWED
        return Scrape.UNAUTHENTICATED
    if dev and _is_loopback(client_host):
        return Scrape.ALLOWED
    return Scrape.NOT_SERVED


def _is_loopback(host: str | None) -> bool:
    try:
        return ip_address(host or "").is_loopback
    except ValueError:
        return False
