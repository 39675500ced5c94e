"""Connector protocol, version 1: the JSON both sides of a federated lookup speak.

These models are the contract between the gateway and every agency connector. They are strict
(`extra="forbid"`) so that a connector sending something unexpected is caught as malformed rather
than silently half-read, and they carry no case content by design: contacts, involvements and status
flags only.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROTOCOL_VERSION: Final = "1"
LOOKUP_PATH: Final = "/v1/lookup"
NO_FIXED_ABODE: Final = "NFA"
"""The postcode of a child with no fixed abode, in records and in demographic lookups. It is not a
place: two children of no fixed abode do not agree on postcode."""


def random_id() -> str:
    """A fresh random 128-bit id as 32 hex digits, for requests, audit records, decisions and
    tokens: `uuid.uuid4().hex` without the version bits, at a quarter of its cost (~0.5 us
    against ~2; a lookup makes about eight)."""
    return os.urandom(16).hex()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldId(StrEnum):
    """Catalogued fields a gateway may request; the policy data describes each one."""

    NHS_NUMBER = "nhs_number"
    NAME = "name"
    DATE_OF_BIRTH = "date_of_birth"
    SEX = "sex"
    ADDRESS = "address"
    SCHOOL = "school"
    GP_PRACTICE = "gp_practice"
    CARERS = "carers"
    INVOLVEMENTS = "involvements"
    SENSITIVE_SERVICE_DETAILS = "sensitive_service_details"
    CHILD_PROTECTION_PLAN = "child_protection_plan"
    LOOKED_AFTER = "looked_after"
    CHILD_IN_NEED = "child_in_need"
    EARLY_HELP = "early_help"


PLAIN_FIELDS: Final = (
    FieldId.NAME,
    FieldId.DATE_OF_BIRTH,
    FieldId.SEX,
    FieldId.ADDRESS,
    FieldId.SCHOOL,
    FieldId.GP_PRACTICE,
    FieldId.CARERS,
)
"""Fields held as one record attribute of the same name, released exactly as held."""

INDICATOR_FIELDS: Final = (
    FieldId.CHILD_PROTECTION_PLAN,
    FieldId.LOOKED_AFTER,
    FieldId.CHILD_IN_NEED,
    FieldId.EARLY_HELP,
)


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    UNKNOWN = "unknown"


class Caller(_Model):
    """Who is asking, as the gateway authenticated them; connectors may log or refuse on it."""

    role: str
    organisation: str


def _empty(value: Collection[str] | None) -> bool:
    return not value


FORMER_UPNS_MAX: Final = 5
"""Former UPNs one record lists, at most: a temporary UPN replaced by the permanent one, a
duplicate withdrawn - a few in a school career, never a list to search by."""


class Identifiers(_Model):
    """The identifiers a request asks by, or a record carries.

    `former_upns` is a record's alone: UPNs the child held before its current `upn` (the DfE's
    FormerUPN, which identifies the same pupil). A connector that matches a request's UPN against
    them answers with the record as it is - current UPN and all - and the list tells the gateway
    why that record answers to the UPN asked. A lookup request never carries it (one that does is
    refused: nothing is looked up by it), and it is left out of the JSON when absent, so a record
    without one reads as it did before the field existed.
    """

    nhs_number: str | None = None
    upn: str | None = None
    local_id: str | None = None
    # A tuple, not a list, and None rather than empty: connectors index records by every
    # identifier field, which must hash and must never match a request that carries none.
    former_upns: tuple[Annotated[str, Field(min_length=1)], ...] | None = Field(
        default=None, max_length=FORMER_UPNS_MAX, exclude_if=_empty
    )


KNOWN_AS_MAX: Final = 5
"""Other given names one child is known by, at most: a preferred name, a short form, a name from
another family - a few, never a list to search by."""

_Name = Annotated[str, Field(min_length=1, max_length=100)]


class Demographics(_Model):
    """Who the practitioner is looking for when they hold no identifier for the child.

    Sent already validated and normalised by the gateway: the postcode upper-case with one space,
    or "NFA" for a child with no fixed abode (which agrees with no record's postcode, NFA included).
    Any of given name, family name, date of birth and postcode may be missing: the gateway sends a
    search only when the details given could be enough to link a record, and a missing detail is
    one no record can agree with. `known_as` lists other given names the child is known by, each
    as good as the given name. A connector answers with candidates - records that plausibly
    describe this child - and the gateway, not the connector, decides which of them are the child.

    An empty `known_as` is left out of the JSON, so a search naming none reads as it did before
    the field existed.
    """

    given: _Name | None = None
    family: _Name | None = None
    date_of_birth: date | None = None
    postcode: str | None = Field(default=None, min_length=3, max_length=8)
    sex: Sex | None = None
    former_family: _Name | None = None
    known_as: list[_Name] = Field(default_factory=list, max_length=KNOWN_AS_MAX, exclude_if=_empty)


class LookupRequest(_Model):
    """What the gateway asks a connector: identifiers or demographics, the fields it needs, and why.

    With `demographics`, a connector searches its records for candidates as well as looking up the
    identifiers; `fields` then always includes the ones the gateway needs to score candidates.
    """

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    request_id: str = Field(min_length=1, max_length=64)
    deadline: datetime
    purpose: str
    caller: Caller
    identifiers: Identifiers
    demographics: Demographics | None = None
    fields: list[FieldId]

    @field_validator("identifiers")
    @classmethod
    def _asks_by_no_former_upn(cls, identifiers: Identifiers) -> Identifiers:
        """A former UPN is what a record says of the child, not something to look up by: the
        gateway asks by the UPN it was given, and a connector matches that against its former
        UPNs if it holds any."""
        if identifiers.former_upns is not None:
            raise ValueError("former_upns is a record's identifier; a request asks by upn")
        return identifiers


class PersonName(_Model):
    """A child's name as a record holds it. `known_as` is any other given name the child goes by
    (a school's preferred name, say); left out of the JSON when empty, as before it existed."""

    given: str
    family: str
    former_family: list[str] = Field(default_factory=list)
    known_as: list[str] = Field(default_factory=list, exclude_if=_empty)


class Address(_Model):
    lines: list[str]
    postcode: str


class School(_Model):
    urn: str
    name: str
    phone: str | None = None


class GpPractice(_Model):
    ods_code: str
    name: str
    phone: str | None = None


class Contact(_Model):
    """A person or desk to reach; used for practitioners, carers and brokers."""

    name: str
    role: str | None = None
    phone: str | None = None
    email: str | None = None


class Carer(_Model):
    name: str
    relationship: str
    parental_responsibility: bool
    phone: str | None = None


class Involvement(_Model):
    """Someone working with the child. For a sensitive service, the provider fields and the dates
    are left out unless `sensitive_service_details` was requested, and `broker` says who brokers
    contact. An involvement whose `service`, `organisation` or practitioner's role names a service
    in the sensitive-service vocabulary (connectors.sensitive_services) is sensitive even when
    `sensitive` is false: the SDK and the gateway mark it so."""

    service: str | None
    organisation: str | None = None
    practitioner: Contact | None = None
    lead: bool = False
    since: date | None = None
    until: date | None = None
    sensitive: bool = False
    broker: Contact | None = None


class Indicators(_Model):
    child_protection_plan: bool | None = None
    looked_after: bool | None = None
    child_in_need: bool | None = None
    early_help: bool | None = None


class RecordFlags(_Model):
    """Restrictions the holding agency has placed on the record (PDS 'R' flag, LA shielding)."""

    restricted: bool = False
    shielded: bool = False


class ConnectorRecord(_Model):
    """One agency record about one child. Fields the gateway did not request are null."""

    record_id: str = Field(min_length=1, max_length=128)
    identifiers: Identifiers
    name: PersonName | None = None
    date_of_birth: date | None = None
    sex: Sex | None = None
    address: Address | None = None
    school: School | None = None
    gp_practice: GpPractice | None = None
    carers: list[Carer] | None = None
    involvements: list[Involvement] | None = None
    indicators: Indicators | None = None
    flags: RecordFlags = Field(default_factory=RecordFlags)
    as_of: datetime


MAX_ANSWER_BYTES: Final = 2 * 1024 * 1024
"""The most of a connector's answer the gateway reads: fifty records with their contacts are tens
of kilobytes; an answer that goes on past this is refused as malformed, unread."""
MAX_RECORDS: Final = 50
"""The most records one answer may hold: a child's records, or a demographic search's handful of
candidates (the SDK's CandidateIndex returns at most 10). The gateway scores every pair of one
source's records, so an answer of thousands - a connector gone wrong, or hostile - would hold the
gateway's CPU for seconds; it is refused as malformed instead."""


class LookupResponse(_Model):
    protocol_version: Literal["1"] = PROTOCOL_VERSION
    request_id: str
    source: str
    records: list[ConnectorRecord]


class ErrorCode(StrEnum):
    """Typed connector errors; the gateway maps each to a source status."""

    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    FORBIDDEN = "FORBIDDEN"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class ErrorDetail(_Model):
    code: ErrorCode
    message: str


class ErrorResponse(_Model):
    protocol_version: Literal["1"] = PROTOCOL_VERSION
    error: ErrorDetail
