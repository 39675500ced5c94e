"""Remembering policy answers: a decision is a pure function of the bundle and the input.

The Rego rules use no clock, network or randomness, so the same input against the same compiled
bundle always gets the same answer. Lookups repeat inputs constantly (one role, one purpose, a few
shapes of record), so remembering answers takes rego-cpp's milliseconds off nearly every lookup.
The memo belongs to one engine and so to one policy revision; failures are never remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from gateway.policy.decisions import PlanDecision, PlanInput, ReleaseDecision, ReleaseInput
from gateway.policy.engine import PolicyEngine

K = TypeVar("K")
V = TypeVar("V")


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


class MemoisedPolicyEngine:
    """A PolicyEngine that answers repeated inputs from memory, up to `maxsize` per decision."""

    def __init__(self, engine: PolicyEngine, maxsize: int = 4096) -> None:
        self._engine = engine
        self.revision = engine.revision
        self._plans: _Lru[str, PlanDecision] = _Lru(maxsize)
        self._releases: _Lru[str, ReleaseDecision] = _Lru(maxsize)

    async def plan(self, request: PlanInput) -> PlanDecision:
        key = request.model_dump_json()
        decision = self._plans.get(key)
        if decision is None:
            decision = await self._engine.plan(request)
            self._plans.put(key, decision)
        return decision

    async def release(self, request: ReleaseInput) -> ReleaseDecision:
        key = request.model_dump_json()
        decision = self._releases.get(key)
        if decision is None:
            decision = await self._engine.release(request)
            self._releases.put(key, decision)
        return decision

    def stats(self) -> dict[str, int]:
        return {
            "plan_hits": self._plans.hits,
            "plan_misses": self._plans.misses,
            "release_hits": self._releases.hits,
            "release_misses": self._releases.misses,
        }
