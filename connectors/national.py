"""The national model's names: agency kinds, what each kind holds, and how agencies are named and
routed to.

At national scale a lookup asks two identity sources (the `health` spine and the `education` pupil
register) and then only the agencies that may hold a record about the child: local authorities
(`social_care`), GP practices and schools, each named from its national code. The synthetic
national population, the connectors that serve it, the locator and the gateway's routing all
agree on these names through this module, which imports nothing from the gateway or the locator.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from connectors.protocol import FieldId

AgencyKind = Literal["social_care", "gp_practice", "school"]
AGENCY_KINDS: Final[tuple[AgencyKind, ...]] = ("social_care", "gp_practice", "school")

IdentitySource = Literal["health", "education"]
IDENTITY_SOURCES: Final[tuple[IdentitySource, ...]] = ("health", "education")
"""Asked on every lookup: every child is on the spine, every pupil on the register."""

_PERSON: Final = (
    FieldId.NHS_NUMBER,
    FieldId.NAME,
    FieldId.DATE_OF_BIRTH,
    FieldId.SEX,
    FieldId.ADDRESS,
)

NATIONAL_KINDS: Final[Mapping[str, tuple[FieldId, ...]]] = MappingProxyType(
    {
        "health": (*_PERSON, FieldId.GP_PRACTICE, FieldId.CARERS),
        "education": (*_PERSON, FieldId.SCHOOL),
        "social_care": (
            *_PERSON,
            FieldId.CARERS,
            FieldId.INVOLVEMENTS,
            FieldId.CHILD_PROTECTION_PLAN,
            FieldId.LOOKED_AFTER,
            FieldId.CHILD_IN_NEED,
            FieldId.EARLY_HELP,
        ),
        "gp_practice": (*_PERSON, FieldId.GP_PRACTICE, FieldId.INVOLVEMENTS),
        "school": (*_PERSON, FieldId.SCHOOL, FieldId.CARERS, FieldId.INVOLVEMENTS),
    }
)
"""The fields each agency kind and identity source provides, in the national simulation."""

_NAME_PREFIX: Final[Mapping[AgencyKind, str]] = {
    "social_care": "la_",
    "gp_practice": "gp_",
    "school": "school_",
}
_ROUTE_PREFIX: Final[Mapping[AgencyKind, str]] = {
    "social_care": "la",
    "gp_practice": "ods",
    "school": "urn",
}
_ORGANISATION_PREFIX: Final[Mapping[AgencyKind, str]] = {
    "social_care": "LA",
    "gp_practice": "ODS",
    "school": "URN",
}


def agency_name(kind: AgencyKind, code: str) -> str:
    """The agency's source name: `la_e0800001`, `gp_y00001`, `school_100001`."""
    return f"{_NAME_PREFIX[kind]}{code.lower()}"


def route_key(kind: AgencyKind, code: str) -> str:
    """The key an identity route reaches the agency by: `la:E0800001`, `ods:Y00001`,
    `urn:100001` (the LA of the home postcode, the registered practice, the school on roll)."""
    return f"{_ROUTE_PREFIX[kind]}:{code.upper()}"


def organisation(kind: AgencyKind, code: str) -> str:
    """The organisation code its practitioners sign in with: `LA-E0800001`, `ODS-Y00001`,
    `URN-100001`."""
    return f"{_ORGANISATION_PREFIX[kind]}-{code.upper()}"


def postcode_district(postcode: str) -> str:
    """The outward code of a postcode ("LS1" of "ls1 4ap"), by which a home address routes to its
    local authority. The inward code is always three characters, so a postcode written without
    its space splits as well."""
    compact = "".join(postcode.split()).upper()
    return compact[:-3]


class NationalAgency(BaseModel):
    """One agency of the national simulation, as `national.json` lists it: its source name, kind,
    national code, the name practitioners know it by, the organisation code its staff sign in
    with, and the local authority it lies in (its own code, for an authority)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: AgencyKind
    code: str
    display_name: str
    organisation: str
    local_authority: str
