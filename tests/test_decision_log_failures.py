"""The decision log when its volume fills mid-line or its stdout reader stalls: a line the file
took only in part never runs on into the next one, whichever process writes next, and a stalled
stdout pipe fails the decisions it did not take without holding the event loop meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from pydantic import BaseModel, ConfigDict

from gateway.policy import DecisionLog, PolicyError
from gateway.policy.decision_log import StreamSink
from tests.processes import full_pipe
from tests.test_decision_log_rotation import WRITER


class _Decision(BaseModel):
    model_config = ConfigDict(frozen=True)
    n: int
    padding: str = "x" * 1000


async def _decide(log: DecisionLog, n: int) -> str:
    """Log one decision (~2.1 KB a line) and wait for the log to take it."""
    decision_id = log.record("childlookup/plan", "rev-1", _Decision(n=n), _Decision(n=n))
    await log.written()
    return decision_id


def _whole_lines(log_file: Path) -> list[str]:
    """The decision ids of the file's lines that are whole records; every other line must be one
    a reader discards (not JSON), never a record with another's run on into it."""
    ids = []
    for line in log_file.read_bytes().split(b"\n"):
        try:
            ids.append(json.loads(line)["decision_id"])
        except ValueError:
            continue
    return ids


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (needs root to mount), so a write really runs out of space."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not mount or not umount:
        pytest.skip("mounting a small tmpfs needs root")
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(volume)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr!r}")
    try:
        yield volume
    finally:
        subprocess.run([umount, str(volume)], check=True)


def _fill(volume: Path) -> Path:
    """Take every free page of `volume` (what is left of the log file's last page stays free)."""
    filler = volume / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"f" * 4096)
        except OSError:
            pass
    return filler


async def _torn(log: DecisionLog, volume: Path) -> str:
    """Log three lines, fill the volume, and log one the file takes only the start of (the rest
    of its page): that decision fails closed. Then free the volume."""
    for n in range(3):
        await _decide(log, n)
    filler = _fill(volume)
    decision_id = log.record("childlookup/plan", "rev-1", _Decision(n=3), _Decision(n=3))
    with pytest.raises(PolicyError):
        await log.written()
    filler.unlink()
    return decision_id


@pytest.mark.anyio
async def test_after_a_line_torn_by_a_full_volume_the_next_line_is_whole(small_volume):
    log_file = small_volume / "decision-log.jsonl"
    log = DecisionLog.open(str(log_file), instance="t")
    torn = await _torn(log, small_volume)
    assert not log_file.read_bytes().endswith(b"\n")  # the volume really tore the line

    after = await _decide(log, 4)
    log.close()
    whole = _whole_lines(log_file)
    assert after in whole, "the next decision ran on from the torn line"
    assert torn not in whole
    assert len(whole) == 4


@pytest.mark.anyio
async def test_a_line_torn_by_one_process_does_not_swallow_the_next_process_line(small_volume):
    """Several gateway processes append to one file: the next line after the torn one is as
    likely another process's, which knows nothing of the tear."""
    log_file = small_volume / "decision-log.jsonl"
    log = DecisionLog.open(str(log_file), instance="t")
    torn = await _torn(log, small_volume)
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(log_file), "other", "0", "1", stdout=subprocess.PIPE
    )
    other = (await writer.communicate())[0].decode().split()
    assert writer.returncode == 0
    after = await _decide(log, 4)
    log.close()
    whole = _whole_lines(log_file)
    assert other[0] in whole, "the other process's line ran on from the torn one"
    assert after in whole
    assert torn not in whole
    assert len(whole) == len(set(whole)) == 5


STALLED = """
import asyncio, json, sys, time
from tests.test_decision_log_failures import _decide
from gateway.policy import DecisionLog, PolicyError
from gateway.policy.decision_log import StreamSink

async def main() -> None:
    log = DecisionLog(StreamSink(sys.stdout, stall_s=0.3), instance="t")
    gaps = [0.0]

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            gaps.append(time.monotonic() - before)

    async def lookup(n: int) -> str:
        await asyncio.sleep(n * 0.01)  # one lookup a round
        return await _decide(log, n)

    ticker = asyncio.create_task(tick())
    outcomes = await asyncio.gather(*(lookup(n) for n in range(40)), return_exceptions=True)
    ticker.cancel()
    report = {
        "gap": max(gaps),
        "taken": [o for o in outcomes if isinstance(o, str)],
        "refused": sum(isinstance(o, PolicyError) for o in outcomes),
    }
    print(json.dumps(report), file=sys.stderr, flush=True)
    sys.stdin.readline()  # the reader is back
    print(json.dumps({"last": await _decide(log, 99)}), file=sys.stderr, flush=True)

asyncio.run(main())
"""


def _reported(stderr: IO[bytes]) -> Any:
    """The next JSON line the child reports on stderr (past its log messages); None at its end."""
    for line in stderr:
        if line.startswith(b"{"):
            return json.loads(line)
    return None


def test_a_stdout_nobody_reads_fails_closed_without_holding_the_event_loop():
    """A gateway whose stdout (a real pipe) is not read: the pipe takes the first lines (a page
    each), then nothing. Each later round's write waited on the pipe in the event loop for the
    whole stall (0.3 s here, 5 s by default), holding every other lookup, health check and
    deadline."""
    child = subprocess.Popen(
        [sys.executable, "-c", STALLED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdin
    assert child.stdout
    assert child.stderr
    try:
        report = _reported(child.stderr)
        child.stdin.write(b"\n")
        child.stdin.flush()
        out = child.stdout.read()
        last = _reported(child.stderr)
    finally:
        child.kill()
        child.wait(10)
    assert report, child.stderr.read()
    assert report["gap"] < 0.15, f"the event loop was held {report['gap']:.2f} s"
    assert 10 <= len(report["taken"]) < 40  # a line a page of the pipe: ~16
    assert report["refused"] == 40 - len(report["taken"])
    written = [json.loads(line)["decision_id"] for line in out.splitlines()]  # none torn
    assert written[: len(report["taken"])] == report["taken"]
    assert written[-1] == last["last"]


@pytest.mark.anyio
async def test_past_its_backlog_a_stalled_stdout_refuses_at_once():
    """What waits for a stalled pipe is bounded: past `backlog_bytes` a decision is refused
    (fails closed) at once rather than held in memory for the stall."""
    read_end, stream = full_pipe()
    log = DecisionLog(StreamSink(stream, stall_s=5.0, backlog_bytes=4096), instance="t")
    waiting = asyncio.create_task(_decide(log, 1))
    await asyncio.sleep(0.01)

    started = time.monotonic()
    with pytest.raises(PolicyError):
        await _decide(log, 2)
    assert time.monotonic() - started < 1.0

    os.set_blocking(read_end, False)
    out = bytearray()
    while not waiting.done():  # the reader is back: the decision kept waiting is taken
        try:
            out += os.read(read_end, 1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    decided = await waiting
    out += os.read(read_end, 1 << 20)
    stream.close()
    os.close(read_end)
    assert json.loads(out.lstrip(b"x"))["decision_id"] == decided
