"""The comparison benchmark's pairing (bench.compare._paired): each round's ratio is taken between
the two phases that ran back to back, never across rounds. No stack, no timing."""

from __future__ import annotations

from typing import Any

from bench.compare import _paired


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
