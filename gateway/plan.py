"""The plan stage: before anything is fetched, policy decides whether to look, where, and for what.

Asking the policy up front means the gateway never requests a field the caller could not see - the
connector does not even send it - and a lookup the caller may not make reaches no agency at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.protocol import FieldId
from gateway import tracing
from gateway.config import SourceConfig
from gateway.justification import Justification
from gateway.policy import PlanInput, PlanJustification, PlanSource
from gateway.types import LookupContext, Plan


def _traced(plan: Plan) -> dict[str, bool | int | str]:
    return {
        "childlookup.plan.permitted": plan.permitted,
        "childlookup.plan.sources": len(plan.sources),
        "childlookup.policy.decision_id": plan.decision_id,
    }


@tracing.stage("plan", _traced)
async def make_plan(lookup: LookupContext, sources: Sequence[SourceConfig]) -> Plan:
    """Ask the policy for a plan; sources the policy names that are not configured are ignored."""
    justification = Justification.of(lookup.query.justification or "")
    request = PlanInput(
        caller=lookup.caller.protocol,
        purpose=lookup.query.purpose.value,
        justification=PlanJustification(letters=justification.letters, words=justification.words),
        sources=tuple(
            PlanSource(name=s.name, provides=s.provides, shield_authority=s.shield_authority)
            for s in sources
        ),
    )
    decision, decision_id = await lookup.policy.plan(request)
    shield_authorities = frozenset(s.name for s in sources if s.shield_authority)
    if not decision.permitted:
        # PlanDecision cannot be a refusal without a denial code (gateway.policy.decisions).
        assert decision.denial is not None
        return Plan(
            permitted=False,
            denial=decision.denial,
            fields=frozenset(),
            sources=(),
            decision_id=decision_id,
            shield_authorities=shield_authorities,
        )
    configured = {s.name for s in sources}
    planned = tuple(name for name in decision.sources if name in configured)
    fields = frozenset(decision.fields)
    # Sensitive service details are not listed as left out: saying they exist is only honest for
    # a child who has some, which the decide stage knows and this one does not.
    left_out = fields | {FieldId.SENSITIVE_SERVICE_DETAILS}
    return Plan(
        permitted=True,
        denial=None,
        fields=fields,
        sources=planned,
        decision_id=decision_id,
        obligation_fields=frozenset(decision.obligation_fields),
        unrequested={
            s.name: frozenset(s.provides) - left_out for s in sources if s.name in planned
        },
        shield_authorities=shield_authorities,
    )
