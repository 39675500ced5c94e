"""GraphQL schema types: plain data with descriptions, the published contract for portals.

No policy, I/O or business rules live here; `resolvers.mapping` builds these from pipeline results.
"""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from connectors.protocol import KNOWN_AS_MAX, Sex
from gateway.identifiers import ADDRESS_LINES_MAX, CARER_NAMES_MAX
from gateway.types import IdentifiedBy, LookupOutcome, MatchMethod, Purpose, SourceStatus

strawberry.enum(
    Purpose,
    name="Purpose",
    description="Why the practitioner is looking. Every lookup states one, and it is audited.",
)
strawberry.enum(
    LookupOutcome,
    name="LookupOutcome",
    description=(
        "FOUND: at least one source holds a record linked to this child (check `complete`: a"
        " source that did not answer may hold more). NOT_FOUND: every source asked answered and"
        " none holds one (check `possibleMatches`: a near miss is never merged)."
        " NOT_FOUND_INCOMPLETE: none of the sources that answered holds one, but some did not"
        " answer and may - this is not 'no agency knows this child'; see `sources` and try"
        " again. UNAVAILABLE: no source answered, so nothing is known either way; try again."
        " AMBIGUOUS: more than one child fits the details given; nothing was merged - look up by"
        " NHS number or UPN, or add details. DENIED: your role may not look up children for this"
        " purpose; nothing was asked."
    ),
)
strawberry.enum(
    SourceStatus,
    name="SourceStatus",
    description=(
        "What happened when a source was asked. 'No record' is not 'no concern': a TIMED_OUT or"
        " FAILED source may hold a record."
    ),
)
strawberry.enum(
    IdentifiedBy,
    name="IdentifiedBy",
    description="A way of identifying the child to a source: an NHS number, a UPN or demographics.",
)
strawberry.enum(
    MatchMethod,
    name="MatchMethod",
    description="How a source record was linked to the child asked about.",
)


strawberry.enum(Sex, name="Sex", description="Sex as recorded: female, male or unknown.")


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
    since: date | None = strawberry.field(description="Start of the involvement.")
    until: date | None = strawberry.field(description="End of the involvement, if ended.")
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
        description="Machine code for a failure, timeout or refusal."
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
    cached: bool = strawberry.field(description="True when the answer came from the short cache.")
    asked_with: list[IdentifiedBy] = strawberry.field(
        description=(
            "How the source was asked, in order: first as you identified the child; then, when a"
            " record linked in another source held an NHS number (or a UPN) you did not give, with"
            " that identifier - a second round, within the same deadline. `status` is the outcome"
            " of the last request. Empty when the source was not asked."
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
            "Machine reason code: SHIELDED, RESTRICTED, SHIELD_STATUS_UNKNOWN, SENSITIVE_SERVICE,"
            " NOT_PERMITTED_FOR_PURPOSE, NOT_PERMITTED_FOR_ROLE or POLICY_UNDECIDED."
        )
    )


@strawberry.type(description="A source record linked to the child, and how it was linked.")
class RecordMatch:
    source: str = strawberry.field(description="Source name.")
    method: MatchMethod = strawberry.field(description="How it was linked.")
    score: float = strawberry.field(description="Match probability, 1.0 for an identifier match.")
    weight: float | None = strawberry.field(
        description="Demographic match weight (log2 odds) when demographics were scored."
    )
    as_of: datetime = strawberry.field(description="When the source last updated the record.")


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
        description="Why the lookup was denied: UNKNOWN_ROLE, PURPOSE_NOT_PERMITTED, ..."
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


@strawberry.type(description="One recorded access to a child, for auditors. No child data.")
class AuditEntry:
    audit_id: strawberry.ID = strawberry.field(description="The audit record's id.")
    at: datetime = strawberry.field(description="When the access happened.")
    subject: str = strawberry.field(description="Who looked (the practitioner's account).")
    name: str = strawberry.field(description="Their name.")
    role: str = strawberry.field(description="Their role.")
    organisation: str = strawberry.field(description="Their organisation.")
    purpose: str = strawberry.field(description="The purpose they stated.")
    justification: str | None = strawberry.field(description="Their free-text reason.")
    outcome: str = strawberry.field(
        description=(
            "FOUND, NOT_FOUND, AMBIGUOUS, HIDDEN (a demographic search that reached a shielded"
            " or restricted child, answered as not found), DENIED, REFUSED, ERROR or"
            " AUDIT_TRAIL_VIEWED."
        )
    )
    flagged_for_investigation: bool = strawberry.field(
        description="True for a break-glass override."
    )
    released: list[str] = strawberry.field(description="Fields released, as source:field.")
    withheld: list[WithheldField] = strawberry.field(description="Fields withheld, and why.")
