"""The code systems and codes the PDS and CP-IS FHIR APIs use, in one place.

Both sides of the wire - the connector reading resources and the sandbox writing them - take their
systems and codes from here, so a code spelt one way when written cannot be read another way.
The PDS ones are those NHS England publishes for the Personal Demographics Service FHIR API; the
CP-IS plan codes are SNOMED CT concepts for the two plans a child lookup cares about (see
`PLAN_CODES` for what is assumed there).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

NHS_NUMBER_SYSTEM: Final = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM: Final = "https://fhir.nhs.uk/Id/ods-organization-code"
CONFIDENTIALITY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SPINE_ERROR_SYSTEM: Final = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"
RELATIONSHIP_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
RELATIONSHIP_ROLE_SYSTEM: Final = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdditionalRelatedPersonRole"
)
SNOMED_SYSTEM: Final = "http://snomed.info/sct"
PATIENT_FLAG_CATEGORY_SYSTEM: Final = "https://fhir.nhs.uk/England/CodeSystem/PatientFlagCategory"
CPIS_CATEGORY: Final = "CP-IS"
PDS_MAX_RESULTS: Final = 50
"""The most matches one PDS search returns (`_max-results` is 1 to 50); more is TOO_MANY_MATCHES."""
EMERGENCY_DUTY_PURPOSE: Final = "Emergency Duty Team phone number"
"""`Organization.contact.purpose.text` naming the authority's out-of-hours number, as NHS England's
Digital Child Health specification sets it for the same CP-IS data item."""

GUARDIAN_ROLE: Final = "Guardian"
PERSONAL_ROLE: Final = "Personal"


class Confidentiality(StrEnum):
    """PDS `meta.security` codes: how much of the record PDS releases."""

    UNRESTRICTED = "U"
    RESTRICTED = "R"
    """Location removed: address, telecom, contacts and registered GP."""
    VERY_RESTRICTED = "V"
    """Everything restricted removes, and the names too."""
    REDACTED = "REDACTED"
    """An invalidated record: never shown, answered as not found."""


class SpineError(StrEnum):
    """The `Spine-ErrorOrWarningCode` codes PDS and CP-IS answer with, the ones this code uses."""

    TOO_MANY_MATCHES = "TOO_MANY_MATCHES"
    INVALID_SEARCH_DATA = "INVALID_SEARCH_DATA"
    INVALID_VALUE = "INVALID_VALUE"
    INVALID_RESOURCE_ID = "INVALID_RESOURCE_ID"
    ADDITIONAL_PROPERTIES = "ADDITIONAL_PROPERTIES"
    ACCESS_DENIED = "ACCESS_DENIED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    INVALIDATED_RESOURCE = "INVALIDATED_RESOURCE"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    UNABLE_TO_CALL_SERVICE = "UNABLE_TO_CALL_SERVICE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class PlanKind(StrEnum):
    """The CP-IS plans a child lookup reports on."""

    CHILD_PROTECTION = "child_protection"
    LOOKED_AFTER = "looked_after"


PLAN_CODES: Final = {
    PlanKind.CHILD_PROTECTION: ("1064311000000109", "Child protection plan"),
    PlanKind.LOOKED_AFTER: ("764841000000100", "Looked after child"),
}
"""SNOMED CT code and display of each plan's `Flag.code`: the concepts NHS England's Digital Child
Health specification uses for the same two CP-IS items. CP-IS also holds unborn-child plans, against
the mother's NHS number; they are not a child's indicators and a flag with any other code is not
read."""

RELATIONSHIP_CODES: Final = {
    "mother": "MTH",
    "father": "FTH",
    "parent": "PRN",
    "stepmother": "STPPRN",
    "stepfather": "STPPRN",
    "step-parent": "STPPRN",
    "foster carer": "PRNFOST",
    "foster mother": "PRNFOST",
    "foster father": "PRNFOST",
    "sister": "SIS",
    "brother": "BRO",
    "grandmother": "FAMMEMB",
    "grandfather": "FAMMEMB",
    "aunt": "FAMMEMB",
    "uncle": "FAMMEMB",
    "carer": "Carer",
    "guardian": "Guardian",
}
"""PDS relationship type codes for the relationships agencies write in words; a relationship not
listed is sent as text only."""

RELATIONSHIP_WORDS: Final = {
    "MTH": "Mother",
    "FTH": "Father",
    "PRN": "Parent",
    "STPPRN": "Step-parent",
    "PRNFOST": "Foster parent",
    "SIS": "Sister",
    "BRO": "Brother",
    "FAMMEMB": "Family member",
    "Carer": "Carer",
    "Guardian": "Guardian",
    "N": "Next of kin",
}
"""Words for a relationship PDS sends as a code only."""
