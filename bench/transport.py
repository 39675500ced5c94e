"""The gateway's federated HTTP client against general-purpose peers, CPU per request (issue #12).

The gateway is one Python thread, and each lookup posts to every agency asked: the client's own
CPU per request is taken from every lookup. Three clients post the same request (1.5 KB of JSON
and a 600-byte bearer token, as a lookup's) to the same server and read its 3 KB answer with a
size cap, as fan-out does:

- **ours**: `gateway.exchange.post_capped` over `gateway.transport.ConnectorTransport`;
- **httpx**: `httpx.AsyncClient` with its default transport (httpcore), read by `client.stream`;
- **aiohttp**: `aiohttp.ClientSession.post`, read in chunks.

The server is a bare Starlette route in its own process (uvicorn on uvloop and httptools, as the
connector SDK serves), so that this process's CPU time (`time.process_time`) is the client's
alone. Phases alternate between clients, `--rounds` times, one at a time and `--concurrency` at
a time; each phase is `--requests` requests after a warm-up. Prints CPU microseconds per request
and p50 latency per client and mode, and writes bench/results/transport.json. Traffic goes only
to 127.0.0.1; every loop is bounded.

    python -m bench.transport --requests 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop

from bench.report import write_report
from bench.stack import wait_ready
from connectors.serving import free_port
from gateway.exchange import post_capped
from gateway.transport import ConnectorTransport

RESULTS = Path(__file__).resolve().parent / "results"
ANSWER = b'{"records":"' + b"r" * 3000 + b'"}'
BODY = b'{"request":"' + b"q" * 1500 + b'"}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer " + "t" * 600}
CAP = 1 << 20
WARM_UP = 200

Post = Callable[[], Awaitable[int]]
Phase = Callable[[Post], Awaitable[dict[str, float]]]


def _serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def lookup(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"ok")

    app = Starlette(
        routes=[Route("/v1/lookup", lookup, methods=["POST"]), Route("/healthz", healthz)]
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning"
    )


async def _ours(url: str, run: Phase) -> dict[str, float]:
    target = httpx.URL(url)
    async with ConnectorTransport() as transport:

        async def post() -> int:
            return len((await post_capped(transport, target, BODY, HEADERS, CAP)).payload)

        return await run(post)


async def _httpx(url: str, run: Phase) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def post() -> int:
            async with client.stream("POST", url, content=BODY, headers=HEADERS) as response:
                return await _capped_size(response.aiter_bytes())

        return await run(post)


async def _aiohttp(url: str, run: Phase) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:

        async def post() -> int:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                return await _capped_size(response.content.iter_any())

        return await run(post)


async def _capped_size(chunks: AsyncIterator[bytes]) -> int:
    """An answer's size, read as fan-out reads one: refused past CAP."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > CAP:
            raise ValueError("answer too large")
    return size


CLIENTS = {"ours": _ours, "httpx": _httpx, "aiohttp": _aiohttp}


def _phase(requests: int, concurrency: int) -> Phase:
    async def run(post: Post) -> dict[str, float]:
        latencies: list[float] = []

        async def worker(count: int, keep: bool) -> None:
            for _ in range(count):
                started = time.perf_counter()
                if await post() != len(ANSWER):
                    raise SystemExit("a client read a different answer")
                if keep:
                    latencies.append((time.perf_counter() - started) * 1e3)

        warm_up = WARM_UP // concurrency + 1
        await asyncio.gather(*(worker(warm_up, False) for _ in range(concurrency)))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency, True) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {
            "cpu_us_per_request": cpu / len(latencies) * 1e6,
            "requests_per_s": len(latencies) / wall,
            "p50_ms": statistics.median(latencies),
        }

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.transport", "--serve", str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/lookup"
        phases: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for concurrency in (1, args.concurrency):
                for name, client in CLIENTS.items():
                    result = uvloop.run(client(url, _phase(args.requests, concurrency)))
                    phases.setdefault((name, concurrency), []).append(result)
    finally:
        server.terminate()
        server.wait(timeout=15)
    results = []
    print(f"{'client':<8} {'in flight':>9} {'CPU us/request':>15} {'requests/s':>11} {'p50 ms':>7}")
    for (name, concurrency), runs in phases.items():
        row = {
            "client": name,
            "concurrency": concurrency,
            **{key: statistics.median(r[key] for r in runs) for key in runs[0]},
            "cpu_us_per_request_runs": [round(r["cpu_us_per_request"], 1) for r in runs],
        }
        results.append(row)
        print(
            f"{name:<8} {concurrency:>9} {row['cpu_us_per_request']:>15.1f}"
            f" {row['requests_per_s']:>11.0f} {row['p50_ms']:>7.3f}"
        )
    write_report(
        "transport",
        RESULTS / "transport.json",
        requests_per_phase=args.requests,
        rounds=args.rounds,
        results=results,
    )


if __name__ == "__main__":
    main()
