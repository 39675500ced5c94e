"""Several gateway processes and replicas at their edges: a source skipped by its open circuit (or
for want of time) reported as asked or as just failing, a worker replaced while draining turning
ready, a slow Redis making a connector replica refuse the gateway's first request as a replay."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import uvloop
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.locator import new_pseudonym_key
from connectors.protocol import random_id
from connectors.redis_clients import redis_client
from connectors.redis_replay import RedisReplayCache
from connectors.serving import free_port
from connectors.trust import ReplayCheckUnavailable, ReplayRefused, StaticKeys
from gateway.breakers import CIRCUIT_OPEN
from gateway.demo import reference_source
from gateway.locator_client import LocatorClient
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.source_health import SourceHealth
from gateway.transport import ConnectorTransport
from gateway.types import IdentifiedBy, LookupQuery, Purpose, SourceAnswer, SourceStatus
from tests.factories import NHS, health_record, lookup_context
from tests.fault_proxy import FaultProxy
from tests.stack import reference_stack, running_gateway

SOURCES_QUERY = """
query($nhs: String!) {
  child(nhsNumber: $nhs, purpose: DIRECT_CARE) {
    outcome
    auditId
    sources { source status latencyMs errorCode askedWith }
  }
}
"""


def _sources(gateway, role="gp"):
    response = gateway.post(
        {"query": SOURCES_QUERY, "variables": {"nhs": NHS}}, gateway.token(role)
    )
    assert response.status_code == 200, response.text
    child = response.json()["data"]["child"]
    return {s["source"]: s for s in child["sources"]} | {"auditId": child["auditId"]}


# --- a breaker's state must not make the answer claim a source was asked ------------------------


def test_a_source_skipped_by_its_open_circuit_is_not_reported_as_asked(tmp_path):
    """schema: askedWith is "Empty when the source was not asked", latencyMs is the "Time the
    source took, if asked". A source whose circuit is open is never contacted, yet the answer
    says it was asked with the caller's NHS number - and so does the audit record, whose
    asked_with is there so an auditor can tell which agencies a child's identifiers went to."""
    dead = reference_source("education", f"http://127.0.0.1:{free_port()}")
    with reference_stack(tmp_path, {"health": [health_record()]}) as live:
        sources = [*live.components.sources, dead]
        with running_gateway(
            tmp_path / "second", sources, circuit_failures=1, circuit_cool_down_s=600
        ) as gateway:
            first = _sources(gateway)["education"]
            second = _sources(gateway)
            skipped = second["education"]
            audited = gateway.audited(second["auditId"])

    assert first["errorCode"] == "CONNECTION_FAILED"
    assert first["askedWith"] == ["NHS_NUMBER"]  # really asked
    assert skipped["status"] == "FAILED"
    assert skipped["errorCode"] == CIRCUIT_OPEN
    assert skipped["askedWith"] == []  # nobody asked it
    # nor may the audit log say the child's identifiers were sent to the agency
    (kept,) = [s for s in audited["sources"] if s["source"] == "education"]
    assert kept["asked_with"] == []


# --- /readyz's source_status is what the agency did when last asked ------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_readiness_does_not_report_a_circuit_skip_as_the_agency_just_failing():
    """source_health: "What each agency's connector did the last time a lookup asked it". A lookup
    that skipped the source (circuit open) did not ask it: its last contact stays as it was."""
    clock = _Clock()
    health = SourceHealth(["education"], clock=clock)
    health.record([SourceAnswer("education", SourceStatus.ANSWERED, 12.0, ())])
    clock.now += 300
    health.record([SourceAnswer("education", SourceStatus.FAILED, 0.0, error_code=CIRCUIT_OPEN)])
    assert health.report()["education"] == {"last_status": "RESPONDED", "seconds_ago": 300.0}


def test_readiness_does_not_report_a_source_never_asked_for_want_of_time_as_timed_out():
    """A source left no time before the lookup's deadline is TIMED_OUT with DEADLINE without any
    request being sent (gateway.fanout): the agency did nothing, so /readyz must not say it
    timed out just now."""
    clock = _Clock()
    health = SourceHealth(["education"], clock=clock)
    health.record([SourceAnswer("education", SourceStatus.NO_RECORD, 12.0, ())])
    clock.now += 60
    health.record([SourceAnswer("education", SourceStatus.TIMED_OUT, 0.0, error_code="DEADLINE")])
    assert health.report()["education"] == {"last_status": "RESPONDED", "seconds_ago": 60.0}


# --- serve --workers: a worker replaced while the others drain ----------------------------------


def test_a_worker_replaced_while_draining_does_not_turn_ready(tmp_path, redis_prefix):
    """docs/deployment.md: on SIGTERM every worker turns /readyz 503 and keeps serving for the
    drain. A worker that dies during the drain is restarted by the supervisor (which has not been
    told to exit yet); the replacement starts fresh, never told to drain, and answers 200 - the
    load balancer sends new lookups to an instance about to stop."""
    from tests.processes import dev_token, graphql
    from tests.stack import eventually
    from tests.test_workers import LOOKUP, _start, _stop_all, _two_workers

    connector, gateway, port = _start(
        tmp_path, redis_prefix, workers=2, CHILDLOOKUP_SHUTDOWN_DRAIN_S="60"
    )
    readyz = f"http://127.0.0.1:{port}/readyz"
    try:
        assert _wait_ready(readyz, gateway)
        workers = eventually(lambda: _two_workers(gateway.pid))
        gateway.send_signal(signal.SIGTERM)
        eventually(lambda: _statuses(readyz, 4) == {503})
        os.kill(next(iter(workers)), signal.SIGKILL)
        replaced = eventually(lambda: _two_workers(gateway.pid, not_=workers), timeout_s=30)
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and 200 not in seen:
            seen |= _statuses(readyz, 4)
            time.sleep(0.2)
        # the replacement started and serves (it did not die at start, which would prove nothing)
        assert _two_workers(gateway.pid) == replaced
        assert "FOUND" in str(graphql(port, LOOKUP, dev_token(tmp_path)))
    finally:
        _stop_all(gateway, connector)
    assert 200 not in seen, "a worker started during the drain reports ready"


def _wait_ready(url: str, process) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _statuses(url: str, times: int) -> set[int]:
    found = set()
    for _ in range(times):
        try:
            found.add(httpx.get(url, timeout=2).status_code)
        except httpx.HTTPError:
            found.add(0)
    return found


# --- a connector replica's replay check over a slow Redis ---------------------------------------


class _SlowFirstReply(FaultProxy):
    """Forwards both ways, but holds back Redis's first reply past the client's timeout - as a
    Redis stalled for a moment (a fork, an fsync) would: the command ran, its reply came late."""

    def __init__(self, host: str, port: int, delay_s: float) -> None:
        super().__init__(host, port)
        self._delay_s = delay_s
        self._held = False
        self._set_sent = False

    async def _serve(self, reader, writer) -> None:
        self._clients.append(writer)
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(self._requests(reader, up_writer), self._replies(up_reader, writer))

    async def _requests(self, source, sink) -> None:
        try:
            while data := await source.read(65536):
                self._set_sent = self._set_sent or b"\r\nSET\r\n" in data.upper()
                sink.write(data)
                await sink.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            sink.close()

    async def _replies(self, source, sink) -> None:
        try:
            while data := await source.read(65536):
                if self._set_sent and not self._held:  # the first SET's reply
                    self._held = True
                    await asyncio.sleep(self._delay_s)
                sink.write(data)
                await sink.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            sink.close()


def test_a_slow_redis_does_not_turn_a_first_request_into_a_refused_replay(redis_prefix):
    """connectors.redis_replay: SET NX checks and remembers in one command, and the client
    retries a command that timed out. When Redis ran the first SET but answered late, the retry
    finds the id it just stored and the replica refuses the gateway's one and only request as a
    replay (a TrustError: UNAUTHENTICATED, which the runbook reads as a key mismatch)."""
    _, prefix = redis_prefix

    async def scenario() -> str:
        with _SlowFirstReply("127.0.0.1", 6379, delay_s=1.5) as proxy:
            client = redis_client(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1, retries=1)
            cache = RedisReplayCache(client, prefix)
            try:
                await cache.remember(f"first-{random_id()}", forget_after=time.time() + 60)
                return "accepted"
            except ReplayRefused:
                return "refused as a replay"
            except ReplayCheckUnavailable:
                return "unavailable"  # failing closed would be acceptable
            finally:
                await client.aclose()

    assert uvloop.run(scenario()) in ("accepted", "unavailable")


def test_a_real_replay_is_still_refused_across_replicas(redis_prefix):
    url, prefix = redis_prefix

    async def scenario() -> list[str]:
        one, two = RedisReplayCache.from_url(url, prefix), RedisReplayCache.from_url(url, prefix)
        jti, outcomes = f"twice-{random_id()}", []
        try:
            for cache in (one, two, one):
                try:
                    await cache.remember(jti, forget_after=time.time() + 60)
                    outcomes.append("accepted")
                except ReplayRefused:
                    outcomes.append("refused")
        finally:
            await one.aclose()
            await two.aclose()
        return outcomes

    assert uvloop.run(scenario()) == ["accepted", "refused", "refused"]


def test_a_locator_not_asked_for_want_of_time_is_not_reported_asked():
    """As for an agency skipped for want of time: no identifier went to the locator, so its
    answer (and the audit record written from it) must not say it was asked with one."""
    key = ec.generate_private_key(ec.SECP256R1())
    client = LocatorClient(
        "http://127.0.0.1:9",
        ConnectorTransport(),
        RequestSigner(key, issuer="childlookup-gateway"),
        AnswerVerifier(StaticKeys([key.public_key()])),
        [new_pseudonym_key("k1")],
        locator_id="locator",
        timeout_ms=500,
    )
    query = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, nhs_number=NHS)
    lookup = lookup_context(query, deadline_s=-1.0)

    located = asyncio.run(client.locate(lookup, {IdentifiedBy.NHS_NUMBER: NHS}))

    assert located.answer.error_code == "DEADLINE"
    assert not located.answer.sent
    assert located.answer.asked_with == ()
