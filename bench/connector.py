"""The connector SDK against a bare Starlette endpoint returning the same bytes (issue #12).

Two servers, each a separate process on loopback, run as deployed (the project's serving helpers:
uvicorn on uvloop and httptools, the CLI's JSON logging to a file):

- **sdk**: the reference health connector (`create_reference_app`) over a generated population;
- **bare**: one Starlette POST route that reads the body, finds the NHS number in it and returns
  the bytes the SDK returned for that request, precomputed per child.

This process drives both with a lean keep-alive client (bench.load's), one lookup at a time, a
different child per lookup, in interleaved phases (sdk, bare, bare, sdk, ...) so whatever else the
machine does hits both alike. Each lookup is built (and signed) as the gateway does it before its
clock starts. Every answer, from either server, is checked against the SDK's byte for byte.

    python -m bench.connector --children 2000 --requests 500 --rounds 8 [--gap-us 100]

With `--gap-us`, each request leaves at least that long after the previous answer, so the servers
sit idle between lookups as a connector in service does, rather than being kept warm.

It runs twice: plain, then **signed** - requests signed as the gateway signs them
(gateway.signing.RequestSigner), the SDK verifying them with a static key (RequestVerifier) and
signing its answers (AnswerSigner), as deployed; the bare endpoint does the same checks by hand
with PyJWT (signature, issuer, audience, times, body hash, token id once) and signs its answers.

Per variant and server: p50/p95/p99 over every round's lookups, and server CPU ms per lookup from
/proc/<pid>/stat. Prints a table and writes bench/results/connector.json. Traffic goes only to
127.0.0.1, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.load import Connection, percentile
from bench.report import write_report
from bench.stack import wait_ready
from connectors.protocol import LOOKUP_PATH, Caller, FieldId, Identifiers, LookupRequest
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.serving import ServedApp, bind_socket, free_port, run, serve_all
from connectors.synthetic import generate_population, write_population
from connectors.trust import (
    ALGORITHM,
    BODY_HASH_CLAIM,
    SIGNATURE_HEADER,
    TOKEN_TTL_S,
    AnswerSigner,
    RequestVerifier,
    StaticKey,
    TrustError,
    ensure_key_pair,
    key_id,
    load_private_key,
    load_public_key,
)
from gateway.signing import AnswerVerifier, RequestSigner

RESULTS = Path(__file__).resolve().parent / "results"
AGENCY = "health"
ISSUER = "childlookup-gateway"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAX_SECONDS_PER_PHASE = 120
WARM_UP = 300
DEADLINE_S = 2.5
GOAL_MS = 0.1
"""Issue #12: the SDK's p50 within 0.1 ms of the bare endpoint's."""

# What the gateway asks health for in a social worker's SAFEGUARDING_ENQUIRY: everything health
# provides but sensitive service details (`childlookup policy explain`), in the gateway's order.
FIELDS = sorted(
    f for f in REFERENCE_AGENCIES[AGENCY].provides if f is not FieldId.SENSITIVE_SERVICE_DETAILS
)


# --- the servers (run as `python -m bench.connector serve ...` in their own process) ----------


@dataclass(frozen=True)
class _Keys:
    """Key files for the signed variant: the gateway's request key, the connector's answer key."""

    directory: Path

    @property
    def gateway_private(self) -> Path:
        return self.directory / "gateway.pem"

    @property
    def gateway_public(self) -> Path:
        return self.directory / "gateway.pub.pem"

    @property
    def answer_private(self) -> Path:
        return self.directory / "answer.pem"

    @property
    def answer_public(self) -> Path:
        return self.directory / "answer.pub.pem"

    @classmethod
    def create(cls, directory: Path) -> _Keys:
        """The key pairs in `directory`, made there once."""
        keys = cls(directory)
        ensure_key_pair(keys.gateway_private, keys.gateway_public)
        ensure_key_pair(keys.answer_private, keys.answer_public)
        return keys


def _sdk_app(records: Path, keys: _Keys | None) -> Starlette:
    if keys is None:
        return create_reference_app(AGENCY, records)
    verifier = RequestVerifier(StaticKey(load_public_key(keys.gateway_public)), issuer=ISSUER)
    signer = AnswerSigner.from_pem_file(keys.answer_private)
    return create_reference_app(AGENCY, records, verifier=verifier, signer=signer)


def _bare_app(answers_file: Path, keys: _Keys | None) -> Starlette:
    """The least a hand-written endpoint does to give the same answer (and, signed, to check the
    request and sign the answer as the protocol requires)."""
    answers = {nhs: text.encode() for nhs, text in json.loads(answers_file.read_text()).items()}
    public = None if keys is None else load_public_key(keys.gateway_public)
    private = None if keys is None else load_private_key(keys.answer_private)
    kid = None if private is None else key_id(private.public_key())
    seen: set[str] = set()  # token ids, never forgotten: a run is far shorter than a token's life

    async def lookup(request: Request) -> Response:
        body = await request.body()
        headers = {}
        if public is not None and private is not None:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            claims = jwt.decode(
                token, public, algorithms=[ALGORITHM], issuer=ISSUER, audience=AGENCY, leeway=5
            )
            digest = hashlib.sha256(body).hexdigest()
            if not hmac.compare_digest(claims[BODY_HASH_CLAIM], digest):
                return Response(b"{}", status_code=401)
            if claims["jti"] in seen or claims["exp"] - claims["iat"] > TOKEN_TTL_S:
                return Response(b"{}", status_code=401)
            seen.add(claims["jti"])
        answer = answers[json.loads(body)["identifiers"]["nhs_number"]]
        if private is not None:
            issued = int(time.time())
            signed = {
                "iss": AGENCY,
                "iat": issued,
                "exp": issued + TOKEN_TTL_S,
                BODY_HASH_CLAIM: hashlib.sha256(answer).hexdigest(),
            }
            headers[SIGNATURE_HEADER] = jwt.encode(
                signed, private, algorithm=ALGORITHM, headers={"kid": kid}
            )
        return Response(answer, media_type="application/json", headers=headers)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route(LOOKUP_PATH, lookup, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def _serve(args: argparse.Namespace) -> None:
    from gateway.logs import configure as configure_logging

    configure_logging()  # as `childlookup connector serve` does: a JSON line per lookup
    keys = None if args.keys is None else _Keys.create(args.keys)
    app = _sdk_app(args.records, keys) if args.kind == "sdk" else _bare_app(args.answers, keys)
    served = ServedApp(args.kind, app, bind_socket("127.0.0.1", args.port))
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([served], log_level="info"))


@contextlib.contextmanager
def _server(kind: str, port: int, work: Path, extra: Sequence[str]) -> Iterator[int]:
    """A server process (`kind` sdk or bare) on `port`, ready; yields its pid."""
    log = work / f"{kind}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.connector", "serve", kind, "--port", str(port), *extra],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


# --- the driver ------------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


@dataclass(frozen=True)
class _Answer:
    latency_ms: float
    status: int
    body: bytes
    signature: str | None


class _Client:
    """Lookups as the gateway sends them (signed when it has a signer), one at a time, each
    `gap_us` after the previous answer."""

    def __init__(self, connection: Connection, signer: RequestSigner | None, gap_us: float) -> None:
        self.connection = connection
        self._signer = signer
        self._gap_s = gap_us / 1e6
        self._answered_at = 0.0

    async def lookup(self, nhs: str) -> _Answer:
        payload = (
            LookupRequest(
                request_id=f"bench-{nhs}",  # one per child, so the answer's bytes are the child's
                deadline=datetime.now(UTC) + timedelta(seconds=DEADLINE_S),
                purpose="SAFEGUARDING_ENQUIRY",
                caller=Caller(role="social_worker", organisation="BENCH"),
                identifiers=Identifiers(nhs_number=nhs),
                fields=FIELDS,
            )
            .model_dump_json()
            .encode()
        )
        headers = {"content-type": "application/json"}
        if self._signer is not None:
            headers["authorization"] = self._signer.authorization(AGENCY, payload)
        # Busy-waited: the event loop cannot sleep for microseconds.
        until = self._answered_at + self._gap_s
        while time.perf_counter() < until:
            pass
        started = time.perf_counter()
        status, answer_headers, body = await self.connection.exchange(LOOKUP_PATH, payload, headers)
        signature = answer_headers.get(SIGNATURE_HEADER)
        self._answered_at = time.perf_counter()
        return _Answer((self._answered_at - started) * 1000, status, body, signature)


@dataclass
class _Phases:
    """Every phase of one server in one variant, pooled."""

    latencies_ms: list[float] = field(default_factory=list)
    cpu_ticks: int = 0
    mismatches: int = 0


async def _phase(
    client: _Client, pid: int, children: Sequence[str], expected: dict[str, bytes], into: _Phases
) -> list[_Answer]:
    """Look up each child in turn; the answers are checked against `expected`, byte for byte."""
    answers = []
    before = _cpu_ticks(pid)
    stop_at = time.monotonic() + MAX_SECONDS_PER_PHASE
    for nhs in children:
        if time.monotonic() > stop_at:
            break
        answer = await client.lookup(nhs)
        answers.append(answer)
        into.latencies_ms.append(answer.latency_ms)
        if answer.status != 200 or answer.body != expected[nhs]:
            into.mismatches += 1
    into.cpu_ticks += _cpu_ticks(pid) - before
    return answers


async def _open(port: int, signer: RequestSigner | None, gap_us: float = 0.0) -> _Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return _Client(Connection(reader, writer), signer, gap_us)


async def _sdk_answers(
    port: int, children: Sequence[str], signer: RequestSigner | None
) -> dict[str, bytes]:
    """The SDK's answer for each child (which also warms it up)."""
    client = await _open(port, signer)
    try:
        answers = {}
        for nhs in children:
            answer = await client.lookup(nhs)
            if answer.status != 200:
                raise RuntimeError(f"the SDK answered {answer.status}: {answer.body[:200]!r}")
            answers[nhs] = answer.body
        return answers
    finally:
        client.connection.close()


async def _compare(
    servers: dict[str, tuple[int, int]],
    children: Sequence[str],
    expected: dict[str, bytes],
    signer: RequestSigner | None,
    answer_key: Path | None,
    requests: int,
    rounds: int,
    gap_us: float,
) -> dict[str, _Phases]:
    """Warm each server up, then `rounds` rounds of one phase each, in alternating order."""
    clients = {kind: await _open(port, signer, gap_us) for kind, (port, _) in servers.items()}
    phases = {kind: _Phases() for kind in servers}
    try:
        for kind, client in clients.items():  # warm-up: not counted, but its answers checked
            warm = _Phases()
            answers = await _phase(client, servers[kind][1], children[:WARM_UP], expected, warm)
            if warm.mismatches:
                raise RuntimeError(f"{kind} answered {warm.mismatches} lookups unlike the SDK")
            if answer_key is not None:
                await _check_signatures(kind, answers, answer_key)
        start = 0
        for round_ in range(rounds):
            batch = [children[(start + i) % len(children)] for i in range(requests)]
            start += requests
            for kind in ("sdk", "bare") if round_ % 2 == 0 else ("bare", "sdk"):
                await _phase(clients[kind], servers[kind][1], batch, expected, phases[kind])
    finally:
        for client in clients.values():
            client.connection.close()
    return phases


async def _check_signatures(kind: str, answers: Sequence[_Answer], answer_key: Path) -> None:
    """Every answer signed by the connector's key, as the gateway checks it."""
    verifier = AnswerVerifier(StaticKey(load_public_key(answer_key)))
    for answer in answers:
        try:
            await verifier.verify(answer.signature, answer.body, source=AGENCY)
        except TrustError as error:
            raise RuntimeError(f"{kind}: {error.message}") from None


def _summary(phases: _Phases) -> dict[str, Any]:
    latencies = phases.latencies_ms
    return {
        "lookups": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "server_cpu_ms_per_lookup": round(
            phases.cpu_ticks / CLOCK_TICKS * 1000 / max(1, len(latencies)), 3
        ),
        "mismatched_answers": phases.mismatches,
    }


def _run(
    children_count: int, requests: int, rounds: int, variants: Sequence[str], gap_us: float
) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="childlookup-bench-connector-") as tmp:
        work = Path(tmp)
        population = generate_population(seed=12, children=children_count)
        write_population(population, work / "population")
        children = [r.identifiers.nhs_number for r in population.health if r.identifiers.nhs_number]
        records = work / "population" / f"{AGENCY}.jsonl"
        keys = _Keys.create(work / "keys")
        answers_file = work / "answers.json"
        expected: dict[str, bytes] = {}
        for variant in variants:
            signed = variant == "signed"
            sender = (
                RequestSigner(load_private_key(keys.gateway_private), issuer=ISSUER)
                if signed
                else None
            )
            key_args = ["--keys", str(keys.directory)] if signed else []
            ports = {"sdk": free_port(), "bare": free_port()}
            sdk_args = ["--records", str(records), *key_args]
            with _server("sdk", ports["sdk"], work, sdk_args) as sdk_pid:
                if not expected:  # the SDK's own answers, one per child (and its warm-up)
                    expected = run(_sdk_answers(ports["sdk"], children, sender))
                    answers_file.write_text(
                        json.dumps({nhs: body.decode() for nhs, body in expected.items()})
                    )
                bare_args = ["--answers", str(answers_file), *key_args]
                with _server("bare", ports["bare"], work, bare_args) as bare_pid:
                    print(f"{variant}: sdk pid {sdk_pid}, bare pid {bare_pid}", flush=True)
                    servers = {"sdk": (ports["sdk"], sdk_pid), "bare": (ports["bare"], bare_pid)}
                    phases = run(
                        _compare(
                            servers,
                            children,
                            expected,
                            sender,
                            keys.answer_public if signed else None,
                            requests,
                            rounds,
                            gap_us,
                        )
                    )
            sdk, bare = _summary(phases["sdk"]), _summary(phases["bare"])
            difference = {
                key: round(sdk[key] - bare[key], 3)
                for key in ("p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_lookup")
            }
            results.append(
                {
                    "variant": variant,
                    "sdk": sdk,
                    "bare": bare,
                    "difference": difference,
                    "p50_within_goal": difference["p50_ms"] <= GOAL_MS,
                }
            )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="(internal) one server process")
    serve.add_argument("kind", choices=["sdk", "bare"])
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--records", type=Path)
    serve.add_argument("--answers", type=Path)
    serve.add_argument("--keys", type=Path, help="signed: the directory of the key files")
    parser.add_argument("--children", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=500, help="lookups per phase")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--variants", nargs="+", choices=["plain", "signed"], default=["plain", "signed"]
    )
    parser.add_argument(
        "--gap-us",
        type=float,
        default=0.0,
        help="least time from an answer to the next request (busy-waited), so that the servers "
        "sit idle between lookups as a connector in service does",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "connector.json")
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return
    results = _run(args.children, args.requests, args.rounds, args.variants, args.gap_us)
    write_report(
        "connector",
        args.out,
        children=args.children,
        lookups_per_phase=args.requests,
        rounds=args.rounds,
        gap_us=args.gap_us,
        goal_p50_difference_ms=GOAL_MS,
        variants=results,
    )
    print(f"{'variant':>8} {'server':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'cpu ms':>7} {'bad':>4}")
    for r in results:
        for kind in ("sdk", "bare", "difference"):
            m = r[kind]
            print(
                f"{r['variant']:>8} {kind[:6]:>6} {m['p50_ms']:>7} {m['p95_ms']:>7}"
                f" {m['p99_ms']:>7} {m['server_cpu_ms_per_lookup']:>7}"
                f" {m.get('mismatched_answers', ''):>4}"
            )
    for r in results:
        met = "met" if r["p50_within_goal"] else "NOT met"
        print(f"{r['variant']}: p50 within {GOAL_MS} ms of the bare endpoint: {met}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
