"""Decision logs in OPA's format, so an auditor can replay why a field was released or withheld.

Each plan and release decision is written as one JSON line with OPA's decision-log fields
(decision_id, labels, bundles, path, input, result, timestamp, requested_by), and its id goes into
the lookup's audit record. The pipeline asks through `LoggedPolicy`, so no decision can be taken
without being logged. Policy inputs carry no personal identifiers by design - records are
numbered, not named, and the justification is sent as counts of letters and words - so nothing
needs masking; `masked` is written empty to say so explicitly.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel

from gateway import metrics
from gateway.policy.decisions import PlanDecision, PlanInput, ReleaseDecision, ReleaseInput
from gateway.policy.engine import PLAN_ENTRYPOINT, RELEASE_ENTRYPOINT, PolicyEngine

_REMEMBERED = 4096
"""Decision texts kept for reuse before the memory is cleared and refilled."""


class DecisionLog:
    """Appends decisions to a file or a stream, one JSON object per line."""

    def __init__(self, sink: TextIO | None, *, instance: str) -> None:
        self._sink = sink
        self._labels = {"app": "childlookup-gateway", "id": instance}
        self._texts: dict[tuple[BaseModel, BaseModel], str] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: str, *, instance: str) -> DecisionLog:
        """`target` is "off", "stdout", or a file path (appended to)."""
        if target == "off":
            return cls(None, instance=instance)
        if target == "stdout":
            return cls(sys.stdout, instance=instance)
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1), instance=instance)

    def record(self, path: str, revision: str, request: BaseModel, result: BaseModel) -> str:
        """Log one decision and return its id (logged or not, so audit records always carry one)."""
        decision_id = uuid.uuid4().hex
        if self._sink is None:
            return decision_id
        head = {
            "decision_id": decision_id,
            "labels": self._labels,
            "bundles": {"childlookup": {"revision": revision}},
            "path": path,
            "masked": [],
            "requested_by": "childlookup-gateway",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        line = json.dumps(head, separators=(",", ":"))[:-1] + "," + self._decided(request, result)
        with self._lock:
            self._sink.write(line + "}\n")
        return decision_id

    def _decided(self, request: BaseModel, result: BaseModel) -> str:
        """`"input":...,"result":...` as JSON. Lookups repeat the same few inputs and answers (one
        role, one purpose, a few shapes of record), so the text is remembered per pair: policy
        inputs and answers are frozen, hashable values."""
        key = (request, result)
        text = self._texts.get(key)
        if text is None:
            both = {
                "input": request.model_dump(mode="json"),
                "result": result.model_dump(mode="json"),
            }
            text = json.dumps(both, separators=(",", ":"))[1:-1]
            if len(self._texts) >= _REMEMBERED:
                self._texts.clear()
            self._texts[key] = text
        return text

    def close(self) -> None:
        if self._sink is not None and self._sink is not sys.stdout:
            self._sink.close()


class LoggedPolicy:
    """One policy revision whose every decision is logged: each answer comes with its log id.

    A lookup holds one for its whole life, so a policy reload mid-lookup cannot split it between
    two revisions.
    """

    def __init__(self, engine: PolicyEngine, log: DecisionLog) -> None:
        self._engine = engine
        self._log = log
        self.revision = engine.revision

    async def plan(self, request: PlanInput) -> tuple[PlanDecision, str]:
        with metrics.POLICY_SECONDS.labels("plan").time():
            decision = await self._engine.plan(request)
        return decision, self._log.record(PLAN_ENTRYPOINT, self.revision, request, decision)

    async def release(self, request: ReleaseInput) -> tuple[ReleaseDecision, str]:
        with metrics.POLICY_SECONDS.labels("release").time():
            decision = await self._engine.release(request)
        return decision, self._log.record(RELEASE_ENTRYPOINT, self.revision, request, decision)
