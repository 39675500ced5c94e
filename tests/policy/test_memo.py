import shutil

import pytest

from connectors.protocol import Caller
from gateway.config import DEFAULT_POLICY_DIR
from gateway.policy import (
    MemoisedPolicyEngine,
    PlanInput,
    PlanSource,
    PolicyError,
    RegoPolicyEngine,
)


def _plan(role: str) -> PlanInput:
    return PlanInput(
        caller=Caller(role=role, organisation="X1"),
        purpose="SAFEGUARDING_ENQUIRY",
        sources=(PlanSource(name="health", provides=("name", "address"), shield_authority=False),),
    )


@pytest.fixture(scope="module")
def engine():
    return RegoPolicyEngine.from_directory(DEFAULT_POLICY_DIR)


@pytest.mark.anyio
async def test_a_repeated_input_is_answered_from_memory_with_the_same_decision(engine):
    memo = MemoisedPolicyEngine(engine)
    first = await memo.plan(_plan("health_visitor"))
    second = await memo.plan(_plan("health_visitor"))
    assert first == second == await engine.plan(_plan("health_visitor"))
    assert memo.stats()["plan_hits"] == 1
    assert memo.stats()["plan_misses"] == 1
    assert memo.revision == engine.revision


@pytest.mark.anyio
async def test_a_different_input_is_evaluated_not_confused_with_another(engine):
    memo = MemoisedPolicyEngine(engine)
    allowed = await memo.plan(_plan("health_visitor"))
    denied = await memo.plan(_plan("janitor"))
    assert allowed.permitted
    assert not denied.permitted
    assert memo.stats()["plan_misses"] == 2


@pytest.mark.anyio
async def test_the_oldest_answer_is_forgotten_past_maxsize(engine):
    memo = MemoisedPolicyEngine(engine, maxsize=1)
    await memo.plan(_plan("health_visitor"))
    await memo.plan(_plan("gp"))
    await memo.plan(_plan("health_visitor"))
    assert memo.stats()["plan_misses"] == 3


@pytest.mark.anyio
async def test_failures_are_never_remembered(tmp_path):
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    plan = policies / "plan.rego"
    plan.write_text(
        plan.read_text().replace("decision := {", 'decision := {\n\t"x": input.nope,', 1)
    )
    memo = MemoisedPolicyEngine(RegoPolicyEngine.from_directory(policies))
    for _ in range(2):
        with pytest.raises(PolicyError):
            await memo.plan(_plan("health_visitor"))
    assert memo.stats()["plan_misses"] == 2
    assert memo.stats()["plan_hits"] == 0
