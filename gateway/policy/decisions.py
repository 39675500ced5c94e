"""The two questions the gateway asks the policy, and the answers it accepts.

These mirror docs/policy-decisions.md. Inputs are built by the gateway and validated loosely enough
to accept plain strings for field ids. Answers come from Rego, which has no types, so they are
validated strictly: a wrong type, an unknown code, an extra key or an answer that contradicts itself
is a `PolicyError`, and the gateway then releases nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from connectors.notifications import NotificationReason
from connectors.protocol import INDICATOR_FIELDS, Caller, FieldId
from gateway.policy.errors import PolicyError


class DenialCode(StrEnum):
    """Why a whole lookup was refused."""

    UNKNOWN_ROLE = "UNKNOWN_ROLE"
    PURPOSE_NOT_PERMITTED = "PURPOSE_NOT_PERMITTED"
    JUSTIFICATION_REQUIRED = "JUSTIFICATION_REQUIRED"


class WithholdingReason(StrEnum):
    """Why a field did not leave the gateway, in order of precedence.

    `POLICY_UNDECIDED` is never the policy's answer: the gateway gives it to a field the policy
    neither released nor withheld.
    """

    SHIELDED = "SHIELDED"
    RESTRICTED = "RESTRICTED"
    RESTRICTION_STATUS_UNKNOWN = "RESTRICTION_STATUS_UNKNOWN"
    SHIELD_STATUS_UNKNOWN = "SHIELD_STATUS_UNKNOWN"
    SENSITIVE_SERVICE = "SENSITIVE_SERVICE"
    NOT_PERMITTED_FOR_PURPOSE = "NOT_PERMITTED_FOR_PURPOSE"
    NOT_PERMITTED_FOR_ROLE = "NOT_PERMITTED_FOR_ROLE"
    POLICY_UNDECIDED = "POLICY_UNDECIDED"
    UNKNOWN = "UNKNOWN"
    """Given by neither the gateway nor the policy: an audit trail reads back as UNKNOWN a reason
    a newer gateway sharing the log recorded (resolvers.mapping), so that one record does not
    fail the whole trail. A policy answering it is malformed; the policy's schema omits it."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # Leaving UNKNOWN out of the members keeps it out of the policy's schema and of the codes
        # a malformed answer is told it may give; the validator is what rejects it, as
        # pydantic-core still accepts the value of a member left out.
        # Not `_missing_`, as AuditPurpose has: pydantic would honour it, and a code the policy
        # made up would be read as UNKNOWN rather than be a PolicyError.
        policy_codes = [code for code in cls if code is not cls.UNKNOWN]
        schema = core_schema.enum_schema(
            cls, policy_codes, sub_type="str", ref=f"{cls.__module__}.{cls.__qualname__}"
        )
        return core_schema.no_info_after_validator_function(_not_read_back_only, schema)


def _not_read_back_only(reason: WithholdingReason) -> WithholdingReason:
    if reason is WithholdingReason.UNKNOWN:
        raise ValueError("UNKNOWN is no reason to withhold a field, only one read back")
    return reason


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PlanSource(_Input):
    """A source the gateway could ask, and what it can provide."""

    name: str
    provides: tuple[FieldId, ...]
    shield_authority: bool
    restriction_authority: bool = False
    """It holds the NHS restricted flag: asked on every permitted lookup, as shield authorities
    are."""


class PlanJustification(_Input):
    """How much the practitioner wrote, counted once gateway.justification has removed what prints
    as nothing, each different word once: a word said again adds nothing, so "urgent urgent urgent
    urgent" is one word of 6 letters. The text itself is free-form and may name people, so it goes
    to the audit log only, never into a policy input or decision log."""

    letters: int = Field(default=0, ge=0)
    """Characters in a Unicode letter category, in each different word once."""
    words: int = Field(default=0, ge=0)
    """Different space-separated tokens holding at least one letter: the same word again, in other
    capitals or with other punctuation ("Urgent!", "urgent"), is not counted again."""


class PlanInput(_Input):
    caller: Caller
    purpose: str
    justification: PlanJustification = PlanJustification()
    """All zero when the practitioner gave none."""
    sources: tuple[PlanSource, ...]


class PlanDecision(_Answer):
    permitted: bool
    denial: DenialCode | None
    fields: tuple[FieldId, ...]
    obligation_fields: tuple[FieldId, ...]
    """Fetched only so an obligation (owner notification) can be decided; never released by
    being here - the release decision treats them as fields the plan did not request."""
    sources: tuple[str, ...]

    @model_validator(mode="after")
    def _consistent(self) -> PlanDecision:
        # A refusal that still names fields or sources, or a permission with a denial code, means
        # the policy is broken; acting on either half would be a guess.
        if self.permitted and self.denial is not None:
            raise ValueError("a permitted plan cannot carry a denial")
        if not self.permitted and (
            self.denial is None or self.fields or self.obligation_fields or self.sources
        ):
            raise ValueError("a refused plan needs a denial and no fields or sources")
        return self


class ReleaseChild(_Input):
    """Flags aggregated by the gateway over every matched record."""

    shielded: bool
    restricted: bool
    shield_status_known: bool
    restriction_status_known: bool


class ReleaseRecord(_Input):
    """A matched record, described only by which catalogued fields it holds."""

    id: str
    source: str
    fields: tuple[FieldId, ...]
    true_indicators: tuple[FieldId, ...] = ()
    """The status indicators the record holds as true, whether or not the caller may see them:
    the holder's right to be told of the lookup does not depend on what the caller sees."""

    @model_validator(mode="after")
    def _indicators_only(self) -> ReleaseRecord:
        if not set(self.true_indicators) <= set(INDICATOR_FIELDS):
            raise ValueError("true_indicators may name indicator fields only")
        return self


class ReleaseInput(_Input):
    caller: Caller
    purpose: str
    child: ReleaseChild
    records: tuple[ReleaseRecord, ...]


class ReleasedField(_Answer):
    record: str
    field: FieldId


class WithheldField(_Answer):
    record: str
    field: FieldId
    reason: WithholdingReason


class NotifiedRecord(_Answer):
    """An obligation: tell the agency holding `record` that it was looked at, and why."""

    record: str
    reason: NotificationReason


class ReleaseDecision(_Answer):
    released: tuple[ReleasedField, ...]
    withheld: tuple[WithheldField, ...]
    notify: tuple[NotifiedRecord, ...]
    """Required, so a policy that says nothing about notifying owners releases nothing rather than
    silently telling no one."""

    @model_validator(mode="after")
    def _each_field_once(self) -> ReleaseDecision:
        # A field both released and withheld (or withheld twice) has no single meaning.
        decided = [(item.record, item.field) for item in self.released]
        decided += [(item.record, item.field) for item in self.withheld]
        if len(decided) != len(set(decided)):
            raise ValueError("a record's field is decided more than once")
        return self


DecisionT = TypeVar("DecisionT", PlanDecision, ReleaseDecision)


def parse_decision(text: str, decision_type: type[DecisionT]) -> DecisionT:
    """Validate the JSON text of a decision strictly as the given type.

    The error message names what was wrong but never the values, which can include record ids.
    """
    try:
        return decision_type.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False)
        )
        raise PolicyError(
            f"The policy's {decision_type.__name__} is malformed: {problems}"
        ) from None
