"""The load the lookup benchmarks drive: GraphQL lookups over lean keep-alive connections.

bench.lookup (our stack alone) and bench.compare (our stack beside a peer) send the same kind of
load and read it the same way; only what an answer says, and what else is measured around a
phase, differ. Traffic goes where it is sent (the benchmarks send it only to 127.0.0.1), and a
phase stops after MAX_SECONDS_PER_PHASE whatever is left.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_SECONDS_PER_PHASE = 120

Read = Callable[[dict[str, Any]], tuple[str, list[str], bool]]
"""What one 200 answer says: the lookup's outcome, each agency's status ("health:ANSWERED", ...),
and whether an agency was asked again (a second round, with an identifier a first answer held)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0-100) of `values`, rounded to 3 places."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the gateway's two cores,
    so it must cost as little as possible or it would be measuring itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        status, _, answer = await self.exchange(path, body, headers)
        return status, answer

    async def exchange(
        self, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """POST `body`; the answer's status, headers (names in lower case) and body."""
        head = f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._writer.write(head.encode() + body)
        status_line, *header_lines = (
            (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        )
        answer_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer_headers[name.lower()] = value.strip()
        length = int(answer_headers.get("content-length", "0"))
        return int(status_line.split()[1]), answer_headers, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


@dataclass
class Phase:
    """One phase's lookups as the client saw them."""

    latencies_ms: list[float] = field(default_factory=list)
    one_round_ms: list[float] = field(default_factory=list)
    """Latencies of the lookups that asked no agency again."""
    asked_again_ms: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    """Each answered lookup's outcome; ERROR:<status> for a refused one."""
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0


async def drive(
    url: str,
    headers: Mapping[str, str],
    query: str,
    read: Read,
    nhs_numbers: Sequence[str],
    concurrency: int,
) -> Phase:
    """Look up each of `nhs_numbers` once with `query` (its `$nhs` variable), `concurrency` at a
    time, each connection taking the next child as it is free."""
    phase = Phase()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for nhs in nhs_numbers:
        queue.put_nowait(nhs)
    target = httpx.URL(url)
    stop_at = time.monotonic() + MAX_SECONDS_PER_PHASE

    async def worker() -> None:
        connection = await Connection.open(target.host, target.port or 80)
        try:
            while not queue.empty() and time.monotonic() < stop_at:
                nhs = queue.get_nowait()
                payload = json.dumps({"query": query, "variables": {"nhs": nhs}}).encode()
                started = time.perf_counter()
                status, raw = await connection.post(target.path, payload, headers)
                elapsed = (time.perf_counter() - started) * 1000
                phase.latencies_ms.append(elapsed)
                phase.sizes.append(len(raw))
                body = json.loads(raw)
                if status != 200 or body.get("errors"):
                    phase.outcomes[f"ERROR:{status}"] += 1
                    continue
                outcome, answered, again = read(body)
                phase.outcomes[outcome] += 1
                phase.statuses.update(answered)
                (phase.asked_again_ms if again else phase.one_round_ms).append(elapsed)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.wall_s = time.perf_counter() - started
    return phase
