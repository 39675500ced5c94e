"""The lookup benchmarks' load (bench.load) against a real server on loopback: every child is
looked up once, answers are counted by outcome and status, refusals as errors, and lookups that
asked an agency again are told apart. No timing is asserted."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.load import Connection, drive, percentile
from connectors.serving import BackgroundServer

QUERY = "query($nhs: String!) { child(nhsNumber: $nhs) { outcome } }"


async def _graphql(request: Request) -> Response:
    """FOUND for an even NHS number (asked again when it ends in 0), NOT_FOUND for an odd one,
    a refusal for "bad"."""
    nhs = json.loads(await request.body())["variables"]["nhs"]
    if nhs == "bad":
        return JSONResponse({"errors": [{"message": "no"}]}, status_code=400)
    found = int(nhs) % 2 == 0
    child = {"outcome": "FOUND" if found else "NOT_FOUND", "again": nhs.endswith("0")}
    return JSONResponse({"data": {"child": child}}, headers={"x-answer": f"for {nhs}"})


def _read(body: dict[str, Any]) -> tuple[str, list[str], bool]:
    child = body["data"]["child"]
    status = "health:ANSWERED" if child["outcome"] == "FOUND" else "health:NO_RECORD"
    return child["outcome"], [status], child["again"]


def test_each_child_is_looked_up_once_and_every_answer_counted():
    app = Starlette(routes=[Route("/graphql", _graphql, methods=["POST"])])
    children = ["10", "12", "13", "15", "17", "bad"]
    with BackgroundServer(app) as server:
        phase = asyncio.run(drive(server.url + "/graphql", {}, QUERY, _read, children, 3))

    assert len(phase.latencies_ms) == len(phase.sizes) == 6
    assert phase.outcomes == {"FOUND": 2, "NOT_FOUND": 3, "ERROR:400": 1}
    assert phase.statuses == {"health:ANSWERED": 2, "health:NO_RECORD": 3}
    assert len(phase.asked_again_ms) == 1  # "10"
    assert len(phase.one_round_ms) == 4  # the refusal is neither
    assert phase.wall_s > 0


def test_an_exchange_returns_the_answers_headers_and_exact_body():
    app = Starlette(routes=[Route("/graphql", _graphql, methods=["POST"])])
    payload = json.dumps({"query": QUERY, "variables": {"nhs": "12"}}).encode()

    async def ask(port: int) -> tuple[int, dict[str, str], bytes]:
        connection = await Connection.open("127.0.0.1", port)
        try:
            await connection.post("/graphql", payload, {})  # the connection is kept alive
            return await connection.exchange("/graphql", payload, {"x-test": "1"})
        finally:
            connection.close()

    with BackgroundServer(app) as server:
        status, headers, body = asyncio.run(ask(int(server.url.rsplit(":", 1)[1])))

    assert status == 200
    assert headers["x-answer"] == "for 12"
    assert json.loads(body) == {"data": {"child": {"outcome": "FOUND", "again": False}}}


def test_the_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 51.0  # index round(0.5 * 99) = 50 (banker's rounding)
    assert percentile(values, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
