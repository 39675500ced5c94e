"""Reading PDS resources into connector records: a `Patient` and its `RelatedPerson`s become one
`ConnectorRecord`.

What PDS does not hold, the record does not claim: an element PDS left out is a field left out
(None), never an empty value. The restriction codes in `meta.security` become the record's flags,
and location is dropped here too for a restricted record (and the names for a very restricted
one), should a server ever send it, so that what the gateway receives never depends on the server
having removed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Final

from fhir.resources.R4B.address import Address as FhirAddress
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.relatedperson import RelatedPerson

from connectors.fhir.periods import day_span
from connectors.fhir.subjects import nhs_number
from connectors.fhir.terminology import (
    GUARDIAN_ROLE,
    ODS_SYSTEM,
    RELATIONSHIP_WORDS,
    Confidentiality,
)
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    GpPractice,
    Identifiers,
    PersonName,
    RecordFlags,
    Sex,
)

_SEX: Final = {"female": Sex.FEMALE, "male": Sex.MALE, "unknown": Sex.UNKNOWN, "other": Sex.UNKNOWN}
"""FHIR administrative gender to the protocol's sex; the protocol has no "other", and "unknown" is
the nearest thing it says."""
_CURRENT_NAME_USES: Final = ("usual", "official", None)
_RESTRICTED: Final = frozenset({Confidentiality.RESTRICTED, Confidentiality.VERY_RESTRICTED})


def confidentiality(patient: Patient) -> Confidentiality:
    """The patient's PDS security label; a record carrying none is unrestricted."""
    labels = {coding.code for coding in (patient.meta.security or [])} if patient.meta else set()
    for level in (
        Confidentiality.REDACTED,
        Confidentiality.VERY_RESTRICTED,
        Confidentiality.RESTRICTED,
    ):
        if level in labels:
            return level
    return Confidentiality.UNRESTRICTED


def record_from_patient(
    patient: Patient,
    related: Sequence[RelatedPerson] | None,
    *,
    record_id: str,
    today: date,
    fetched_at: datetime,
) -> ConnectorRecord | None:
    """The connector record `record_id` for `patient` and its related people (`related`, None
    when they were not asked for; the caller has checked they are this patient's), or None for a
    redacted record, which must be answered as not found. The NHS number is the patient's own
    (`connectors.fhir.subjects.nhs_number`), absent when it has no usable one.

    `as_of` is the record's `meta.lastUpdated` when PDS gives it, else `fetched_at`. `today`
    decides which names and addresses are current. A birth date FHIR gives only in part ("2015",
    "2015-06") is no date of birth: the protocol's is a day, and a guessed day would match or
    miss the wrong children.
    """
    level = confidentiality(patient)
    if level == Confidentiality.REDACTED:
        return None
    restricted = level in _RESTRICTED
    updated = patient.meta.lastUpdated if patient.meta else None
    born = patient.birthDate
    return ConnectorRecord(
        record_id=record_id,
        identifiers=Identifiers(nhs_number=nhs_number(patient)),
        # V removes the names too: never sent on the server's word that it removed them.
        name=None
        if level == Confidentiality.VERY_RESTRICTED
        else _person_name(patient.name or [], today),
        date_of_birth=born if isinstance(born, date) else None,
        sex=_SEX.get(str(patient.gender)) if patient.gender else None,
        address=None if restricted else _home_address(patient.address or [], today),
        gp_practice=None if restricted else _gp_practice(patient),
        carers=None if restricted or not related else [_carer(person) for person in related],
        flags=RecordFlags(restricted=restricted),
        as_of=_aware(updated) if isinstance(updated, datetime) else fetched_at,
    )


def _person_name(names: Sequence[HumanName], today: date) -> PersonName | None:
    """The usual name, with former family names (use "old", or "maiden") and known-as given names
    (use "nickname"). None when PDS sends no current name - a very restricted record."""
    current = [n for n in names if n.use in _CURRENT_NAME_USES and _in_force(n.period, today)]
    usual = next((n for n in current if n.family and n.given), None)
    if usual is None:
        return None
    former = _unique(
        str(n.family)
        for n in names
        if n.use in ("old", "maiden") and n.family and n.family != usual.family
    )
    known_as = _unique(_given(n) for n in names if n.use == "nickname" and n.given)
    return PersonName(
        given=_given(usual),
        family=str(usual.family),
        former_family=former,
        known_as=known_as,
    )


def _given(name: HumanName) -> str:
    """All given names as one ("Anne Marie"), as the protocol holds them."""
    return " ".join(str(part) for part in name.given or [] if part)


def _home_address(addresses: Sequence[FhirAddress], today: date) -> Address | None:
    """The current home address (or, failing one marked home, the first current address); None
    when there is none with a postcode, which the protocol's address requires."""
    current = [a for a in addresses if a.postalCode and _in_force(a.period, today)]
    chosen = next((a for a in current if a.use == "home"), current[0] if current else None)
    if chosen is None:
        return None
    return Address(lines=[str(line) for line in chosen.line or []], postcode=str(chosen.postalCode))


def _gp_practice(patient: Patient) -> GpPractice | None:
    """The registered practice's ODS code. PDS holds only the code; the practice's name is the
    reference's `display` when the server gives one, else the code itself (looking the name up in
    the Organisation Data Service is not done here)."""
    for reference in patient.generalPractitioner or []:
        identifier = reference.identifier
        if identifier is not None and identifier.value and identifier.system in (ODS_SYSTEM, None):
            code = str(identifier.value)
            return GpPractice(ods_code=code, name=str(reference.display or code))
    return None


def _carer(person: RelatedPerson) -> Carer:
    """A related person as a carer. PDS records no parental responsibility; the "Guardian" role is
    the nearest it has, and is read as it."""
    codings = [coding for concept in person.relationship or [] for coding in concept.coding or []]
    texts = [str(concept.text) for concept in person.relationship or [] if concept.text]
    worded = [RELATIONSHIP_WORDS[str(c.code)] for c in codings if str(c.code) in RELATIONSHIP_WORDS]
    relationship = texts[0] if texts else (worded[0] if worded else "Related person")
    name = next(iter(person.name or []), None)
    phone = next(
        (str(t.value) for t in person.telecom or [] if t.system == "phone" and t.value), None
    )
    return Carer(
        name=_spoken(name) if name is not None else "Name not recorded",
        relationship=relationship,
        parental_responsibility=any(c.code == GUARDIAN_ROLE for c in codings),
        phone=phone,
    )


def _spoken(name: HumanName) -> str:
    parts = [*(name.given or []), *([name.family] if name.family else [])]
    return " ".join(str(part) for part in parts) or str(name.text or "Name not recorded")


def _in_force(period: Period | None, today: date) -> bool:
    """Whether a name or address is current: its period, if any, may not have ended before
    today (an end given only to the month or year: not before that month or year is out)."""
    end = None if period is None else day_span(period.end)
    return end is None or end[1] >= today


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
