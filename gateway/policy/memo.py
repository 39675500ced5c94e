"""Remembering policy answers: a decision is a pure function of the bundle and the input.

The Rego rules use no clock, network or randomness, so the same input against the same compiled
bundle always gets the same answer. Lookups repeat inputs constantly (one role, one purpose, a few
shapes of record), so remembering answers takes rego-cpp's milliseconds off nearly every lookup.
The memo belongs to one engine and so to one policy revision; failures are never remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

from gateway.policy.decisions import PlanDecision, PlanInput, ReleaseDecision, ReleaseInput
from gateway.policy.engine import PolicyEngine

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D", PlanDecision, ReleaseDecision)
R = TypeVar("R", bound=BaseModel)


class _Lru(Generic[K, V]):
    def __init__(self, maxsize: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._maxsize = maxsize
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._maxsize:
            self._items.popitem(last=False)


async def _remembered(memory: _Lru[str, D], request: R, evaluate: Callable[[R], Awaitable[D]]) -> D:
    key = request.model_dump_json()
    decision = memory.get(key)
    if decision is None:
        decision = await evaluate(request)
        memory.put(key, decision)
    return decision


class MemoisedPolicyEngine:
    """A PolicyEngine that answers repeated inputs from memory, up to `maxsize` per decision."""

    def __init__(
        self,
        engine: PolicyEngine,
        maxsize: int = 4096,
        revision: str | None = None,
        content: str | None = None,
    ) -> None:
        self._engine = engine
        self.revision = revision or engine.revision
        self.content = content
        """The fingerprint of the policy files compiled (gateway.policy.snapshot), when known: the
        live reloader starts from it, so a version deployed after it was compiled is a change."""
        self._plans: _Lru[str, PlanDecision] = _Lru(maxsize)
        self._releases: _Lru[str, ReleaseDecision] = _Lru(maxsize)

    async def plan(self, request: PlanInput) -> PlanDecision:
        return await _remembered(self._plans, request, self._engine.plan)

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        return await _remembered(self._releases, request, self._engine.release)

    def stats(self) -> dict[str, int]:
        return {
            "plan_hits": self._plans.hits,
            "plan_misses": self._plans.misses,
            "release_hits": self._releases.hits,
            "release_misses": self._releases.misses,
        }
