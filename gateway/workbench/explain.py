"""Explaining a policy: what one role, for one purpose, sees of one child - field by field, and why.

A policy officer reasons about situations ("a health visitor, direct care, the child is shielded"),
not about inputs. `explain` turns a situation into the two questions the gateway really asks
(plan, then release), asks them through a real `PolicyEngine` with one synthetic record holding
every catalogued field, and reports each field as released or withheld, with the reason code and
the rule that decided it. The policy diff is built on the same function, so what a reviewer reads
on a change is exactly what `policy explain` would show before and after it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from connectors.protocol import INDICATOR_FIELDS, Caller, FieldId
from gateway.justification import Justification
from gateway.policy import (
    PlanInput,
    PlanJustification,
    PlanSource,
    PolicyBundle,
    PolicyEngine,
    PolicyError,
    RegoPolicyEngine,
    ReleaseChild,
    ReleaseInput,
    ReleaseRecord,
    WithholdingReason,
    load_bundle,
)

# The rules that give each answer, named so a policy officer knows where to look. A test checks
# every one is defined in the bundle, so renaming a rule without updating this table fails CI.
PLAN_DENIAL_RULE: Final = "data.childlookup.plan.denial"
PLAN_FIELDS_RULE: Final = "data.childlookup.plan.requested_fields"
RELEASE_RULE: Final = "data.childlookup.release.releasable_fields"
WITHHOLDING_RULES: Final[dict[WithholdingReason, str]] = {
    WithholdingReason.SHIELDED: "data.childlookup.release.shield_reason",
    WithholdingReason.RESTRICTED: "data.childlookup.release.shield_reason",
    WithholdingReason.RESTRICTION_STATUS_UNKNOWN: "data.childlookup.release.shield_reason",
    WithholdingReason.SHIELD_STATUS_UNKNOWN: "data.childlookup.release.shield_reason",
    WithholdingReason.SENSITIVE_SERVICE: "data.childlookup.release.withholding_reason",
    WithholdingReason.NOT_PERMITTED_FOR_PURPOSE: "data.childlookup.release.refusal_reason",
    WithholdingReason.NOT_PERMITTED_FOR_ROLE: "data.childlookup.release.refusal_reason",
}
UNDECIDED_RULE: Final = "(none: the gateway withholds what the policy leaves undecided)"
NOT_REQUESTED: Final = "NOT_REQUESTED"
"""A field the release would show but the plan never asked a source for, so nobody sees it."""

# What the synthetic lookup says about itself. The organisation is never read by the policy; the
# justification is a typical one, counted as the gateway counts a practitioner's.
_ORGANISATION: Final = "POLICY-EXPLAIN"
_SOURCE: Final = "every_source"
# Besides the source holding every field, sources that hold nothing the caller could be shown,
# one of each kind the plan must still ask (docs/policy-decisions.md: shielding authority, the NHS
# restricted flag, statuses an owner must be told of): a change that stops asking one of them
# changes no field here, but in the gateway it leaves shielding, restriction or an owner's notice
# undecided, so `policy diff` compares which sources are asked too.
_AUTHORITY_SOURCES: Final = (
    PlanSource(name="shield_authority", provides=(FieldId.NAME,), shield_authority=True),
    PlanSource(
        name="restriction_authority",
        provides=(FieldId.NAME,),
        shield_authority=False,
        restriction_authority=True,
    ),
    PlanSource(
        name="status_holder",
        provides=(FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER),
        shield_authority=False,
    ),
)
_JUSTIFICATION: Final = Justification.of(
    "Strategy discussion agreed an urgent visit: the child may be at immediate risk of harm."
)


@dataclass(frozen=True)
class Catalogue:
    """The vocabulary of one bundle, read from its data.json: what can be asked about."""

    fields: dict[FieldId, str]
    """Each catalogued field the gateway knows, with its category, in catalogue order."""
    roles: tuple[str, ...]
    purposes: tuple[str, ...]

    @classmethod
    def of(cls, bundle: PolicyBundle) -> Catalogue:
        """Fields the gateway cannot fetch (no `FieldId`) are left out: no record can hold them."""
        catalogue = _object(bundle.data.get("childlookup", {}), "childlookup")
        known = {field.value for field in FieldId}
        fields = _object(catalogue.get("fields", {}), "childlookup.fields")
        return cls(
            fields={
                FieldId(name): str(
                    _object(entry, f"childlookup.fields.{name}").get("category", "?")
                )
                for name, entry in fields.items()
                if name in known
            },
            roles=tuple(_object(catalogue.get("roles", {}), "childlookup.roles")),
            purposes=tuple(_object(catalogue.get("purposes", {}), "childlookup.purposes")),
        )


def _object(value: Any, where: str) -> dict[str, Any]:
    """A catalogue entry that must be a JSON object; PolicyError naming it when it is not, so the
    tools exit 2 with one line instead of a traceback (which `policy diff` would exit 1 with,
    its code for "something changed")."""
    if not isinstance(value, dict):
        raise PolicyError(
            f"data.json: {where} must be a JSON object, not {type(value).__name__}"
            f" ({json.dumps(value)[:40]})."
        )
    return value


@dataclass(frozen=True)
class Situation:
    """What the gateway would know about the child when it asks the release question."""

    shielded: bool = False
    restricted: bool = False
    shield_status_unknown: bool = False
    sensitive: bool = False
    """The record holds a sensitive-service involvement, so it lists sensitive_service_details."""
    restriction_status_unknown: bool = False
    """The source holding the NHS restricted flag did not answer."""

    def describe(self) -> str:
        flags = [
            name
            for name, on in (
                ("shielded", self.shielded),
                ("restricted", self.restricted),
                ("shield status unknown", self.shield_status_unknown),
                ("sensitive service involvement", self.sensitive),
                ("restriction status unknown", self.restriction_status_unknown),
            )
            if on
        ]
        return ", ".join(flags) if flags else "no flags"

    def child(self) -> ReleaseChild:
        return ReleaseChild(
            shielded=self.shielded,
            restricted=self.restricted,
            shield_status_known=not self.shield_status_unknown,
            restriction_status_known=not self.restriction_status_unknown,
        )


@dataclass(frozen=True)
class Scenario:
    role: str
    purpose: str
    situation: Situation = Situation()
    justified: bool = True
    """The practitioner gave a typical one-sentence justification (only purposes that require one
    care); False: none at all."""


@dataclass(frozen=True)
class FieldOutcome:
    field: FieldId
    category: str
    released: bool
    reason: str | None
    """A WithholdingReason, or the DenialCode when the whole lookup is refused; None if released."""
    rule: str


@dataclass(frozen=True)
class Explanation:
    scenario: Scenario
    revision: str
    denial: str | None
    """Why the plan refused the whole lookup; None when it was permitted."""
    fields: tuple[FieldOutcome, ...]
    notified: tuple[str, ...] = ()
    asked: tuple[str, ...] = ()
    """The synthetic sources the plan asks, sorted: `every_source` (holds every field) and one
    source of each kind that holds nothing to show (`shield_authority`, `restriction_authority`,
    `status_holder`). Empty when the lookup is refused."""
    """Why the holder of the child's record is told of the lookup (the release decision's
    `notify` reasons, sorted, once each): the record holds every indicator as true. Empty when no
    one is told, or the lookup is refused."""

    def as_json(self) -> dict[str, Any]:
        situation = self.scenario.situation
        return {
            "role": self.scenario.role,
            "purpose": self.scenario.purpose,
            "child": {
                "shielded": situation.shielded,
                "restricted": situation.restricted,
                "shield_status_known": not situation.shield_status_unknown,
                "restriction_status_known": not situation.restriction_status_unknown,
                "sensitive": situation.sensitive,
            },
            "revision": self.revision,
            "permitted": self.denial is None,
            "denial": self.denial,
            "denial_rule": PLAN_DENIAL_RULE if self.denial else None,
            "fields": [
                {
                    "field": outcome.field.value,
                    "category": outcome.category,
                    "decision": "released" if outcome.released else "withheld",
                    "reason": outcome.reason,
                    "rule": outcome.rule,
                }
                for outcome in self.fields
            ],
            "notify": list(self.notified),
            "sources_asked": list(self.asked),
        }


async def explain(engine: PolicyEngine, catalogue: Catalogue, scenario: Scenario) -> Explanation:
    """Ask the engine both questions for the scenario; PolicyError if it cannot answer."""
    caller = Caller(role=scenario.role, organisation=_ORGANISATION)
    record_fields = tuple(
        field
        for field in catalogue.fields
        if scenario.situation.sensitive or field is not FieldId.SENSITIVE_SERVICE_DETAILS
    )
    plan = await engine.plan(
        PlanInput(
            caller=caller,
            purpose=scenario.purpose,
            justification=PlanJustification(
                letters=_JUSTIFICATION.letters, words=_JUSTIFICATION.words
            )
            if scenario.justified
            else PlanJustification(),
            sources=(
                PlanSource(name=_SOURCE, provides=record_fields, shield_authority=True),
                *_AUTHORITY_SOURCES,
            ),
        )
    )
    if plan.denial is not None:
        # A refused lookup asks no agency: nothing is released, whatever release would say.
        refused = tuple(
            FieldOutcome(field, catalogue.fields[field], False, plan.denial.value, PLAN_DENIAL_RULE)
            for field in record_fields
        )
        return Explanation(scenario, engine.revision, plan.denial.value, refused)
    release = await engine.release(
        ReleaseInput(
            caller=caller,
            purpose=scenario.purpose,
            child=scenario.situation.child(),
            records=(
                ReleaseRecord(
                    id="0",
                    source=_SOURCE,
                    fields=record_fields,
                    # Held as true, so the owner-notification obligations they carry are seen.
                    true_indicators=tuple(f for f in record_fields if f in INDICATOR_FIELDS),
                ),
            ),
        )
    )
    released = {item.field for item in release.released}
    withheld = {item.field: item.reason for item in release.withheld}
    requested = set(plan.fields)
    return Explanation(
        scenario,
        engine.revision,
        None,
        tuple(
            _outcome(field, catalogue.fields[field], released, withheld, requested)
            for field in record_fields
        ),
        tuple(sorted({str(notice.reason) for notice in release.notify})),
        tuple(sorted(plan.sources)),
    )


def _outcome(
    field: FieldId,
    category: str,
    released: set[FieldId],
    withheld: dict[FieldId, WithholdingReason],
    requested: set[FieldId],
) -> FieldOutcome:
    if field in released and field in requested:
        return FieldOutcome(field, category, True, None, RELEASE_RULE)
    if field in released:
        return FieldOutcome(field, category, False, NOT_REQUESTED, PLAN_FIELDS_RULE)
    reason = withheld.get(field, WithholdingReason.POLICY_UNDECIDED)
    rule = WITHHOLDING_RULES.get(reason, UNDECIDED_RULE)
    return FieldOutcome(field, category, False, reason.value, rule)


def render_explanation(explanation: Explanation) -> str:
    """The plain-text table `childlookup policy explain` prints."""
    scenario = explanation.scenario
    lines = [
        f"{scenario.role}, {scenario.purpose} - child: {scenario.situation.describe()}",
        f"policy revision {explanation.revision}",
    ]
    if explanation.denial is not None:
        lines.append(
            f"LOOKUP REFUSED: {explanation.denial} ({PLAN_DENIAL_RULE}); no agency is asked."
        )
    rows = [("field", "category", "decision", "reason", "rule")]
    rows += [
        (
            outcome.field.value,
            outcome.category,
            "released" if outcome.released else "withheld",
            outcome.reason or "-",
            outcome.rule,
        )
        for outcome in explanation.fields
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines.append("")
    lines += [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in rows
    ]
    released = sum(outcome.released for outcome in explanation.fields)
    lines.append("")
    lines.append(f"{released} released, {len(explanation.fields) - released} withheld")
    return "\n".join(lines)


def explain_main(directory: Path, scenario: Scenario, as_json: bool) -> int:
    """`childlookup policy explain`: 0 with the table (a refused lookup is an answer too), 2 if
    the bundle cannot be loaded, the role or purpose is not in its catalogue (a typo would
    otherwise read as a real refusal), or the policy cannot answer."""
    try:
        bundle = load_bundle(directory)
        engine = RegoPolicyEngine(bundle)
        catalogue = Catalogue.of(bundle)
        _check_catalogued(scenario, catalogue)
        explanation = anyio.run(explain, engine, catalogue, scenario)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    print(
        json.dumps(explanation.as_json(), indent=2) if as_json else render_explanation(explanation)
    )
    return 0


def _check_catalogued(scenario: Scenario, catalogue: Catalogue) -> None:
    for what, value, known in (
        ("role", scenario.role, catalogue.roles),
        ("purpose", scenario.purpose, catalogue.purposes),
    ):
        if value not in known:
            raise PolicyError(
                f"Unknown {what} '{value}': data.json catalogues the {what}s {', '.join(known)}."
            )
