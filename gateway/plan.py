"""The plan stage: before anything is fetched, policy decides whether to look, where, and for what.

Asking the policy up front means the gateway never requests a field the caller could not see - the
connector does not even send it - and a lookup the caller may not make reaches no agency at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.protocol import Caller as ProtocolCaller
from gateway.config import SourceConfig
from gateway.decision_log import PLAN_PATH, DecisionLog
from gateway.policy import PlanInput, PlanSource, PolicyEngine
from gateway.types import Caller, LookupQuery, Plan


async def make_plan(
    policy: PolicyEngine,
    log: DecisionLog,
    caller: Caller,
    query: LookupQuery,
    sources: Sequence[SourceConfig],
) -> Plan:
    """Ask the policy for a plan; sources the policy names that are not configured are ignored."""
    request = PlanInput(
        caller=ProtocolCaller(role=caller.role, organisation=caller.organisation),
        purpose=query.purpose.value,
        justification_chars=len(query.justification or ""),
        sources=tuple(
            PlanSource(name=s.name, provides=s.provides, shield_authority=s.shield_authority)
            for s in sources
        ),
    )
    decision = await policy.plan(request)
    decision_id = log.record(PLAN_PATH, policy.revision, request, decision)
    if not decision.permitted:
        return Plan(False, decision.denial or "NOT_PERMITTED", frozenset(), (), decision_id)
    configured = {s.name for s in sources}
    return Plan(
        permitted=True,
        denial=None,
        fields=frozenset(decision.fields),
        sources=tuple(s for s in decision.sources if s in configured),
        decision_id=decision_id,
        obligation_fields=frozenset(decision.obligation_fields),
    )
