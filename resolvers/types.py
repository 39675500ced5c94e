"""GraphQL schema types: plain data with descriptions, the published contract for portals.

No policy, I/O or business rules live here; `resolvers.mapping` builds these from pipeline results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from enum import Enum
from typing import Final

import strawberry
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition, wrap_parser
from strawberry.types.scalar import ScalarDefinition

from connectors.notifications import NotificationReason
from connectors.protocol import KNOWN_AS_MAX, Sex
from gateway.audit import (
    ACCESS_HISTORY_VIEWED,
    ALERTS_VIEWED,
    AUDIT_REVIEW,
    OPERATIONS,
    OWNER_REVIEW,
    PASSED_ON,
    UNDELIVERED_VIEWED,
    USER_TRAIL_VIEWED,
)
from gateway.identifiers import ADDRESS_LINES_MAX, CARER_NAMES_MAX
from gateway.policy import DenialCode, WithholdingReason
from gateway.types import (
    AmbiguityReason,
    AskedBecause,
    IdentifiedBy,
    LookupOutcome,
    MatchMethod,
    Purpose,
    SourceStatus,
)

DATE_SPEC: Final = "https://scalars.graphql.org/andimarek/local-date.html"
"""RFC 3339 full-date (YYYY-MM-DD), as codegen tools know it."""
DATE_TIME_SPEC: Final = "https://scalars.graphql.org/andimarek/date-time.html"
"""RFC 3339 date-time with an offset, as codegen tools know it."""


def _with_offset(value: datetime) -> datetime:
    """RFC 3339 times carry an offset. The connector protocol asks for one; a time without it,
    sent or received, is read as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _serialize_date_time(value: datetime) -> str:
    return _with_offset(value).isoformat()


_FULL_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


def _parse_date(text: str) -> date:
    """RFC 3339's full-date only: Python 3.11 also reads `20241004` and `2024-W40-5`."""
    if not _FULL_DATE.fullmatch(text):
        raise ValueError("not YYYY-MM-DD")
    return date.fromisoformat(text)


def _parse_date_time(text: str) -> datetime:
    """RFC 3339's date-time, its offset optional (read as UTC): Python 3.11 also reads a date
    alone, a space for the T, a comma for the point, and trailing characters it ignores."""
    if not _DATE_TIME.fullmatch(text):
        raise ValueError("not an RFC 3339 date-time")
    return _with_offset(datetime.fromisoformat(text.upper()))


SCALARS: Final[Mapping[object, ScalarDefinition]] = {
    date: replace(
        DateDefinition,
        description="A calendar date, YYYY-MM-DD (RFC 3339 full-date).",
        specified_by_url=DATE_SPEC,
        parse_value=wrap_parser(_parse_date, "Date"),
    ),
    datetime: replace(
        DateTimeDefinition,
        description=(
            "An instant, e.g. 2026-03-14T09:30:00Z (RFC 3339 date-time). Always answered with"
            " an offset; an input without one is read as UTC."
        ),
        specified_by_url=DATE_TIME_SPEC,
        serialize=_serialize_date_time,
        parse_value=wrap_parser(_parse_date_time, "DateTime"),
    ),
}
"""The built-in Date and DateTime scalars, with `@specifiedBy` so codegen can map them to a
date type (strawberry.Schema's `scalar_overrides`)."""


def _enum(cls: type[Enum], description: str, values: Mapping[str, str]) -> None:
    """Publish an enum of the pipeline's with a description for it and for each of its values;
    a value left undescribed stops the schema being built."""
    strawberry.enum(cls, name=cls.__name__, description=description)
    undescribed = {member.name for member in cls} - values.keys()
    if undescribed:
        raise ValueError(f"{cls.__name__}: no description for {sorted(undescribed)}")
    for value in cls.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = values[value.name]


_PURPOSES: Final = {
    "SAFEGUARDING_ENQUIRY": "A safeguarding concern about the child is being looked into.",
    "CHILD_PROTECTION_ENQUIRY": (
        "A child protection (section 47) enquiry; a justification is required."
    ),
    "DIRECT_CARE": "Care or a service the practitioner is giving the child.",
    "SHIELDING_ADMINISTRATION": (
        "Administering a shielded or restricted child's record (local authority shielding"
        " administrators)."
    ),
    "EMERGENCY_OVERRIDE": (
        "Break-glass: a child at immediate risk. Needs a justification of at least 4 words;"
        " sets aside shielding (never a restriction), notifies every record's holder and is"
        " flagged for investigation."
    ),
}
_enum(
    Purpose,
    "Why the practitioner is looking. Every lookup states one, and it is audited.",
    _PURPOSES,
)


_UNKNOWN_CODE: Final = (
    "A code this gateway's version does not know, recorded by a newer gateway sharing the log"
    " (an AuditEntry's deprecated `{field}` gives it as recorded)."
)


class AuditPurpose(Enum):
    """A Purpose, or one that is no purpose to look up a child for: an audit trail records its
    readers too - auditors (gateway.audit.AUDIT_REVIEW) and owners reading their access history
    (OWNER_REVIEW) - and operators closing notifications passed on by other means (OPERATIONS)."""

    SAFEGUARDING_ENQUIRY = Purpose.SAFEGUARDING_ENQUIRY.value
    CHILD_PROTECTION_ENQUIRY = Purpose.CHILD_PROTECTION_ENQUIRY.value
    DIRECT_CARE = Purpose.DIRECT_CARE.value
    SHIELDING_ADMINISTRATION = Purpose.SHIELDING_ADMINISTRATION.value
    EMERGENCY_OVERRIDE = Purpose.EMERGENCY_OVERRIDE.value
    AUDIT_REVIEW = AUDIT_REVIEW
    OWNER_REVIEW = OWNER_REVIEW
    OPERATIONS = OPERATIONS
    UNKNOWN = "UNKNOWN"

    @classmethod
    def _missing_(cls, value: object) -> AuditPurpose:
        # Gateways of two versions can share one log (PostgreSQL, a rolling upgrade): one
        # purpose a newer one records must not fail every trail an older one reads.
        return cls.UNKNOWN


_enum(
    AuditPurpose,
    "The purpose an access was recorded with: a lookup's Purpose, AUDIT_REVIEW, OWNER_REVIEW or"
    " OPERATIONS.",
    {
        **_PURPOSES,
        "AUDIT_REVIEW": (
            "An auditor read the child's audit trail, or (outcome REFUSED) someone was refused"
            " a reading of the audit log."
        ),
        "OWNER_REVIEW": (
            "The agency holding the child's protection plan or looked-after status read who"
            " looked at the child (accessHistory)."
        ),
        "OPERATIONS": (
            "An operator closed an owner notification the gateway could not deliver (childlookup"
            " notifications passed-on)."
        ),
        "UNKNOWN": _UNKNOWN_CODE.format(field="purpose"),
    },
)
_enum(
    NotificationReason,
    "Why the agency holding a record was told of a lookup (policies/data.json owner_notification).",
    {
        "CHILD_PROTECTION_PLAN": "Its record shows a child protection plan.",
        "LOOKED_AFTER": "Its record shows the child is looked after.",
        "EMERGENCY_OVERRIDE": "A break-glass override may have shown its record past a shield.",
    },
)
_enum(
    LookupOutcome,
    "What the lookup found. Read it with `complete` and `sources`: 'not found' is said only"
    " when every source asked answered.",
    {
        "FOUND": (
            "At least one source holds a record linked to this child (check `complete`: a"
            " source that did not answer may hold more)."
        ),
        "NOT_FOUND": (
            "Every source asked answered and none holds a record linked to this child. A near"
            " miss is never merged: check `sources.recordsPossible`."
        ),
        "NOT_FOUND_INCOMPLETE": (
            "None of the sources that answered holds one, but some did not answer and may: this"
            " is not 'no agency knows this child'; see `sources` and try again."
        ),
        "UNAVAILABLE": "No source answered, so nothing is known either way; try again.",
        "AMBIGUOUS": (
            "More than one child fits the details given; nothing was merged. Look up by NHS"
            " number or UPN, or add details."
        ),
        "DENIED": (
            "Your role may not look up children for this purpose; nothing was asked (see"
            " `denialCode`)."
        ),
    },
)
_enum(
    SourceStatus,
    "What happened when a source was asked. 'No record' is not 'no concern': a TIMED_OUT or"
    " FAILED source may hold a record.",
    {
        "ANSWERED": "The source answered with at least one record.",
        "NO_RECORD": "The source answered and holds no record for the child as asked.",
        "TIMED_OUT": "The source did not answer in time; it may hold a record.",
        "FAILED": (
            "The source could not be asked or gave an unusable answer (see `failureCode`); it"
            " may hold a record."
        ),
        "WITHHELD": "The source refused this caller (FORBIDDEN); it may hold a record.",
        "NOT_ASKED": (
            "The source was not asked: the policy did not plan it, the lookup was denied or"
            " refused, or its circuit is open."
        ),
    },
)
_enum(
    AskedBecause,
    "Why a source was asked about the child. At national scale only the agencies that may know"
    " the child are asked: those the locator names and those the child's identity leads to.",
    {
        "CONFIGURED": (
            "Asked on every lookup: a national identity source, the locator, or an agency of a"
            " deployment small enough to ask every agency."
        ),
        "LOCATED": "The locator says this agency holds a record about the child.",
        "ROUTED_BY_GP": "The child's registered GP practice, from the health record.",
        "ROUTED_BY_ADDRESS": (
            "The local authority of the child's home postcode, from the health record."
        ),
        "ROUTED_BY_SCHOOL": "The child's school, from the education record.",
    },
)
_enum(
    IdentifiedBy,
    "A way of identifying the child to a source: an NHS number, a UPN or demographics.",
    {
        "NHS_NUMBER": "By NHS number.",
        "UPN": "By unique pupil number.",
        "DEMOGRAPHICS": "By name, date of birth, postcode and the other details given.",
    },
)
_enum(
    MatchMethod,
    "How a source record was linked to the child asked about.",
    {
        "NHS_NUMBER": "The record carries the NHS number asked with.",
        "UPN": "The record carries the UPN asked with, as its own or as a former UPN.",
        "DEMOGRAPHICS": "The record's demographics scored above the link threshold (see `score`).",
    },
)
_enum(
    AmbiguityReason,
    "Why the records strong enough to link to the child cannot all be one child.",
    {
        "NHS_NUMBERS_DIFFER": "Linked records carry different NHS numbers.",
        "UPNS_DIFFER": "Linked records carry different UPNs.",
        "SEVERAL_IN_ONE_SOURCE": (
            "One source holds more than one record that fits, and no identifier says they are one"
            " child: often twins, or a family sharing a name."
        ),
        "RECORDS_DISAGREE": (
            "Records in different sources each fit the details given but not each other, so they"
            " cannot be the same child."
        ),
        "DATES_OF_BIRTH_DIFFER": (
            "Records carrying the identifier asked with give different dates of birth, and no"
            " source holding every child says which is this child's: one is another child's,"
            " recorded under this identifier."
        ),
    },
)
_enum(
    Sex,
    "Sex as recorded: female, male or unknown.",
    {"FEMALE": "Female.", "MALE": "Male.", "UNKNOWN": "Not known, or not recorded."},
)
_enum(
    WithholdingReason,
    "Why a field was not released to you, in order of precedence.",
    {
        "SHIELDED": (
            "The child is shielded: where they can be found (address, school, GP, carers,"
            " involvements) is withheld."
        ),
        "RESTRICTED": (
            "The child's record is restricted: where they can be found is withheld, even under"
            " EMERGENCY_OVERRIDE."
        ),
        "RESTRICTION_STATUS_UNKNOWN": (
            "The source holding the NHS restricted flag did not answer, so where the child can be"
            " found is withheld, even under EMERGENCY_OVERRIDE."
        ),
        "SHIELD_STATUS_UNKNOWN": (
            "No source able to say whether the child is shielded answered, so where they can be"
            " found is withheld."
        ),
        "SENSITIVE_SERVICE": (
            "The provider of a sexual-health, mental-health or substance-misuse service;"
            " contact is brokered instead."
        ),
        "NOT_PERMITTED_FOR_PURPOSE": (
            "Your role may see this field, but not for the purpose stated."
        ),
        "NOT_PERMITTED_FOR_ROLE": "Your role may not see this field for any purpose.",
        "POLICY_UNDECIDED": (
            "The policy neither released nor withheld the field, so it was withheld by default."
        ),
        "UNKNOWN": (
            "In an audit trail only, never a lookup's answer: a reason this gateway's version does"
            " not know, recorded by a newer gateway sharing the log (the deprecated `reason` gives"
            " it as recorded)."
        ),
    },
)
_enum(
    DenialCode,
    "Why a whole lookup was denied; nothing was asked.",
    {
        "UNKNOWN_ROLE": "Your role has no grant to look up children.",
        "PURPOSE_NOT_PERMITTED": "Your role may not look up children for this purpose.",
        "JUSTIFICATION_REQUIRED": (
            "This purpose needs a justification, and none long enough was given."
        ),
    },
)


@strawberry.enum(
    description=(
        "Why a source gave no usable answer: the source's own refusal, or what the gateway saw."
    )
)
class SourceFailure(Enum):
    """Every code `SourceAnswer.error_code` may hold: the connector protocol's ErrorCode values
    and the gateway's own (gateway.fanout, gateway.match, gateway.breakers)."""

    BAD_REQUEST = strawberry.enum_value(
        "BAD_REQUEST", description="The source refused the request as malformed."
    )
    UNAUTHENTICATED = strawberry.enum_value(
        "UNAUTHENTICATED", description="The source did not accept the gateway's credentials."
    )
    UNSUPPORTED_VERSION = strawberry.enum_value(
        "UNSUPPORTED_VERSION", description="The source does not speak this protocol version."
    )
    FORBIDDEN = strawberry.enum_value(
        "FORBIDDEN", description="The source refused this caller (status WITHHELD)."
    )
    DEADLINE_EXCEEDED = strawberry.enum_value(
        "DEADLINE_EXCEEDED", description="The source said it could not answer before the deadline."
    )
    UNAVAILABLE = strawberry.enum_value(
        "UNAVAILABLE", description="The source said it is unavailable."
    )
    INTERNAL = strawberry.enum_value(
        "INTERNAL", description="The source reported an internal fault."
    )
    TIMEOUT = strawberry.enum_value("TIMEOUT", description="No answer within the source's timeout.")
    DEADLINE = strawberry.enum_value(
        "DEADLINE", description="Not asked: the lookup's deadline had passed."
    )
    CONNECTION_FAILED = strawberry.enum_value(
        "CONNECTION_FAILED", description="The source was unreachable, or TLS was refused."
    )
    MALFORMED_RESPONSE = strawberry.enum_value(
        "MALFORMED_RESPONSE",
        description=(
            "The answer was not protocol v1, was another request's or source's, or held more"
            " than 50 records."
        ),
    )
    ANSWER_NOT_TRUSTED = strawberry.enum_value(
        "ANSWER_NOT_TRUSTED", description="The answer's signature was missing or wrong."
    )
    RECORD_MISMATCH = strawberry.enum_value(
        "RECORD_MISMATCH",
        description=(
            "The source returned a record that does not carry the identifier asked for, or, asked"
            " again with an identifier another record held, one born on another day."
        ),
    )
    CIRCUIT_OPEN = strawberry.enum_value(
        "CIRCUIT_OPEN",
        description=(
            "Not asked: the source failed several lookups in a row and is skipped until a"
            " probe is answered."
        ),
    )
    UNKNOWN_AGENCY = strawberry.enum_value(
        "UNKNOWN_AGENCY",
        description=(
            "The locator named an agency this gateway has no connector for: it was not asked,"
            " so the answer is incomplete."
        ),
    )
    TOO_MANY_AGENCIES = strawberry.enum_value(
        "TOO_MANY_AGENCIES",
        description=(
            "The locator named more agencies than a lookup follows: none of them was asked, so"
            " the answer is incomplete."
        ),
    )
    UNCONFIRMED_IDENTIFIER = strawberry.enum_value(
        "UNCONFIRMED_IDENTIFIER",
        description=(
            "The locator was not asked: the child was found, but by no identifier the records"
            " confirm (they disagree, or only a weaker link carries one), so the answer is"
            " incomplete and the child's shielding unknown."
        ),
    )


@strawberry.enum(description="What became of one recorded access.")
class AuditOutcome(Enum):
    """Every outcome gateway.audit records: a lookup's LookupOutcome, HIDDEN, and the failures."""

    FOUND = strawberry.enum_value("FOUND", description="A record linked to the child was found.")
    NOT_FOUND = strawberry.enum_value(
        "NOT_FOUND", description="Every source asked answered, and none held a record."
    )
    NOT_FOUND_INCOMPLETE = strawberry.enum_value(
        "NOT_FOUND_INCOMPLETE",
        description="No record among the sources that answered; some did not.",
    )
    UNAVAILABLE = strawberry.enum_value("UNAVAILABLE", description="No source answered.")
    AMBIGUOUS = strawberry.enum_value(
        "AMBIGUOUS", description="More than one child fitted the details; nothing was merged."
    )
    HIDDEN = strawberry.enum_value(
        "HIDDEN",
        description=(
            "A demographic search that reached a shielded or restricted child, answered as not"
            " found."
        ),
    )
    DENIED = strawberry.enum_value(
        "DENIED", description="The policy denied the lookup; nothing was asked."
    )
    REFUSED = strawberry.enum_value(
        "REFUSED",
        description=(
            "A limit refused the lookup or reading (rate, daily cap, limits unavailable), or a"
            " reading of the audit log was refused to someone not an auditor; nothing was asked"
            " or read."
        ),
    )
    ERROR = strawberry.enum_value(
        "ERROR",
        description="The lookup failed (the policy could not decide); nothing was released.",
    )
    AUDIT_TRAIL_VIEWED = strawberry.enum_value(
        "AUDIT_TRAIL_VIEWED", description="An auditor read this child's audit trail."
    )
    ACCESS_HISTORY_VIEWED = strawberry.enum_value(
        ACCESS_HISTORY_VIEWED,
        description="The child's plan or looked-after status holder read its access history.",
    )
    USER_TRAIL_VIEWED = strawberry.enum_value(
        USER_TRAIL_VIEWED, description="An auditor read one user's audit trail (names no child)."
    )
    ALERTS_VIEWED = strawberry.enum_value(
        ALERTS_VIEWED, description="An auditor read the override alerts feed (names no child)."
    )
    UNDELIVERED_VIEWED = strawberry.enum_value(
        UNDELIVERED_VIEWED,
        description="An auditor read the owner notifications not delivered (names no child).",
    )
    NOTIFICATION_PASSED_ON = strawberry.enum_value(
        PASSED_ON,
        description=(
            "An operator closed an owner notification not delivered, its agency told by other"
            " means (the justification says how; the request id is the notification's; names no"
            " child)."
        ),
    )
    UNKNOWN = strawberry.enum_value("UNKNOWN", description=_UNKNOWN_CODE.format(field="outcome"))

    @classmethod
    def _missing_(cls, value: object) -> AuditOutcome:
        return cls.UNKNOWN  # as AuditPurpose._missing_


@strawberry.input(
    description=(
        "A child described by demographics, for when you hold neither an NHS number nor a UPN."
        " Give what you know; nicknames, former names and small slips are allowed for. A lookup"
        " is accepted when its details could identify one child if a record agreed with all of"
        " them - a family name and date of birth, say, or given and family name and postcode, but"
        " not the two names alone - and is otherwise refused with INSUFFICIENT_DETAILS, naming"
        " what to add."
    )
)
class DemographicsInput:
    given_name: str | None = strawberry.field(
        default=None, description="Given (first) name, if known."
    )
    family_name: str | None = strawberry.field(
        default=None, description="Family name (surname), if known."
    )
    date_of_birth: date | None = strawberry.field(
        default=None, description="Date of birth, if known."
    )
    postcode: str | None = strawberry.field(
        default=None,
        description=(
            "Postcode of the home address, e.g. SW1A 1AA, if known; NFA when the child has no"
            " fixed abode."
        ),
    )
    sex: Sex | None = strawberry.field(default=None, description="Sex, if known.")
    former_family_name: str | None = strawberry.field(
        default=None, description="A previous family name, if known."
    )
    known_as: list[str] | None = strawberry.field(
        default=None,
        description=(
            "Other given names the child is known by (a preferred name, a short form), at most"
            f" {KNOWN_AS_MAX}. Each is matched as the given name would be."
        ),
    )
    address_lines: list[str] | None = strawberry.field(
        default=None,
        description=(
            'Lines of the home address before the postcode (e.g. ["Flat 2, 12 Church Road",'
            f' "Headingley"]), at most {ADDRESS_LINES_MAX}, if known. Extra evidence: another'
            " house at the same postcode lowers a record's score; the same house raises it where"
            " the postcode or family name differs (a slip, a name change). Used by the gateway to"
            " weigh what agencies return; never sent to them."
        ),
    )
    carer_names: list[str] | None = strawberry.field(
        default=None,
        description=(
            "Full names of the child's parents or carers, if known, at most"
            f" {CARER_NAMES_MAX}. Extra evidence: a record naming one of them, at another"
            " address, is likely the same child after a move. Used by the gateway to weigh what"
            " agencies return; never sent to them."
        ),
    )


NHS_NUMBER_DESCRIPTION: Final = (
    "The child's 10-digit NHS number, together or spaced 3-3-4 (943 476 5919)."
)
UPN_DESCRIPTION: Final = "The child's unique pupil number (13 characters)."
DEMOGRAPHICS_DESCRIPTION: Final = (
    "Who the child is, when you hold no identifier. Matching is probabilistic and never merges a"
    " near miss; a shielded or restricted child is never found this way."
)
"""The three ways of identifying a child, described alike in ChildIdentity and in the deprecated
arguments of `child` it replaces."""


@strawberry.input(
    one_of=True,
    description=(
        "The one way you identify the child: exactly one of an NHS number, a UPN or"
        " demographics. GraphQL itself refuses none or two (a validation error)."
    ),
)
class ChildIdentity:
    nhs_number: str | None = strawberry.field(description=NHS_NUMBER_DESCRIPTION)
    upn: str | None = strawberry.field(description=UPN_DESCRIPTION)
    demographics: DemographicsInput | None = strawberry.field(description=DEMOGRAPHICS_DESCRIPTION)


@strawberry.type(description="Where a value came from, and how current the source says it is.")
class Provenance:
    source: str = strawberry.field(description="The source (agency connector) name.")
    as_of: datetime = strawberry.field(description="When the source last updated this record.")


@strawberry.type(description="A text value with its provenance.")
class SourcedText:
    value: str = strawberry.field(description="The value.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="A date with its provenance.")
class SourcedDate:
    value: date = strawberry.field(description="The date.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="A yes/no status flag with its provenance.")
class SourcedFlag:
    value: bool = strawberry.field(description="True when the status applies to the child.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="The child's name as the most authoritative source records it.")
class Name:
    given: str = strawberry.field(description="Given name.")
    family: str = strawberry.field(description="Family name.")
    former_family: list[str] = strawberry.field(description="Previous family names, if any.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="A postal address.")
class PostalAddress:
    lines: list[str] = strawberry.field(description="Address lines, most specific first.")
    postcode: str = strawberry.field(description="UK postcode.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="The school the child attends.")
class SchoolPlace:
    urn: str = strawberry.field(description="School unique reference number (URN).")
    name: str = strawberry.field(description="School name.")
    phone: str | None = strawberry.field(description="School switchboard.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="The GP practice the child is registered with.")
class GpRegistration:
    ods_code: str = strawberry.field(description="NHS ODS code of the practice.")
    name: str = strawberry.field(description="Practice name.")
    phone: str | None = strawberry.field(description="Practice phone number.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="A person or desk to contact.")
class ContactDetails:
    name: str = strawberry.field(description="Name of the person or team.")
    role: str | None = strawberry.field(description="Their role.")
    phone: str | None = strawberry.field(description="Phone number.")
    email: str | None = strawberry.field(description="Email address.")


@strawberry.type(description="A parent or carer.")
class CarerEntry:
    name: str = strawberry.field(description="Carer's name.")
    relationship: str = strawberry.field(description="Relationship to the child.")
    parental_responsibility: bool = strawberry.field(
        description="True when the carer holds parental responsibility."
    )
    phone: str | None = strawberry.field(description="Carer's phone number.")
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(
    description=(
        "Someone working with the child. For a sensitive service (sexual health, mental health,"
        " substance misuse) the provider is not shown unless policy allows it: contact is brokered"
        " through `broker`."
    )
)
class InvolvementEntry:
    service: str | None = strawberry.field(description="The service; null when withheld.")
    organisation: str | None = strawberry.field(description="Providing organisation.")
    practitioner: ContactDetails | None = strawberry.field(description="Named practitioner.")
    lead: bool = strawberry.field(description="True for the lead practitioner.")
    since: date | None = strawberry.field(
        description=(
            "Start of the involvement. Null for a sensitive service unless policy releases its"
            " details."
        )
    )
    until: date | None = strawberry.field(
        description=(
            "End of the involvement, if ended. Null for a sensitive service unless policy"
            " releases its details."
        )
    )
    sensitive: bool = strawberry.field(description="True for a sensitive service.")
    broker: ContactDetails | None = strawberry.field(
        description="Who brokers contact with a sensitive service."
    )
    provenance: Provenance = strawberry.field(description="Where the value came from.")


@strawberry.type(description="Status indicators held by children's social care. No case content.")
class Indicators:
    child_protection_plan: SourcedFlag | None = strawberry.field(
        description="Subject of a child protection plan."
    )
    looked_after: SourcedFlag | None = strawberry.field(description="Looked after by the LA.")
    child_in_need: SourcedFlag | None = strawberry.field(description="Assessed as a child in need.")
    early_help: SourcedFlag | None = strawberry.field(description="Receiving early help.")


@strawberry.type(
    description=(
        "The minimum needed to know who else works with the child and how to reach them. Fields"
        " are null when no source holds them or when they were withheld (see `withheld`)."
    )
)
class Child:
    nhs_number: SourcedText | None = strawberry.field(description="NHS number.")
    name: Name | None = strawberry.field(description="Name.")
    date_of_birth: SourcedDate | None = strawberry.field(description="Date of birth.")
    sex: SourcedText | None = strawberry.field(description="Sex: female, male or unknown.")
    address: PostalAddress | None = strawberry.field(description="Home address.")
    school: SchoolPlace | None = strawberry.field(description="Current school.")
    gp_practice: GpRegistration | None = strawberry.field(description="Registered GP practice.")
    carers: list[CarerEntry] = strawberry.field(description="Parents and carers.")
    involvements: list[InvolvementEntry] = strawberry.field(
        description="Practitioners and services working with the child."
    )
    indicators: Indicators = strawberry.field(description="Status indicators.")
    conflicts: list[FieldConflict] = strawberry.field(
        description=(
            "Fields on which linked records disagree. The value shown is the authoritative one;"
            " check with the disagreeing sources before relying on it."
        )
    )


@strawberry.type(description="Linked records hold different values for one field.")
class FieldConflict:
    field: str = strawberry.field(description="Field id, e.g. address or name.")
    chosen: str = strawberry.field(description="The source whose value is shown.")
    disagreeing: list[str] = strawberry.field(description="Sources holding a different value.")


@strawberry.type(description="What one configured source said, or why it said nothing.")
class SourceReport:
    source: str = strawberry.field(description="Source name.")
    status: SourceStatus = strawberry.field(description="What happened.")
    latency_ms: float | None = strawberry.field(description="Time the source took, if asked.")
    error_code: str | None = strawberry.field(
        description="Machine code for a failure, timeout or refusal.",
        deprecation_reason="Use failureCode: the same codes, as an enum.",
    )
    failure_code: SourceFailure | None = strawberry.field(
        description="Why the source gave no usable answer; null when it answered."
    )
    records_matched: int = strawberry.field(description="Records linked to the child.")
    records_unmatched: int = strawberry.field(
        description=(
            "Records returned for an NHS number or UPN that do not carry it. Always 0 for a"
            " search by demographics, where candidates that do not match are other children."
        )
    )
    records_possible: int = strawberry.field(
        description=(
            "Records that may be this child but did not match strongly enough to be linked."
            " Nothing about them is shown: refine the lookup (NHS number, UPN, or more details)."
        )
    )
    records_ambiguous: int = strawberry.field(
        description=(
            "When the lookup is AMBIGUOUS, the records of this source that fit strongly enough to"
            " link but cannot all be one child with the rest (see `ambiguity`); else 0. Nothing"
            " about them is shown."
        )
    )
    cached: bool = strawberry.field(description="True when the answer came from the short cache.")
    asked_with: list[IdentifiedBy] = strawberry.field(
        description=(
            "How the source was asked, in order: first as you identified the child; then, when a"
            " record linked in another source held an NHS number (or a UPN) you did not give, with"
            " that identifier - a second round, within the same deadline. `status` is the outcome"
            " of the last request. Empty when the source was not asked."
        )
    )
    asked_because: list[AskedBecause] = strawberry.field(
        description=(
            "Why the source was asked (several reasons may apply); empty when it was not. The"
            " source named locator is the index of which agencies hold a record: when it did"
            " not answer, the lookup is incomplete, since an agency only it knows of was not"
            " asked."
        )
    )


@strawberry.type(
    description=(
        "A field a linked record holds, or may hold, that was not released to you, and why."
        " Ask a colleague whose role and purpose permit it, or the holding agency."
    )
)
class WithheldField:
    field: str = strawberry.field(description="Field id, e.g. address or involvements.")
    source: str = strawberry.field(description="Source holding the field.")
    reason: str = strawberry.field(
        description=(
            "Machine reason code: SHIELDED, RESTRICTED, RESTRICTION_STATUS_UNKNOWN,"
            " SHIELD_STATUS_UNKNOWN, SENSITIVE_SERVICE, NOT_PERMITTED_FOR_PURPOSE,"
            " NOT_PERMITTED_FOR_ROLE or POLICY_UNDECIDED."
        ),
        deprecation_reason="Use reasonCode: the same codes, as an enum.",
    )
    reason_code: WithholdingReason = strawberry.field(description="Why it was withheld.")


@strawberry.type(description="A source record linked to the child, and how it was linked.")
class RecordMatch:
    source: str = strawberry.field(description="Source name.")
    method: MatchMethod = strawberry.field(description="How it was linked.")
    score: float = strawberry.field(description="Match probability, 1.0 for an identifier match.")
    weight: float | None = strawberry.field(
        description="Demographic match weight (log2 odds) when demographics were scored."
    )
    as_of: datetime = strawberry.field(description="When the source last updated the record.")


@strawberry.type(
    description="Records of one source, linked one way, that together made a lookup ambiguous."
)
class AmbiguousRecords:
    source: str = strawberry.field(description="Source name.")
    method: MatchMethod = strawberry.field(description="How they were linked.")
    count: int = strawberry.field(description="How many records.")


@strawberry.type(
    description=(
        "What made a lookup AMBIGUOUS: why, and how many records of each source fit strongly"
        " enough to link, and how. Nothing about the records themselves is shown."
    )
)
class Ambiguity:
    reason: AmbiguityReason = strawberry.field(description="Why they cannot all be one child.")
    records: list[AmbiguousRecords] = strawberry.field(
        description="Per source and way of linking, how many records took part."
    )


@strawberry.type(description="The answer to one child lookup. Always check `sources`.")
class ChildLookup:
    outcome: LookupOutcome = strawberry.field(
        description="Found, not found (with every source or only some answering), unavailable,"
        " ambiguous or denied."
    )
    complete: bool = strawberry.field(
        description="True only when sources were asked and every one answered (with a record or"
        " none) when asked with the best identifier known: a source asked again with an NHS"
        " number found in another source's record (see `sources.askedWith`) counts by that"
        " answer. False for a denied lookup, which asked nobody."
    )
    denial: str | None = strawberry.field(
        description="Why the lookup was denied: UNKNOWN_ROLE, PURPOSE_NOT_PERMITTED, ...",
        deprecation_reason="Use denialCode: the same codes, as an enum.",
    )
    denial_code: DenialCode | None = strawberry.field(
        description="Why the lookup was denied; null unless `outcome` is DENIED."
    )
    child: Child | None = strawberry.field(description="The merged, policy-filtered child.")
    records: list[RecordMatch] = strawberry.field(description="How each record was matched.")
    sources: list[SourceReport] = strawberry.field(
        description="One entry per configured source, whether asked or not."
    )
    withheld: list[WithheldField] = strawberry.field(description="What was withheld, and why.")
    audit_id: strawberry.ID = strawberry.field(description="The audit record of this lookup.")
    request_id: str = strawberry.field(description="Correlates gateway and connector logs.")
    policy_revision: str = strawberry.field(description="Revision of the policy that decided.")
    ambiguity: Ambiguity | None = strawberry.field(
        default=None,
        description=(
            "When the outcome is AMBIGUOUS, what made it so; null otherwise. Look up by NHS number"
            " or UPN, or add details."
        ),
    )


CURSOR_DESCRIPTION = (
    "Where this entry stands in the list: give it as `after`, for the same child, user or feed,"
    " to read on from the one after it. Opaque: use it as given."
)


@strawberry.type(description="One recorded access to a child, for auditors. No child data.")
class AuditEntry:
    audit_id: strawberry.ID = strawberry.field(description="The audit record's id.")
    at: datetime = strawberry.field(description="When the access happened.")
    subject: str = strawberry.field(description="Who looked (the practitioner's account).")
    name: str = strawberry.field(description="Their name.")
    role: str = strawberry.field(description="Their role.")
    organisation: str = strawberry.field(description="Their organisation.")
    purpose: str = strawberry.field(
        description="The purpose they stated.",
        deprecation_reason="Use purposeCode: the same values, as an enum.",
    )
    purpose_code: AuditPurpose = strawberry.field(description="The purpose they stated.")
    justification: str | None = strawberry.field(description="Their free-text reason.")
    outcome: str = strawberry.field(
        description=(
            "FOUND, NOT_FOUND, AMBIGUOUS, HIDDEN (a demographic search that reached a shielded"
            " or restricted child, answered as not found), DENIED, REFUSED, ERROR or"
            " AUDIT_TRAIL_VIEWED."
        ),
        deprecation_reason="Use outcomeCode: the same codes, as an enum.",
    )
    outcome_code: AuditOutcome = strawberry.field(description="What became of the access.")
    flagged_for_investigation: bool = strawberry.field(
        description="True for a break-glass override."
    )
    released: list[str] = strawberry.field(description="Fields released, as source:field.")
    withheld: list[WithheldField] = strawberry.field(description="Fields withheld, and why.")
    reading: AuditReading | None = strawberry.field(
        default=None,
        description=(
            "For an auditor's reading of a trail or an alerts feed (purpose AUDIT_REVIEW): what"
            " it covered, or what a refused one asked for. Null for anything else, and for"
            " readings recorded before 2026-11-29."
        ),
    )
    cursor: str = strawberry.field(description=CURSOR_DESCRIPTION)


@strawberry.type(
    description=(
        "What one auditor's reading of the log covered: from when, whose trail (a child's trail"
        " is the entry's own child), which alerts."
    )
)
class AuditReading:
    since: datetime | None = strawberry.field(
        description="The time the reading started from; null for the whole log."
    )
    subject: str | None = strawberry.field(description="The user whose trail was read.")
    alert_kinds: list[str] = strawberry.field(
        description="The kinds of alert read, for a reading of an alerts feed."
    )


@strawberry.type(
    description=(
        "One lookup of the child that your agency was told of, as NHS CP-IS shows recent"
        " accesses: who, when, why, with what outcome. No child data."
    )
)
class AccessHistoryEntry:
    audit_id: strawberry.ID = strawberry.field(
        description="The lookup's audit record, to quote to an auditor."
    )
    at: datetime = strawberry.field(description="When the lookup happened.")
    subject: str = strawberry.field(description="Who looked (the practitioner's account).")
    name: str = strawberry.field(description="Their name.")
    role: str = strawberry.field(description="Their role.")
    organisation: str = strawberry.field(description="Their organisation.")
    purpose: AuditPurpose = strawberry.field(description="The purpose they stated.")
    justification: str | None = strawberry.field(
        description="Their free-text reason, as your agency was sent it."
    )
    outcome: AuditOutcome = strawberry.field(description="What the lookup found.")
    override: bool = strawberry.field(
        description="True for a break-glass override, which is flagged for investigation."
    )
    reasons: list[NotificationReason] = strawberry.field(
        description="Why your agency was told of it."
    )


@strawberry.type(
    description=(
        "Who looked at a child whose child protection plan or looked-after status your agency"
        " holds: the lookups your agency was notified of, newest first. Empty when none was."
    )
)
class AccessHistory:
    accesses: list[AccessHistoryEntry] = strawberry.field(
        description="Newest first, at most `limit`."
    )
    more: bool = strawberry.field(
        description="True when older accesses were notified too: ask with a larger `limit`."
    )


@strawberry.type(
    description=(
        "One break-glass override, or an attempt refused, for privacy officers to"
        " investigate: who, when and why. It names no child: the audit record it points to, read"
        " through auditTrail, does."
    )
)
class OverrideAlert:
    at: datetime = strawberry.field(description="When the override was made or attempted.")
    kind: str = strawberry.field(
        description=(
            "What raised the alert: BREAK_GLASS (an override the policy permitted: the agencies"
            " were asked for data past a shield, released unless the lookup then failed), or"
            " BREAK_GLASS_REFUSED (an override refused - by the policy, a role not permitted or no"
            " real reason, or for a justification the gateway may not keep, one holding a child's"
            " identifier or too long - which released nothing; the audit record gives the"
            " denial)."
        )
    )
    audit_id: strawberry.ID = strawberry.field(description="The lookup's audit record.")
    subject: str = strawberry.field(
        description="Who broke glass or tried to (the practitioner's account)."
    )
    role: str = strawberry.field(description="Their role.")
    organisation: str = strawberry.field(description="Their organisation.")
    justification: str | None = strawberry.field(
        description=(
            "Their reason, as recorded; null when none was given, and in alerts recorded before"
            " reasons were kept."
        )
    )
    cursor: str = strawberry.field(description=CURSOR_DESCRIPTION)


@strawberry.type(
    description=(
        "One lookup refused because its user had reached a usage limit: possible trawling, for"
        " information governance to look into - who and when. It names no child: the audit"
        " record it points to, read through auditTrail, does."
    )
)
class LimitAlert:
    at: datetime = strawberry.field(description="When the lookup was refused.")
    kind: str = strawberry.field(
        description=(
            "Which limit: RATE_LIMITED (too many lookups in a minute by the user),"
            " ORGANISATION_RATE_LIMITED (too many in a minute by their organisation) or"
            " DISTINCT_CHILDREN_CAP (too many different children in a day by the user)."
        )
    )
    audit_id: strawberry.ID = strawberry.field(description="The refused lookup's audit record.")
    subject: str = strawberry.field(description="Who was refused (the practitioner's account).")
    role: str = strawberry.field(description="Their role.")
    organisation: str = strawberry.field(description="Their organisation.")
    cursor: str = strawberry.field(description=CURSOR_DESCRIPTION)


@strawberry.type(
    description=(
        "An owner notification the gateway gave up delivering: the agency holding the child's"
        " record was not told of a lookup, and has to be told some other way. Names the lookup"
        " and the agency, never what the agency was to be told. Listed until an operator sends"
        " it again (`childlookup notifications resend`) or closes it as passed on by other means"
        " (`childlookup notifications passed-on`)."
    )
)
class UndeliveredNotification:
    audit_id: strawberry.ID = strawberry.field(
        description="The audit record of the lookup the agency was to be told of."
    )
    agency: str = strawberry.field(description="The agency not told (its source name).")
    attempts: int = strawberry.field(description="How many times delivery was tried.")
    last_error: str | None = strawberry.field(
        description=(
            "Why the last attempt failed, as a code: UNREACHABLE, TIMEOUT, HTTP_<status>,"
            " BAD_RECEIPT, RECEIPT_NOT_TRUSTED or NO_ENDPOINT."
        )
    )
    queued_at: datetime = strawberry.field(
        description="When it was queued with the lookup's audit record, or queued again."
    )
    given_up_at: datetime | None = strawberry.field(description="When delivery was given up.")
    cursor: str = strawberry.field(description=CURSOR_DESCRIPTION)
