"""Writing connector records as the FHIR resources PDS and CP-IS serve: `Patient`,
`RelatedPerson` and a CP-IS `Flag` per plan.

This is how the sandbox is loaded from the synthetic population (`childlookup synth` writes the
health records; social care records carry the plan indicators), and the other half of the round
trip the tests check: a record written here and read back through the connector is the record, for
every field PDS carries. What PDS has no place for is not written: involvements (PDS knows no
practitioners), the practice's phone, the school.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.relatedperson import RelatedPerson

from connectors.backend import today_in_england
from connectors.fhir.plans import CpisPlan, ResponsibleAuthority
from connectors.fhir.terminology import (
    CONFIDENTIALITY_SYSTEM,
    CPIS_CATEGORY,
    EMERGENCY_DUTY_PURPOSE,
    GUARDIAN_ROLE,
    NHS_NUMBER_SYSTEM,
    ODS_SYSTEM,
    PATIENT_FLAG_CATEGORY_SYSTEM,
    PERSONAL_ROLE,
    PLAN_CODES,
    RELATIONSHIP_CODES,
    RELATIONSHIP_ROLE_SYSTEM,
    RELATIONSHIP_TYPE_SYSTEM,
    SNOMED_SYSTEM,
    Confidentiality,
    PlanKind,
)
from connectors.protocol import Carer, ConnectorRecord

Json = dict[str, Any]

_DISPLAY: Final = {
    Confidentiality.UNRESTRICTED: "unrestricted",
    Confidentiality.RESTRICTED: "restricted",
    Confidentiality.VERY_RESTRICTED: "very restricted",
    Confidentiality.REDACTED: "redacted",
}
_AUTHORITY_ID: Final = "responsible-authority"


def patient_resource(record: ConnectorRecord, label: Confidentiality | None = None) -> Json:
    """`record` as a PDS `Patient` holding everything PDS could hold about it (the server removes
    what a restriction hides when it serves it). `label` overrides the security label the record's
    flags give (U, or R when restricted), for V and REDACTED.

    Raises ValueError for a record without an NHS number: PDS holds nobody without one.
    """
    number = _nhs_number(record)
    level = label or (
        Confidentiality.RESTRICTED if record.flags.restricted else Confidentiality.UNRESTRICTED
    )
    resource: Json = {
        "resourceType": "Patient",
        "id": number,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": number}],
        "meta": {
            "versionId": "1",
            "lastUpdated": record.as_of.isoformat(),
            "security": [
                {"system": CONFIDENTIALITY_SYSTEM, "code": level.value, "display": _DISPLAY[level]}
            ],
        },
    }
    if record.name is not None:
        name = record.name
        given = name.given.split()
        resource["name"] = [
            {"use": "usual", "given": given, "family": name.family},
            *({"use": "old", "given": given, "family": f} for f in name.former_family),
            *(
                {"use": "nickname", "given": k.split(), "family": name.family}
                for k in name.known_as
            ),
        ]
    if record.sex is not None:
        resource["gender"] = record.sex.value
    if record.date_of_birth is not None:
        resource["birthDate"] = record.date_of_birth.isoformat()
    if record.address is not None:
        resource["address"] = [
            {"use": "home", "line": record.address.lines, "postalCode": record.address.postcode}
        ]
    if record.gp_practice is not None:
        gp = record.gp_practice
        resource["generalPractitioner"] = [
            {
                "type": "Organization",
                "identifier": {"system": ODS_SYSTEM, "value": gp.ods_code},
                "display": gp.name,
            }
        ]
    return _validated(Patient, resource)


def related_person_resources(record: ConnectorRecord) -> list[Json]:
    """The record's carers as PDS `RelatedPerson`s, in order. The relationship is written as a PDS
    type code when it has one, always with the words as `text`; parental responsibility as the
    "Guardian" role, since PDS records nothing closer."""
    number = _nhs_number(record)
    return [
        _validated(RelatedPerson, _related_person(number, position, carer))
        for position, carer in enumerate(record.carers or [], start=1)
    ]


def _related_person(number: str, position: int, carer: Carer) -> Json:
    *given, family = carer.name.split() or [carer.name]
    codings = [
        {
            "system": RELATIONSHIP_ROLE_SYSTEM,
            "code": GUARDIAN_ROLE if carer.parental_responsibility else PERSONAL_ROLE,
        }
    ]
    code = RELATIONSHIP_CODES.get(carer.relationship.casefold())
    if code is not None:
        codings.append({"system": RELATIONSHIP_TYPE_SYSTEM, "code": code})
    resource: Json = {
        "resourceType": "RelatedPerson",
        "id": f"{number}-{position}",
        # As PDS writes one: `patient` is the related person's own record (none here), never
        # the child's.
        "patient": {"type": "Patient"},
        "active": True,
        "name": [{"use": "usual", "given": given, "family": family}],
        "relationship": [{"coding": codings, "text": carer.relationship}],
    }
    if carer.phone is not None:
        resource["telecom"] = [{"system": "phone", "value": carer.phone, "use": "home"}]
    return resource


def flag_resource(plan: CpisPlan, flag_id: str) -> Json:
    """One CP-IS plan as a `Flag`: category CP-IS, the plan's SNOMED CT code, its period, and the
    responsible authority contained and referenced as the author."""
    code, display = PLAN_CODES[plan.kind]
    period: Json = {}
    if plan.start is not None:
        period["start"] = plan.start.isoformat()
    if plan.end is not None:
        period["end"] = plan.end.isoformat()
    resource: Json = {
        "resourceType": "Flag",
        "id": flag_id,
        "status": "active" if plan.end is None or plan.end >= today_in_england() else "inactive",
        "category": [
            {
                "coding": [
                    {
                        "system": PATIENT_FLAG_CATEGORY_SYSTEM,
                        "code": CPIS_CATEGORY,
                        "display": "Child Protection - Information Sharing Flag",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": SNOMED_SYSTEM, "code": code, "display": display}]},
        "subject": {
            "reference": f"Patient/{plan.nhs_number}",
            "identifier": {"system": NHS_NUMBER_SYSTEM, "value": plan.nhs_number},
        },
    }
    if period:
        resource["period"] = period
    if plan.authority is not None:
        resource["contained"] = [_organisation(plan.authority)]
        resource["author"] = {"reference": f"#{_AUTHORITY_ID}", "display": plan.authority.name}
    return _validated(Flag, resource)


def _organisation(authority: ResponsibleAuthority) -> Json:
    organisation: Json = {
        "resourceType": "Organization",
        "id": _AUTHORITY_ID,
        "name": authority.name,
    }
    if authority.ods_code is not None:
        organisation["identifier"] = [{"system": ODS_SYSTEM, "value": authority.ods_code}]
    if authority.office_hours_phone is not None:
        organisation["telecom"] = [
            {"system": "phone", "value": authority.office_hours_phone, "use": "work"}
        ]
    if authority.emergency_duty_phone is not None:
        organisation["contact"] = [
            {
                "purpose": {"text": EMERGENCY_DUTY_PURPOSE},
                "telecom": [{"system": "phone", "value": authority.emergency_duty_phone}],
            }
        ]
    return organisation


def plans_from_record(
    record: ConnectorRecord, authority: ResponsibleAuthority, *, start: date | None = None
) -> list[CpisPlan]:
    """The CP-IS plans a social care record's indicators stand for, as the local authority would
    upload them: a child protection plan when `child_protection_plan` is true, a looked-after plan
    when `looked_after` is. The start is `start`, else the record's lead involvement's `since`,
    else the record's `as_of` date. A record without an NHS number gives none: CP-IS holds plans
    by NHS number only."""
    number = record.identifiers.nhs_number
    flags = record.indicators
    if number is None or flags is None:
        return []
    lead = next((i.since for i in record.involvements or [] if i.lead and i.since), None)
    began = start or lead or record.as_of.date()
    kinds = [
        kind
        for kind, held in (
            (PlanKind.CHILD_PROTECTION, flags.child_protection_plan),
            (PlanKind.LOOKED_AFTER, flags.looked_after),
        )
        if held
    ]
    return [CpisPlan(number, kind, began, authority) for kind in kinds]


def _nhs_number(record: ConnectorRecord) -> str:
    number = record.identifiers.nhs_number
    if number is None:
        raise ValueError(f"record {record.record_id} has no NHS number, which PDS requires")
    return number


def _validated(model: type[Patient] | type[RelatedPerson] | type[Flag], resource: Json) -> Json:
    """`resource` checked against the R4B model, so the sandbox never serves invalid FHIR."""
    model.model_validate(resource)
    return resource
