"""Connector record store benchmark: load time and lookup latency of the file-backed backend.

    python -m bench.records --records 100000 200000

Prints a table and writes bench/results/records.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from connectors.protocol import Caller, ConnectorRecord, FieldId, Identifiers, LookupRequest
from connectors.records import FileBackend

RESULTS = Path(__file__).resolve().parent / "results"


def _request(nhs: str) -> LookupRequest:
    return LookupRequest(
        request_id="bench",
        deadline=datetime(2100, 1, 1, tzinfo=UTC),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="BENCH"),
        identifiers=Identifiers(nhs_number=nhs),
        fields=[FieldId.NAME],
    )


def measure(count: int, probes: int = 2000) -> dict[str, float]:
    template = ConnectorRecord(
        record_id="R%d",
        identifiers=Identifiers(nhs_number="9%09d", upn="U%012d"),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    ).model_dump_json()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        path.write_text("".join(template % (i, i, i) + "\n" for i in range(count)))
        started = time.perf_counter()
        backend = FileBackend.from_jsonl(path)
        load_s = time.perf_counter() - started
    step = max(1, count // probes)
    requests = [_request(f"9{i:09d}") for i in range(0, count, step)]

    async def lookups() -> list[float]:
        timings = []
        for request in requests:
            t = time.perf_counter()
            await backend.lookup(request)
            timings.append((time.perf_counter() - t) * 1e6)
        return timings

    timings = asyncio.run(lookups())
    return {
        "records": count,
        "load_s": round(load_s, 3),
        "lookup_p50_us": round(statistics.median(timings), 2),
        "lookup_p99_us": round(sorted(timings)[int(len(timings) * 0.99) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000])
    parser.add_argument("--out", type=Path, default=RESULTS / "records.json")
    args = parser.parse_args()
    rows = [measure(n) for n in args.records]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "records", "runs": rows}, indent=2))
    for row in rows:
        print(
            f"{row['records']:>8} records  load {row['load_s']:>6} s  lookup p50"
            f" {row['lookup_p50_us']:>6} us  p99 {row['lookup_p99_us']:>6} us"
        )


if __name__ == "__main__":
    main()
