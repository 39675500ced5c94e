"""Asking the policy, and failing closed when it cannot answer.

The gateway depends on `PolicyEngine` only, so a remote OPA can replace the in-process engine
without touching the pipeline. `RegoPolicyEngine` compiles the bundle once with regopy (rego-cpp)
and evaluates each decision in-process.

Evaluation takes milliseconds, not microseconds (rego-cpp spends around 10 us on each step of an
iteration, so a release over five records of twelve fields takes 2-3 ms), so it runs on a worker
thread: regopy calls release the GIL, and the event loop keeps serving connector responses
meanwhile. One interpreter is reused under a lock: a fresh one costs about 1 ms to create, and two
threads sharing one without the lock were seen to get each other's answers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import anyio
from anyio import to_thread
from pydantic import BaseModel
from regopy import RegoError

from gateway.policy.bundle import PolicyBundle, load_bundle
from gateway.policy.decisions import (
    DecisionT,
    PlanDecision,
    PlanInput,
    ReleaseDecision,
    ReleaseInput,
    parse_decision,
)
from gateway.policy.errors import PolicyError
from gateway.policy.interpreter import answer_text, as_rego_json, compile_bundle, new_interpreter

PLAN_ENTRYPOINT: Final = "childlookup/plan/decision"
RELEASE_ENTRYPOINT: Final = "childlookup/release/decision"
ENTRYPOINTS: Final = (PLAN_ENTRYPOINT, RELEASE_ENTRYPOINT)


class PolicyEngine(Protocol):
    """Answers the two policy questions of docs/policy-decisions.md.

    Implementations raise PolicyError for any answer they cannot vouch for; they never return a
    default.
    """

    revision: str

    async def plan(self, request: PlanInput) -> PlanDecision: ...

    async def release(self, request: ReleaseInput) -> ReleaseDecision: ...


@runtime_checkable
class RemotePolicyEngine(PolicyEngine, Protocol):
    """An engine behind a connection, which the gateway opens at start-up and closes at the end."""

    async def connect(self) -> str: ...

    async def aclose(self) -> None: ...


class ServedPolicyEngine(PolicyEngine, Protocol):
    """An engine whose revision can change between two decisions (a server that loads a new
    bundle): each decision comes with the revision that made it."""

    async def plan_at(self, request: PlanInput) -> tuple[PlanDecision, str]: ...

    async def release_at(self, request: ReleaseInput) -> tuple[ReleaseDecision, str]: ...


async def policy_ready(engine: PolicyEngine) -> bool:
    """For readiness probes: a policy is loaded and, when it is served from elsewhere (OPA), it
    answers now. An instance whose OPA has died refuses every lookup (POLICY_UNAVAILABLE), so a
    load balancer should stop sending it any until OPA is back."""
    if isinstance(engine, RemotePolicyEngine):
        try:
            await engine.connect()
        except PolicyError:
            return False
    return bool(engine.revision)


DECISION_TIMEOUT_S: Final = 1.0
"""The longest one in-process decision may take, waiting for the interpreter included: they take
a few milliseconds (a policy change whose tests passed took 11 s on one input, holding every
lookup behind it). Past it the lookup fails closed, POLICY_UNAVAILABLE."""
_QUEUE_POLL_S: Final = 0.05
"""How often a decision waiting for the interpreter looks whether its caller gave up."""


class RegoPolicyEngine:
    """The bundle's policies, compiled once at start-up and evaluated in-process."""

    def __init__(self, bundle: PolicyBundle) -> None:
        _require_entrypoints(bundle)
        self.revision = bundle.revision
        self._compiled = compile_bundle(bundle, bundle.policy_modules, ENTRYPOINTS)
        self._interpreter = new_interpreter()
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, directory: Path) -> RegoPolicyEngine:
        return cls(load_bundle(directory))

    async def plan(self, request: PlanInput) -> PlanDecision:
        return await self._in_thread(PLAN_ENTRYPOINT, request, PlanDecision)

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        return await self._in_thread(RELEASE_ENTRYPOINT, request, ReleaseDecision)

    async def _in_thread(
        self, entrypoint: str, request: BaseModel, decision_type: type[DecisionT]
    ) -> DecisionT:
        """`_decide` in a worker thread, given up on after DECISION_TIMEOUT_S or when its caller
        is cancelled (a lookup's deadline): rego-cpp cannot be stopped, so an evaluation under
        way runs on, but a decision given up on before it started is never evaluated, and its
        thread leaves the queue at once."""
        abandoned = threading.Event()
        try:
            with anyio.fail_after(DECISION_TIMEOUT_S):
                return await to_thread.run_sync(
                    self._decide,
                    entrypoint,
                    request,
                    decision_type,
                    abandoned,
                    abandon_on_cancel=True,
                )
        except TimeoutError:
            raise PolicyError(
                f"The policy did not decide {entrypoint} within {DECISION_TIMEOUT_S:g} s."
            ) from None
        finally:
            abandoned.set()  # a no-op once decided; else the thread drops it, or runs on alone

    def _decide(
        self,
        entrypoint: str,
        request: BaseModel,
        decision_type: type[DecisionT],
        abandoned: threading.Event,
    ) -> DecisionT:
        document = as_rego_json(request.model_dump(mode="json"))
        while not self._lock.acquire(timeout=_QUEUE_POLL_S):
            if abandoned.is_set():
                raise PolicyError(f"{entrypoint} was given up on before it was evaluated.")
        try:
            if abandoned.is_set():
                raise PolicyError(f"{entrypoint} was given up on before it was evaluated.")
            self._interpreter.set_input_term(document)
            output = self._interpreter.query_bundle_entrypoint(self._compiled, entrypoint)
            text = answer_text(output)
        except (RegoError, ValueError) as error:
            # regopy raises ValueError itself when rego-cpp's output is not valid JSON.
            raise PolicyError(f"Policy evaluation of {entrypoint} failed: {error}") from error
        finally:
            self._lock.release()
        if text is None:
            raise PolicyError(f"The policy gave no answer for {entrypoint}.")
        return parse_decision(text, decision_type)


def _require_entrypoints(bundle: PolicyBundle) -> None:
    """Refuse at start-up a bundle that lacks a decision, which rego-cpp would otherwise report
    only as "undefined", on every lookup."""
    policy_modules = bundle.policy_modules
    defined = {rule.path for rule in bundle.rules() if rule.module in policy_modules}
    missing = [entrypoint for entrypoint in ENTRYPOINTS if entrypoint not in defined]
    if missing:
        raise PolicyError(f"The policy in {bundle.directory} does not define {', '.join(missing)}.")
