"""The circuit breaker's states on a clock the test moves; fan-out through it is in test_fanout."""

import pytest

from gateway.breakers import Admission, Breaker, Breakers, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(failures=3, cool_down_s=10.0):
    clock = Clock()
    changes: list[CircuitState] = []
    breaker = Breaker(
        "health",
        failures,
        cool_down_s,
        clock=clock,
        on_change=lambda source, state: changes.append(state),
    )
    return breaker, clock, changes


def _fail(breaker, times):
    for _ in range(times):
        admission = breaker.admit()
        assert admission is Admission.ASK
        breaker.settle(admission, failed=True)


def test_consecutive_failures_open_the_circuit_and_it_then_skips():
    breaker, _, changes = _breaker(failures=3)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.admit() is Admission.SKIP
    assert changes == [CircuitState.CLOSED, CircuitState.OPEN]


def test_an_answer_between_failures_starts_the_count_again():
    breaker, _, _ = _breaker(failures=3)
    _fail(breaker, 2)
    breaker.settle(breaker.admit(), failed=False)
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


def test_after_the_cool_down_one_lookup_probes_and_the_others_still_skip():
    breaker, clock, _ = _breaker(failures=1, cool_down_s=10.0)
    _fail(breaker, 1)
    clock.now += 9.9
    assert breaker.admit() is Admission.SKIP
    clock.now += 0.2
    assert breaker.admit() is Admission.PROBE
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.admit() is Admission.SKIP


def test_an_answered_probe_closes_the_circuit():
    breaker, clock, changes = _breaker(failures=1)
    _fail(breaker, 1)
    clock.now += 10.0
    breaker.settle(breaker.admit(), failed=False)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.admit() is Admission.ASK
    assert changes[-2:] == [CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_probe_opens_the_circuit_for_another_cool_down():
    breaker, clock, _ = _breaker(failures=1, cool_down_s=10.0)
    _fail(breaker, 1)
    clock.now += 10.0
    breaker.settle(breaker.admit(), failed=True)
    assert breaker.state is CircuitState.OPEN
    clock.now += 5.0
    assert breaker.admit() is Admission.SKIP
    clock.now += 5.0
    assert breaker.admit() is Admission.PROBE


def test_a_probe_without_a_verdict_lets_the_next_lookup_probe():
    breaker, clock, _ = _breaker(failures=1)
    _fail(breaker, 1)
    clock.now += 10.0
    breaker.settle(breaker.admit(), failed=None)  # e.g. the lookup was cancelled
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.admit() is Admission.PROBE


def test_attempts_started_before_the_circuit_opened_do_not_decide_it():
    breaker, clock, _ = _breaker(failures=2)
    early = [breaker.admit() for _ in range(3)]
    breaker.settle(early[0], failed=True)
    breaker.settle(early[1], failed=True)
    assert breaker.state is CircuitState.OPEN
    breaker.settle(early[2], failed=False)  # a straggler answering says nothing about now
    assert breaker.state is CircuitState.OPEN
    clock.now += 10.0
    probe = breaker.admit()
    late = breaker.admit()
    breaker.settle(late, failed=True)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.settle(probe, failed=False)
    assert breaker.state is CircuitState.CLOSED


def test_zero_failures_never_opens():
    breaker, _, _ = _breaker(failures=0)
    _fail(breaker, 50)
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("name", ["health", "education"])
def test_each_source_has_its_own_circuit(name):
    breakers = Breakers(["health", "education"], failures=1, cool_down_s=10.0)
    breakers[name].settle(breakers[name].admit(), failed=True)
    other = "education" if name == "health" else "health"
    assert breakers.states() == {name: CircuitState.OPEN, other: CircuitState.CLOSED}
