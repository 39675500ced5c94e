"""The decision log's sinks: a decision is acted on only once its line is in the log whole, on a
FIFO as on a file, and with several gateway processes (`childlookup serve --workers N`) sharing
one stdout pipe."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from gateway.policy import DecisionLog, PolicyError
from gateway.policy.decision_log import StreamSink
from tests.processes import drain, full_pipe
from tests.test_decision_log_failures import _decide, _reported

REPO = Path(__file__).parent.parent


class _FifoReader:
    """A real reader of a FIFO (`cat`), collecting what it reads until it is stopped."""

    def __init__(self, fifo: Path) -> None:
        cat = shutil.which("cat")
        assert cat
        self._cat = subprocess.Popen([cat, str(fifo)], stdout=subprocess.PIPE)
        self.out = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._cat.stdout
        while chunk := self._cat.stdout.read1(65536):
            self.out += chunk

    def stop(self, *, kill: bool = True) -> None:
        if kill:
            self._cat.kill()
        self._cat.wait(10)
        self._thread.join(10)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "decision-log.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.anyio
async def test_a_decision_log_on_a_fifo_takes_decisions(fifo):
    """A FIFO (or /dev/stdout as a path) is not seekable: asking it for its offset after each
    write failed every decision, though its line had been written."""
    reader = _FifoReader(fifo)
    log = DecisionLog.open(str(fifo), instance="t", max_bytes=1024)
    try:
        decided = [await _decide(log, n) for n in range(3)]
    finally:
        log.close()  # the FIFO's only writer: the reader reads to its end and stops
        reader.stop(kill=False)
    assert [json.loads(line)["decision_id"] for line in reader.out.splitlines()] == decided


@pytest.mark.anyio
async def test_a_fifo_whose_reader_is_gone_fails_closed(fifo):
    """Opened to read as well, the gateway was a reader of its own FIFO: with the real reader
    gone its writes still succeeded (no EPIPE), so decisions were acted on whose lines no one
    would ever read, until the pipe filled and a write held the event loop for good."""
    reader = _FifoReader(fifo)
    log = DecisionLog.open(str(fifo), instance="t")
    try:
        await _decide(log, 1)
        reader.stop()
        with pytest.raises(PolicyError):
            await _decide(log, 2)
    finally:
        reader.stop()
        log.close()


SHARING = """
import asyncio, json, sys
from tests.test_decision_log_failures import _decide
from gateway.policy import DecisionLog
from gateway.policy.decision_log import StreamSink

async def main() -> None:
    log = DecisionLog(StreamSink(sys.stdout, stall_s=30), instance=sys.argv[1])
    taken = []
    for round in range(80):
        outcomes = await asyncio.gather(
            *(_decide(log, round * 3 + n) for n in range(3)), return_exceptions=True
        )
        taken += [o for o in outcomes if isinstance(o, str)]
    print(json.dumps({"taken": taken}), file=sys.stderr, flush=True)

asyncio.run(main())
"""


def test_workers_sharing_a_stdout_pipe_never_tear_each_other_s_lines():
    """Every worker of `childlookup serve --workers N` inherits the one stdout pipe. Written a
    pipe buffer's worth at a time, a chunk ended mid-line and another worker's chunk could land
    before its end: a decision acted on (its bytes all taken) had its line broken in the log."""
    read_end, write_end = os.pipe()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SHARING, name],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        for name in ("one", "two", "three", "four")
    ]
    os.close(write_end)
    out = bytearray()
    while chunk := os.read(read_end, 3000):  # a reader a little slow: the pipe fills
        out += chunk
        time.sleep(0.0005)
    os.close(read_end)
    taken = []
    for child in children:
        assert child.stderr
        report = _reported(child.stderr)
        child.wait(30)
        assert report, child.stderr.read()
        taken += report["taken"]
    assert len(taken) == 4 * 240
    whole = []
    for line in out.splitlines():
        try:
            whole.append(json.loads(line)["decision_id"])
        except ValueError:
            continue
    assert sorted(whole) == sorted(taken), (
        f"{len(set(taken) - set(whole))} decisions acted on with their line torn"
    )


def test_a_stdout_log_outliving_an_event_loop_still_fails_closed_in_the_next():
    """One log, two event loops in turn (tests, a CLI running asyncio.run twice): the first
    closed with a decision waiting for the full pipe, leaving its watch behind. In the next
    loop nothing watched the pipe any more and no stall was timed: a decision waited for good,
    never failing closed, and never taken either once the reader was back."""
    read_end, stream = full_pipe()
    log = DecisionLog(StreamSink(stream, stall_s=0.3), instance="t")

    async def leave_one_waiting() -> None:
        waiting = asyncio.create_task(_decide(log, 1))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # asyncio.run then cancels it and closes the loop

    async def decide_again() -> None:
        started = time.monotonic()
        with pytest.raises(PolicyError):
            await asyncio.wait_for(_decide(log, 2), 5)
        assert time.monotonic() - started < 2

    try:
        asyncio.run(leave_one_waiting())
        asyncio.run(decide_again())
    finally:
        stream.close()
        os.close(read_end)


class _Long(BaseModel):
    model_config = ConfigDict(frozen=True)
    n: int
    padding: str = "x" * 3000


@pytest.mark.anyio
async def test_a_line_longer_than_pipe_buf_stalled_mid_way_is_finished_whole():
    """A line longer than PIPE_BUF cannot go to a pipe in one write: the pipe stalling in the
    middle of it fails its decision closed, and the rest of it goes first at the next write."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    stream = os.fdopen(write_end, "w")
    log = DecisionLog(StreamSink(stream, stall_s=0.2), instance="t")
    try:
        stalled = log.record("childlookup/plan", "rev-1", _Long(n=1), _Long(n=1))
        with pytest.raises(PolicyError):
            await log.written()
        out = bytearray()
        reader = threading.Thread(target=drain, args=(read_end, out))
        reader.start()  # the reader is back
        later = log.record("childlookup/plan", "rev-1", _Long(n=2), _Long(n=2))
        await log.written()
    finally:
        stream.close()
    reader.join(10)
    os.close(read_end)
    assert [json.loads(line)["decision_id"] for line in out.splitlines()] == [stalled, later]


class _BrokenSink:
    """A sink failing in a way no volume or stream does: a fault of its own."""

    def write(self, text: str) -> None:
        raise RuntimeError("a fault of the sink's own")


@pytest.mark.anyio
async def test_a_sink_failing_in_any_way_fails_its_decisions_closed():
    log = DecisionLog(_BrokenSink(), instance="t")
    with pytest.raises(PolicyError, match="RuntimeError"):
        await _decide(log, 1)
