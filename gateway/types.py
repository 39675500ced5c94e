"""Value objects that flow through the lookup pipeline.

Each stage takes one of these and returns the next; none is mutated after construction, so a stage
can never reach back and change what an earlier stage decided.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from connectors.notifications import NotificationReason
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Demographics,
    FieldId,
    GpPractice,
    Involvement,
    PersonName,
    School,
    Sex,
)
from connectors.protocol import (
    Caller as ProtocolCaller,
)
from gateway.breakers import CIRCUIT_OPEN
from gateway.justification import Justification

if TYPE_CHECKING:
    from gateway.policy import LoggedPolicy

T = TypeVar("T")


class Purpose(StrEnum):
    """Why a practitioner is looking; every lookup must state one (and it is audited)."""

    SAFEGUARDING_ENQUIRY = "SAFEGUARDING_ENQUIRY"
    CHILD_PROTECTION_ENQUIRY = "CHILD_PROTECTION_ENQUIRY"
    DIRECT_CARE = "DIRECT_CARE"
    SHIELDING_ADMINISTRATION = "SHIELDING_ADMINISTRATION"
    EMERGENCY_OVERRIDE = "EMERGENCY_OVERRIDE"


@dataclass(frozen=True)
class Caller:
    """An authenticated practitioner, as asserted by a verified token."""

    subject: str
    name: str
    role: str
    organisation: str

    @cached_property
    def protocol(self) -> ProtocolCaller:
        """The caller as policy and connectors see them: a role and an organisation, no name."""
        return ProtocolCaller(role=self.role, organisation=self.organisation)


class IdentifiedBy(StrEnum):
    """The one way a lookup identifies the child: mixing ways could reach two children at once."""

    NHS_NUMBER = "NHS_NUMBER"
    UPN = "UPN"
    DEMOGRAPHICS = "DEMOGRAPHICS"


IDENTIFIER_FIELDS: Mapping[IdentifiedBy, str] = {
    IdentifiedBy.NHS_NUMBER: "nhs_number",
    IdentifiedBy.UPN: "upn",
}
"""The identifiers shared across agencies, best first, and the field holding each: in a lookup
query, in a record's `identifiers`, and (as the pseudonym's kind) at the locator."""


@dataclass(frozen=True)
class Corroboration:
    """Details given with a demographic lookup that only corroborate it: the gateway weighs them
    when it scores what agencies return, and never sends them to an agency, which searches on
    the demographics alone. Each is already validated (gateway.identifiers)."""

    address_lines: tuple[str, ...] = ()
    carer_names: tuple[str, ...] = ()

    @property
    def given(self) -> bool:
        return bool(self.address_lines or self.carer_names)


@dataclass(frozen=True)
class LookupQuery:
    """A validated request to look up one child, by exactly one of an NHS number, a UPN or
    demographics (already normalised by gateway.identifiers)."""

    purpose: Purpose
    justification: str | None = None
    """The practitioner's reason as gateway.justification normalises it (what a reader sees), so
    the audit record and the owner notifications hold what the policy judged; None if none."""
    nhs_number: str | None = None
    upn: str | None = None
    demographics: Demographics | None = None
    corroboration: Corroboration = Corroboration()

    def __post_init__(self) -> None:
        given = [v for v in (self.nhs_number, self.upn, self.demographics) if v is not None]
        if len(given) != 1:
            raise ValueError("a lookup identifies the child in exactly one way")
        if self.corroboration.given and self.demographics is None:
            raise ValueError("corroborating details go with a demographic lookup")
        if self.justification is not None and (
            not self.justification
            or Justification.of(self.justification).text != self.justification
        ):
            raise ValueError("a justification is recorded normalised, and never empty")

    @property
    def identified_by(self) -> IdentifiedBy:
        if self.nhs_number is not None:
            return IdentifiedBy.NHS_NUMBER
        if self.upn is not None:
            return IdentifiedBy.UPN
        return IdentifiedBy.DEMOGRAPHICS


@dataclass(frozen=True)
class LookupContext:
    """One lookup as every stage receives it, fixed when the lookup starts.

    `policy` is the one revision that decides the whole lookup, even across a reload; `deadline` is
    the monotonic time by which every source must have answered; `child_ref` is the pseudonym the
    lookup is counted and audited under; `keeps_answers`, whether what the agencies answer it may
    be kept in the answer cache (gateway.cache), is all that a later stage may turn off.
    """

    caller: Caller
    query: LookupQuery
    request_id: str
    child_ref: str
    deadline: float
    policy: LoggedPolicy
    keeps_answers: bool = True

    @property
    def policy_revision(self) -> str:
        return self.policy.revision


class SourceStatus(StrEnum):
    """What happened when a source was (or was not) asked. 'No record' is not 'no concern'."""

    ANSWERED = "ANSWERED"
    NO_RECORD = "NO_RECORD"
    TIMED_OUT = "TIMED_OUT"
    FAILED = "FAILED"
    WITHHELD = "WITHHELD"
    NOT_ASKED = "NOT_ASKED"


class AskedBecause(StrEnum):
    """Why a source was asked about this child (gateway.routing)."""

    CONFIGURED = "CONFIGURED"
    """Asked on every lookup: a national identity source, or an agency of a small deployment."""
    LOCATED = "LOCATED"
    """The locator says it holds a record about the child."""
    ROUTED_BY_GP = "ROUTED_BY_GP"
    """The child's registered GP practice, from the health record."""
    ROUTED_BY_ADDRESS = "ROUTED_BY_ADDRESS"
    """The local authority of the child's home postcode, from the health record."""
    ROUTED_BY_SCHOOL = "ROUTED_BY_SCHOOL"
    """The child's school, from the education record."""


@dataclass(frozen=True)
class SourceAnswer:
    """One source's reply after fan-out: its status, and its records if it answered."""

    source: str
    status: SourceStatus
    latency_ms: float | None = None
    records: tuple[ConnectorRecord, ...] = ()
    error_code: str | None = None
    cached: bool = False
    asked_with: tuple[IdentifiedBy, ...] = ()
    """How the source was asked for the child, in order: the lookup's own identifier or
    demographics, then an identifier another source's record gave (gateway.second_round). The
    status and error code are those of the last request. Empty when the source was not asked."""
    asked_because: tuple[AskedBecause, ...] = ()
    """Why it was asked, when it was."""

    @property
    def answered(self) -> bool:
        return self.status in (SourceStatus.ANSWERED, SourceStatus.NO_RECORD)

    @property
    def sent(self) -> bool:
        """Whether a request left for the agency: not when the plan left it out, nor when its
        circuit was open or the lookup had no time left to ask it (gateway.fanout). The answer
        then says nothing of the agency, and nothing of the child went to it."""
        return self.status is not SourceStatus.NOT_ASKED and self.error_code not in NOT_SENT


DEADLINE: Final = "DEADLINE"
"""The error code of a source (or the locator) not asked because no time was left before the
lookup's deadline."""
NOT_SENT: Final = frozenset({CIRCUIT_OPEN, DEADLINE})
"""Error codes of answers the gateway made without sending the agency a request: its circuit open,
or no time left before the lookup's deadline."""


class MatchMethod(StrEnum):
    """How a record was tied to the child asked about."""

    NHS_NUMBER = "NHS_NUMBER"
    UPN = "UPN"
    DEMOGRAPHICS = "DEMOGRAPHICS"


class AmbiguityReason(StrEnum):
    """Why the records strong enough to link cannot all be one child (gateway.match)."""

    NHS_NUMBERS_DIFFER = "NHS_NUMBERS_DIFFER"
    """Linked records carry different NHS numbers."""
    UPNS_DIFFER = "UPNS_DIFFER"
    """Linked records carry different UPNs."""
    SEVERAL_IN_ONE_SOURCE = "SEVERAL_IN_ONE_SOURCE"
    """One source holds more than one linked record, and no identifier says they are one child."""
    RECORDS_DISAGREE = "RECORDS_DISAGREE"
    """A linked record is, by the linkage model, not the same person as the strongest one."""
    DATES_OF_BIRTH_DIFFER = "DATES_OF_BIRTH_DIFFER"
    """Records linked by the identifier asked give different dates of birth, and no source holding
    every child says which is the child's."""


@dataclass(frozen=True)
class AmbiguousRecords:
    """How many records of one source, linked one way, took part in an ambiguity."""

    source: str
    method: MatchMethod
    count: int


@dataclass(frozen=True)
class Ambiguity:
    """What made a lookup AMBIGUOUS, in counts and methods only: the reason, and per source how
    many records were strong enough to link and how - never what they hold."""

    reason: AmbiguityReason
    records: tuple[AmbiguousRecords, ...]

    @classmethod
    def of(cls, reason: AmbiguityReason, linked: Iterable[tuple[str, MatchMethod]]) -> Ambiguity:
        """The ambiguity of records linked as `linked` says: (source, method) per record."""
        counts = Counter(linked)
        return cls(reason, tuple(AmbiguousRecords(s, m, n) for (s, m), n in counts.items()))

    def count(self, source: str) -> int:
        return sum(r.count for r in self.records if r.source == source)


@dataclass(frozen=True)
class MatchedRecord:
    """A record accepted as being about the child, with how it was matched.

    `score` is the match probability (1.0 for an identifier); `weight` the demographic match
    weight, when demographics were scored; `reasons` the comparisons behind it, for the audit.
    """

    key: str
    source: str
    record: ConnectorRecord
    method: MatchMethod
    score: float = 1.0
    weight: float | None = None
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Withheld:
    """A field that exists in a source but did not leave the gateway, and why."""

    field: FieldId
    source: str
    reason: str


@dataclass(frozen=True)
class ChildFlags:
    """Restrictions aggregated over every matched record: one shielding source shields them all."""

    shielded: bool
    restricted: bool
    shield_status_known: bool
    restriction_status_known: bool


class LookupOutcome(StrEnum):
    """What the lookup found. "Not found" is said only when every source asked answered: a
    practitioner reads NOT_FOUND as "no agency knows this child", which a silent source cannot
    support."""

    FOUND = "FOUND"
    NOT_FOUND = "NOT_FOUND"
    NOT_FOUND_INCOMPLETE = "NOT_FOUND_INCOMPLETE"
    UNAVAILABLE = "UNAVAILABLE"
    AMBIGUOUS = "AMBIGUOUS"
    DENIED = "DENIED"


LOCATOR_SOURCE: Final = "locator"
"""The locator's entry among a lookup's sources (gateway.routing): not an agency, but a source of
where the child is known, whose silence leaves the answer incomplete and the child's shielding in
doubt."""


@dataclass(frozen=True)
class Plan:
    """Policy's answer before fan-out: whether to look at all, where, and for which fields."""

    permitted: bool
    denial: str | None
    fields: frozenset[FieldId]
    sources: tuple[str, ...]
    decision_id: str
    obligation_fields: frozenset[FieldId] = frozenset()
    """Fetched too, but only for the release policy's obligations; never shown for being here."""
    unrequested: Mapping[str, frozenset[FieldId]] = field(default_factory=dict)
    """Per planned source, what it provides that the plan left out: the release policy gives a
    reason for those too, so the caller learns a record may hold more than they can see."""
    shield_authorities: frozenset[str] = frozenset()
    """The configured sources whose silence leaves a child's shielding in doubt."""
    restriction_authorities: frozenset[str] = frozenset()
    """The configured sources whose silence leaves an NHS restriction in doubt."""
    kinds: Mapping[str, str] = field(default_factory=dict)
    """Agency name -> the kind it is planned as, for agencies asked only when routed: `sources`
    and `unrequested` name their kinds (gateway.plan.Planning)."""

    def planned_as(self, source: str) -> str:
        """The name under which the plan decided about `source`."""
        return self.kinds.get(source, source)

    @property
    def doubt_authorities(self) -> frozenset[str]:
        """The sources whose silence means a hidden child cannot be ruled out: shield and
        restriction authorities (gateway.shield_safe)."""
        return self.shield_authorities | self.restriction_authorities

    @cached_property
    def unasked_authorities(self) -> frozenset[str]:
        """The doubt authorities no lookup under this plan asks: those the policy left out, by
        name or, for an agency asked only when routed, by kind. plan.rego asks every shield and
        restriction authority, but an edited or different bundle may not, and an authority never
        asked says nothing of the child - doubt, as its silence is (gateway.decide,
        gateway.shield_safe). The locator is no plan source: routing asks it whatever the plan
        says."""
        return frozenset(
            a
            for a in self.doubt_authorities
            if a != LOCATOR_SOURCE and self.planned_as(a) not in self.sources
        )


@dataclass(frozen=True)
class ReleasedRecord:
    """A matched record reduced to the fields policy released (the rest are None)."""

    matched: MatchedRecord
    fields: frozenset[FieldId]
    record: ConnectorRecord


@dataclass(frozen=True)
class OwnerNotice:
    """A policy obligation: tell the agency holding `matched` of the lookup, and why."""

    matched: MatchedRecord
    reasons: tuple[NotificationReason, ...]


@dataclass(frozen=True)
class Release:
    records: tuple[ReleasedRecord, ...]
    withheld: tuple[Withheld, ...]
    flags: ChildFlags
    decision_id: str
    notify: tuple[OwnerNotice, ...] = ()


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """A value and where it came from."""

    value: T
    source: str
    as_of: datetime


@dataclass(frozen=True)
class Conflict:
    """Linked records disagree on a field: the merged value is the authoritative one, and these
    sources hold different values (no values are carried, only that they differ)."""

    field: FieldId
    chosen: str
    disagreeing: tuple[str, ...]


@dataclass(frozen=True)
class MergedChild:
    nhs_number: Sourced[str] | None
    name: Sourced[PersonName] | None
    date_of_birth: Sourced[date] | None
    sex: Sourced[Sex] | None
    address: Sourced[Address] | None
    school: Sourced[School] | None
    gp_practice: Sourced[GpPractice] | None
    carers: tuple[Sourced[Carer], ...]
    involvements: tuple[Sourced[Involvement], ...]
    child_protection_plan: Sourced[bool] | None
    looked_after: Sourced[bool] | None
    child_in_need: Sourced[bool] | None
    early_help: Sourced[bool] | None
    conflicts: tuple[Conflict, ...] = ()


@dataclass(frozen=True)
class LookupResult:
    """Everything the GraphQL layer needs to answer, after audit has committed."""

    request_id: str
    audit_id: str
    outcome: LookupOutcome
    denial: str | None
    policy_revision: str
    answers: tuple[SourceAnswer, ...]
    matched: tuple[MatchedRecord, ...] = ()
    unmatched: Mapping[str, int] | None = None
    possible: Mapping[str, int] | None = None
    child: MergedChild | None = None
    withheld: tuple[Withheld, ...] = ()
    ambiguity: Ambiguity | None = None
    """What made the lookup AMBIGUOUS; None for any other outcome."""

    @property
    def complete(self) -> bool:
        """True when sources were asked and every one of them answered, with or without a record:
        a lookup that asked nobody (denied) is not complete either. A source asked again with an
        identifier found in another source's record (gateway.second_round) counts by its second
        answer, so a source not reached with the best identifier known makes a lookup incomplete.
        So does a source not asked for a reason it states (`error_code`: a locator that could not
        be asked, gateway.routing), unlike one the plan left out."""
        asked = [a for a in self.answers if a.status is not SourceStatus.NOT_ASKED]
        unreached = any(
            a.status is SourceStatus.NOT_ASKED and a.error_code is not None for a in self.answers
        )
        return bool(asked) and all(a.answered for a in asked) and not unreached
