"""A policy that takes seconds on some input - a change whose tests passed, live - fails a lookup
closed after DECISION_TIMEOUT_S rather than hold it, and every lookup queued behind it, for as
long as the evaluation takes. The real engine over a real bundle with one slow rule added."""

from __future__ import annotations

import shutil
import time

import anyio
import pytest

import gateway.policy.engine
from gateway.config import DEFAULT_POLICY_DIR
from gateway.policy import PolicyError, RegoPolicyEngine
from tests.factories import plan_input

SLOW_LETTERS = 777
SLOW_RULE = f"""
permitted if {{
	input.justification.letters == {SLOW_LETTERS}
	count([x | some x in numbers.range(1, 2000000)]) < 0
}}
"""
BOUND_S = 0.2
"""The bound the test sets: well under what the slow rule takes on any machine (seconds)."""


@pytest.fixture(scope="module")
def slow_engine(tmp_path_factory) -> RegoPolicyEngine:
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path_factory.mktemp("slow") / "policies")
    with (policies / "plan.rego").open("a") as plan:
        plan.write(SLOW_RULE)
    return RegoPolicyEngine.from_directory(policies)


@pytest.mark.anyio
async def test_a_decision_past_its_bound_fails_closed_and_so_does_one_queued_behind_it(
    slow_engine, monkeypatch
):
    monkeypatch.setattr(gateway.policy.engine, "DECISION_TIMEOUT_S", BOUND_S)
    slow = plan_input("gp", "DIRECT_CARE", "a" * SLOW_LETTERS)
    ordinary = plan_input("gp", "DIRECT_CARE")
    failed: list[tuple[str, float]] = []

    async def decide(request, label: str) -> None:
        started = time.monotonic()
        with pytest.raises(PolicyError, match=f"within {BOUND_S:g} s"):
            await slow_engine.plan(request)
        failed.append((label, time.monotonic() - started))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(decide, slow, "slow")
        await anyio.sleep(0.05)  # the slow one holds the interpreter
        group.start_soon(decide, ordinary, "queued")

    assert sorted(label for label, _ in failed) == ["queued", "slow"]
    assert time.monotonic() - started < 1.0 + BOUND_S, failed
    # Once the evaluation under way ends, the engine decides again.
    monkeypatch.setattr(gateway.policy.engine, "DECISION_TIMEOUT_S", 120.0)
    assert (await slow_engine.plan(ordinary)).permitted
