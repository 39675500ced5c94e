"""Whose a resource is: a `Patient`'s NHS number, and whether a reference names that patient.

The connector attaches nothing to a child on a server's say-so alone. A patient is the child with
an NHS number only when its NHS-number identifier says so - never its resource id, which PDS
happens to set to the number but a server may set to anything; and a `Flag` or `RelatedPerson` is
about the child only when its subject reference names that number. Something that names no one,
or names two different people, is about no one the connector can vouch for.
"""

from __future__ import annotations

import re
from typing import Final

from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference

from connectors.check_digits import is_nhs_number
from connectors.fhir.terminology import NHS_NUMBER_SYSTEM

_PATIENT_REFERENCE: Final = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")
"""A literal reference to a Patient, relative ("Patient/9000000009") or absolute, any version."""


def nhs_number(patient: Patient) -> str | None:
    """The patient's NHS number: the one valid NHS number its NHS-number identifiers give; None
    when they give none, an invalid one, or two different ones (which of them would be the
    child's is anyone's guess)."""
    numbers = {
        str(identifier.value)
        for identifier in patient.identifier or []
        if identifier.system == NHS_NUMBER_SYSTEM and identifier.value
    }
    if len(numbers) != 1:
        return None
    [number] = numbers
    return number if is_nhs_number(number) else None


def refers_to(reference: Reference | None, number: str) -> bool:
    """Whether `reference` names the patient with NHS number `number` and no one else: its
    literal reference (`Patient/{number}`) and its NHS-number identifier, each where given,
    name `number`, and at least one is given. A contained ("#...") or a display-only reference
    names no one."""
    if reference is None:
        return False
    named: list[str | None] = []
    if reference.reference:
        literal = _PATIENT_REFERENCE.search(str(reference.reference))
        named.append(literal.group(1) if literal else None)
    identifier = reference.identifier
    if identifier is not None and identifier.system == NHS_NUMBER_SYSTEM:
        named.append(str(identifier.value) if identifier.value else None)
    return bool(named) and all(name == number for name in named)
