"""The plan stage: before anything is fetched, policy decides whether to look, where, and for what.

Asking the policy up front means the gateway never requests a field the caller could not see - the
connector does not even send it - and a lookup the caller may not make reaches no agency at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from connectors.protocol import FieldId
from gateway import tracing
from gateway.config import Asked, SourceConfig
from gateway.justification import Justification
from gateway.policy import PlanInput, PlanJustification, PlanSource
from gateway.types import LOCATOR_SOURCE, LookupContext, Plan


def _traced(plan: Plan) -> dict[str, bool | int | str]:
    return {
        "childlookup.plan.permitted": plan.permitted,
        "childlookup.plan.sources": len(plan.sources),
        "childlookup.policy.decision_id": plan.decision_id,
    }


@dataclass(frozen=True)
class Planning:
    """What the plan policy is told about the configured sources, worked out once at start-up.

    Sources asked on every lookup appear under their own names; agencies asked only when routed
    appear once per kind (a local authority, a GP practice, a school), with everything that kind
    provides: the policy decides for the kind, and a lookup costs the same with 3 agencies or
    3,000.
    """

    inputs: tuple[PlanSource, ...]
    shield_authorities: frozenset[str]
    restriction_authorities: frozenset[str]
    kinds: Mapping[str, str]
    """Agency name -> the kind the policy planned it as, for agencies asked only when routed."""

    @classmethod
    def of(cls, sources: Sequence[SourceConfig], *, locator: bool = False) -> Planning:
        """`locator` when a locator names agencies: its silence leaves shielding in doubt if any
        agency it may name is a shield authority."""
        provides: dict[str, dict[FieldId, None]] = {}  # insertion-ordered sets
        shielding: dict[str, bool] = {}
        restricting: dict[str, bool] = {}
        for source in sources:
            name = source.policy_name if source.asked is Asked.WHEN_ROUTED else source.name
            provides.setdefault(name, {}).update(dict.fromkeys(source.provides))
            shielding[name] = shielding.get(name, False) or source.shield_authority
            restricting[name] = restricting.get(name, False) or source.restriction_authority
        authorities = {s.name for s in sources if s.shield_authority}
        if locator and any(s.shield_authority and s.asked is Asked.WHEN_ROUTED for s in sources):
            authorities.add(LOCATOR_SOURCE)
        return cls(
            inputs=tuple(
                PlanSource(
                    name=name,
                    provides=tuple(fields),
                    shield_authority=shielding[name],
                    restriction_authority=restricting[name],
                )
                for name, fields in provides.items()
            ),
            shield_authorities=frozenset(authorities),
            restriction_authorities=frozenset(s.name for s in sources if s.restriction_authority),
            kinds=MappingProxyType(
                {s.name: s.policy_name for s in sources if s.asked is Asked.WHEN_ROUTED}
            ),
        )


@tracing.stage("plan", _traced)
async def make_plan(lookup: LookupContext, sources: Sequence[SourceConfig] | Planning) -> Plan:
    """Ask the policy for a plan; sources the policy names that are not configured are ignored."""
    planning = sources if isinstance(sources, Planning) else Planning.of(sources)
    justification = Justification.of(lookup.query.justification or "")
    request = PlanInput(
        caller=lookup.caller.protocol,
        purpose=lookup.query.purpose.value,
        justification=PlanJustification(letters=justification.letters, words=justification.words),
        sources=planning.inputs,
    )
    decision, decision_id = await lookup.policy.plan(request)
    shield_authorities = planning.shield_authorities
    restriction_authorities = planning.restriction_authorities
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
            restriction_authorities=restriction_authorities,
        )
    configured = {s.name for s in planning.inputs}
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
            s.name: frozenset(s.provides) - left_out for s in planning.inputs if s.name in planned
        },
        shield_authorities=shield_authorities,
        restriction_authorities=restriction_authorities,
        kinds=planning.kinds,
    )
