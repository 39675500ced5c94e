"""Availability at the edges: a decision log on a pipe read slowly, an audit store that stalls,
and a FHIR server that pages its answers. Each is a momentary or ordinary condition that must
not fail lookups (or starve the process), while what really fails still fails closed."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.fhir import create_fhir_app
from connectors.fhir.client import FHIR_JSON
from connectors.protocol import LOOKUP_PATH, ErrorCode, Indicators
from connectors.serving import BackgroundServer
from gateway.audit.migrations import upgrade_schema
from gateway.audit.postgres import PostgresAuditStore
from gateway.limits import LIMITS_UNAVAILABLE, InProcessLimits, LimitSettings
from gateway.policy import DecisionLog, PolicyError
from gateway.types import Caller
from tests.factories import CHECKPOINT_KEY
from tests.fhir_population import lookup_body
from tests.processes import drain
from tests.test_fhir_hostile_server import A, error, patient, plan_flag, records, searchset

# --- the decision log on stdout, a pipe its reader drains slowly --------------------------------


class _Decision(BaseModel):
    model_config = ConfigDict(frozen=True)
    n: int
    padding: str = "x" * 1000


def _small_nonblocking_pipe() -> tuple[int, int]:
    """A pipe of one page, its write end non-blocking (as uvloop or a parent leaves stdout)."""
    read, write = os.pipe()
    fcntl.fcntl(write, 1031, 4096)  # F_SETPIPE_SZ
    os.set_blocking(write, False)
    return read, write


@pytest.mark.anyio
async def test_a_stdout_pipe_read_slowly_takes_a_rounds_decisions_whole_and_fails_none(
    monkeypatch,
):
    """A round's decisions (here ~100 KB) are more than the pipe holds: with stdout non-blocking
    the write raised BlockingIOError (or took part of the batch), and every lookup of the round
    failed POLICY_UNAVAILABLE for a pipe that was only momentarily full."""
    read, write = _small_nonblocking_pipe()
    stream = os.fdopen(write, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stream)
    got = bytearray()
    reader = threading.Thread(target=drain, args=(read, got), kwargs={"pause_s": 0.002})
    reader.start()
    try:
        log = DecisionLog.open("stdout", instance="t")
        ids = [
            log.record("childlookup/plan", "rev-1", _Decision(n=n), _Decision(n=n))
            for n in range(100)
        ]
        await log.written()  # no PolicyError: the lines were written
    finally:
        monkeypatch.undo()
        stream.close()
        reader.join(10)
        os.close(read)
    lines = [json.loads(line) for line in got.decode().splitlines()]
    assert [line["decision_id"] for line in lines] == ids


@pytest.mark.anyio
async def test_a_stdout_pipe_nobody_reads_fails_closed_and_tears_no_line():
    """A pipe that takes nothing for the whole wait is a log that cannot be written: the round's
    decisions fail closed. The line it stopped in is finished first at the next write, so the
    reader never sees a torn line or two lines run together."""
    from gateway.policy.decision_log import StreamSink

    read, write = _small_nonblocking_pipe()
    stream = os.fdopen(write, "w", encoding="utf-8")
    try:
        log = DecisionLog(StreamSink(stream, stall_s=0.2), instance="t")
        stalled = [
            log.record("childlookup/plan", "rev-1", _Decision(n=n), _Decision(n=n))
            for n in range(10)
        ]
        with pytest.raises(PolicyError):
            await log.written()
        got = bytearray()
        reader = threading.Thread(target=drain, args=(read, got), kwargs={"pause_s": 0.0})
        reader.start()
        later = log.record("childlookup/plan", "rev-1", _Decision(n=99), _Decision(n=99))
        await log.written()
    finally:
        stream.close()
    reader.join(10)
    os.close(read)
    written = [json.loads(line)["decision_id"] for line in got.decode().splitlines()]
    begun = len(written) - 1  # the stalled round's lines the pipe took, each whole
    assert 1 <= begun < len(stalled)  # whole lines only (the pipe holds under two)
    assert written == [*stalled[:begun], later]


# --- the in-process limits in front of a stalled audit store ------------------------------------


@pytest.mark.anyio
async def test_a_stalled_audit_store_does_not_starve_the_processs_other_threads(postgres_schema):
    """Each reserve's read of the user's children was given up on after 2 s but went on in a
    thread of the default executor until the store gave up; forty new users at once (a morning)
    took every one of those threads, and any other `asyncio.to_thread` in the process - the
    audit store's own reads, a policy reload - waited behind them."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    store = PostgresAuditStore(url, schema, checkpoint_key=CHECKPOINT_KEY, read_bound_s=10.0)
    limits = InProcessLimits(LimitSettings(1000, 1000, 1000), store)
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        try:
            started = time.monotonic()
            reserves = asyncio.gather(
                *(
                    limits.reserve(Caller(f"dev:ORG:u{n}", f"U{n}", "gp", "ORG"), f"c{n}")
                    for n in range(40)
                )
            )
            await asyncio.sleep(0.1)
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 1.0)  # not starved
            refusals = await reserves
            took = time.monotonic() - started
        finally:
            conn.execute("ROLLBACK")
    store.close()
    assert refusals == [LIMITS_UNAVAILABLE] * 40
    assert took < 5


# --- a FHIR server that pages its searches, as HAPI does ----------------------------------------

DEFAULT_PAGE: int = 20
"""HAPI FHIR's default page size: a search without `_count` gets this many results a page."""
MAX_PAGE: int = 200
"""HAPI FHIR's default largest page: a larger `_count` is cut to it."""


class PagingServer:
    """PDS and CP-IS answering as a HAPI-based server would: every searchset in pages of
    `_count` (at most MAX_PAGE, DEFAULT_PAGE without it), the first page linking to the next."""

    def __init__(self) -> None:
        self.flags: list[dict[str, Any]] = []
        self.asked: list[str] = []

    def app(self) -> Starlette:
        async def read(request: Request) -> Response:
            return _fhir(patient())

        async def related(request: Request) -> Response:
            return _fhir(searchset())

        async def flags(request: Request) -> Response:
            self.asked.append(str(request.url.query))
            count = min(int(request.query_params.get("_count", DEFAULT_PAGE)), MAX_PAGE)
            page = searchset(*self.flags[:count]) | {"total": len(self.flags)}
            if len(self.flags) > count:
                page["link"] = [{"relation": "next", "url": f"{request.url}&_page=2"}]
            return _fhir(page)

        return Starlette(
            routes=[
                Route("/pds/Patient/{number}/RelatedPerson", related, methods=["GET"]),
                Route("/pds/Patient/{number}", read, methods=["GET"]),
                Route("/cpis/Flag", flags, methods=["GET"]),
            ]
        )


def _fhir(resource: dict[str, Any]) -> Response:
    return Response(json.dumps(resource), media_type=FHIR_JSON)


@pytest.fixture(scope="module")
def paging() -> Iterator[tuple[PagingServer, httpx.Client]]:
    server = PagingServer()
    with BackgroundServer(server.app()) as fhir:
        app = create_fhir_app(pds_url=f"{fhir.url}/pds", cpis_url=f"{fhir.url}/cpis")
        with (
            BackgroundServer(app) as connector,
            httpx.Client(base_url=connector.url, timeout=20) as client,
        ):
            yield server, client


def _flags(how_many: int) -> list[dict[str, Any]]:
    return [plan_flag(A, id=f"f{n}") for n in range(how_many)]


def test_a_child_with_more_cp_is_flags_than_a_default_page_is_answered(paging):
    """CP-IS was asked with no `_count`, so a server paging at 20 answered a child with 25 flags
    in two pages, and the lookup failed INTERNAL: a child with a long history could not be
    looked up at all."""
    server, client = paging
    server.flags = _flags(25)

    response = client.post(LOOKUP_PATH, content=lookup_body(nhs=A))

    [record] = records(response)
    assert record.indicators == Indicators(child_protection_plan=True, looked_after=False)
    assert "_count=" in server.asked[-1]


def test_flags_still_paged_at_the_count_asked_fail_the_lookup(paging):
    """More flags than even the page asked for is still one page of several: never read as all."""
    server, client = paging
    server.flags = _flags(MAX_PAGE + 1)

    response = client.post(LOOKUP_PATH, content=lookup_body(nhs=A))

    assert error(response) == (500, ErrorCode.INTERNAL)
