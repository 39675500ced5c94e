"""The comparison benchmark's pairing (bench.compare._paired): each round's ratio is taken between
the two phases that ran back to back, never across rounds. No stack, no timing. And a side it
started is stopped whole, forked processes and all."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.compare import _check, _paired, _spawn, _stop


def _phase(latencies_ms: list[float], wall_s: float, gateway: int, backend: int) -> dict[str, Any]:
    return {
        "latencies_ms": latencies_ms,
        "wall_s": wall_s,
        "cpu_ticks": {"gateway": gateway, "health": backend},
    }


def test_each_round_is_compared_with_the_peer_phase_of_the_same_round():
    # Round one ran on a fast machine, round two on one twice as slow: both sides slowed alike,
    # so each round's ratio is 2.0 however far the machine drifted.
    ours = [_phase([2.0, 4.0, 6.0], 1.0, 40, 20), _phase([4.0, 8.0, 12.0], 2.0, 80, 40)]
    peer = [_phase([1.0, 2.0, 3.0], 0.5, 20, 10), _phase([2.0, 4.0, 6.0], 1.0, 40, 20)]

    paired = _paired(ours, peer)

    assert paired["p50"]["rounds"] == [2.0, 2.0]
    assert paired["lookups_per_s"]["rounds"] == [0.5, 0.5]
    assert paired["gateway_cpu"]["rounds"] == [2.0, 2.0]
    assert paired["stack_cpu"]["rounds"] == [2.0, 2.0]


def test_the_median_and_range_are_over_the_rounds_ratios():
    peer = _phase([1.0], 1.0, 10, 10)
    ours = [_phase([3.0], 1.0, 10, 10), _phase([1.0], 1.0, 20, 10), _phase([2.0], 1.0, 30, 10)]

    paired = _paired(ours, [peer, peer, peer])

    assert paired["p50"] == {"median": 2.0, "min": 1.0, "max": 3.0, "rounds": [3.0, 1.0, 2.0]}
    # Only the gateway's ticks differ: the stack's ratio counts the backends' as well.
    assert paired["gateway_cpu"]["rounds"] == [1.0, 2.0, 3.0]
    assert paired["stack_cpu"]["rounds"] == [1.0, 1.5, 2.0]


def test_stopping_a_side_ends_its_whole_process_group(tmp_path: Path):
    """Hive Gateway with `--fork N` outlives SIGTERM for longer than a run waits: what _spawn
    started, and whatever that forked, is killed once the grace period is over."""
    forked = tmp_path / "forked.pid"
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(forked)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    process = _spawn([sys.executable, "-c", script], {}, tmp_path / "side.log")
    deadline = time.monotonic() + 10
    while not forked.exists() or not forked.read_text():
        assert time.monotonic() < deadline, "the side did not start"
        time.sleep(0.05)
    child = int(forked.read_text())

    os.killpg(process.pid, signal.SIGTERM)
    _stop(process, grace_s=0.5)

    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the forked process outlived its side"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, reaped by init once its parent died, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_warm_up_in_which_any_lookup_found_less_than_the_child_stops_the_run():
    """A connector refusing its first request once passed the warm-up unnoticed (the check
    looked only for ERROR outcomes)."""
    _check({"outcomes": {"FOUND": 10}, "latencies_ms": [1.0]}, "ours")
    for outcomes in ({"FOUND": 9, "NOT_FOUND_INCOMPLETE": 1}, {"FOUND": 9, "UNAVAILABLE": 1}):
        with pytest.raises(SystemExit, match="warm-up"):
            _check({"outcomes": outcomes, "latencies_ms": [1.0]}, "ours")
