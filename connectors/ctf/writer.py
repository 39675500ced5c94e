"""Writing connector records as Common Transfer Files: one file per school, as a school's system
sends its roll to the local authority.

For tests and the demo: the synthetic population's education records become the folder of CTFs the
education connector serves, and their schools' safeguarding leads the school contacts file. A CTF
carries less than a record, so a round trip keeps only what CTF holds: the NHS number, the record
id (it becomes the UPN), more than one former UPN, former surname or preferred forename,
relationships CBDS has no code for (a grandmother comes back a relative) and each record's own
as-of (the file's time is every record's) do not survive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final
from xml.etree.ElementTree import Element, SubElement, indent, tostring

from connectors.ctf.codes import LA_ESTAB, RELATIONSHIP_CODES, SEX_TO_CODE
from connectors.ctf.reader import CURRENT_SCHOOL_SERVICE, UK_TIME
from connectors.ctf.schools import SafeguardingLead, SchoolContact, SchoolContacts
from connectors.protocol import Carer, ConnectorRecord, School

CTF_VERSION: Final = "25.0"
DEFAULT_LEA: Final = "383"
"""The LA number written when none is given (the synthetic population's, Leeds)."""

_TITLES: Final = frozenset({"Mr", "Mrs", "Miss", "Ms", "Mx", "Dr"})
_MAX_ADDRESS_LINES: Final = 5


def write_ctf(
    records: Sequence[ConnectorRecord],
    *,
    school: School,
    created: datetime,
    lea: str = DEFAULT_LEA,
) -> bytes:
    """One CTF from `school` to its local authority holding `records` (its pupils), made at
    `created`. The school's establishment number is not in a record, so the last four digits of
    its URN stand in for it (fine for synthetic schools, which have no real DfE number).

    Raises ValueError for a record without a UPN: a CTF pupil has one.
    """
    root = Element("CTfile")
    header = SubElement(root, "Header")
    _leaf(header, "DocumentName", "Common Transfer File")
    _leaf(header, "CTFversion", CTF_VERSION)
    local = created.astimezone(UK_TIME).replace(tzinfo=None)
    _leaf(header, "DateTime", local.isoformat(timespec="seconds"))
    _leaf(header, "DocumentQualifier", "full")
    _leaf(header, "SupplierID", "childlookup")
    source = SubElement(header, "SourceSchool")
    _leaf(source, "LEA", lea)
    _leaf(source, "Estab", _estab(school))
    _leaf(source, "URN", school.urn)
    _leaf(source, "SchoolName", school.name)
    _leaf(source, "AcademicYear", str(local.year if local.month >= 9 else local.year - 1))
    destination = SubElement(header, "DestSchool")
    _leaf(destination, "LEA", lea)
    _leaf(destination, "Estab", LA_ESTAB)
    pupils = SubElement(root, "CTFpupilData")
    for record in records:
        _pupil(SubElement(pupils, "Pupil"), record, school, lea)
    indent(root)
    return bytes(tostring(root, encoding="utf-8", xml_declaration=True))


def write_ctf_folder(
    records: Iterable[ConnectorRecord], folder: Path, *, lea: str = DEFAULT_LEA
) -> list[Path]:
    """Write `records` into `folder` as one CTF per school, named as the DfE names a school's CTF
    to its authority (`<LA><estab>_CTF_<LA>LLLL_001.xml`), each made at its newest record's as-of.
    Returns the files written.

    Raises ValueError for a record without a school or a UPN.
    """
    by_school: defaultdict[str, list[ConnectorRecord]] = defaultdict(list)
    schools: dict[str, School] = {}
    for record in records:
        if record.school is None:
            raise ValueError(f"record {record.record_id} names no school to write it under")
        schools.setdefault(record.school.urn, record.school)
        by_school[record.school.urn].append(record)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for urn, pupils in sorted(by_school.items()):
        school = schools[urn]
        path = folder / f"{lea}{_estab(school)}_CTF_{lea}{LA_ESTAB}_001.xml"
        created = max(record.as_of for record in pupils)
        path.write_bytes(write_ctf(pupils, school=school, created=created, lea=lea))
        written.append(path)
    return written


def school_contacts(records: Iterable[ConnectorRecord]) -> SchoolContacts:
    """The school contacts file the records imply: each school's name and phone, and the
    safeguarding lead their school-safeguarding involvement names."""
    found: dict[str, SchoolContact] = {}
    for record in records:
        if record.school is None or record.school.urn in found:
            continue
        lead = next(
            (
                involvement.practitioner
                for involvement in record.involvements or ()
                if involvement.service == CURRENT_SCHOOL_SERVICE and involvement.practitioner
            ),
            None,
        )
        found[record.school.urn] = SchoolContact(
            name=record.school.name,
            phone=record.school.phone,
            safeguarding_lead=(
                None
                if lead is None
                else SafeguardingLead(name=lead.name, phone=lead.phone, email=lead.email)
            ),
        )
    return SchoolContacts(schools=found)


def write_school_contacts(records: Iterable[ConnectorRecord], path: Path) -> None:
    """Write `school_contacts(records)` as the JSON file `create_ctf_app` reads."""
    path.write_text(
        school_contacts(records).model_dump_json(indent=2, exclude_none=True) + "\n",
        encoding="utf-8",
    )


def _estab(school: School) -> str:
    return school.urn[-4:].rjust(4, "0")


def _leaf(parent: Element, tag: str, text: str | None) -> None:
    if text is not None:
        SubElement(parent, tag).text = text


def _pupil(pupil: Element, record: ConnectorRecord, school: School, lea: str) -> None:
    upn = record.identifiers.upn
    if upn is None:
        raise ValueError(f"record {record.record_id} has no UPN, which every CTF pupil needs")
    _leaf(pupil, "UPN", upn)
    name = record.name
    if name is not None:
        _leaf(pupil, "Surname", name.family)
        _leaf(pupil, "Forename", name.given)
    if record.date_of_birth is not None:
        _leaf(pupil, "DOB", record.date_of_birth.isoformat())
    if record.sex is not None:
        _leaf(pupil, "Sex", SEX_TO_CODE[record.sex])
    former_upn = next(iter(record.identifiers.former_upns or ()), None)
    if former_upn is not None or (name is not None and (name.former_family or name.known_as)):
        details = SubElement(pupil, "BasicDetails")
        _leaf(details, "FormerUPN", former_upn)
        if name is not None:
            _leaf(details, "FormerSurname", next(iter(name.former_family), None))
            _leaf(details, "PreferredForename", next(iter(name.known_as), None))
    if record.address is not None:
        address = SubElement(pupil, "Address")
        lines = SubElement(address, "AddressLines")
        kept = record.address.lines[: _MAX_ADDRESS_LINES - 1]
        rest = record.address.lines[_MAX_ADDRESS_LINES - 1 :]
        for number, line in enumerate([*kept, *([", ".join(rest)] if rest else [])], start=1):
            _leaf(lines, f"AddressLine{number}", line)
        _leaf(address, "PostCode", record.address.postcode)
    if record.carers:
        contacts = SubElement(pupil, "Contacts")
        for order, carer in enumerate(record.carers, start=1):
            _contact(SubElement(contacts, "Contact"), order, carer)
    since = next(
        (
            involvement.since
            for involvement in record.involvements or ()
            if involvement.service == CURRENT_SCHOOL_SERVICE and involvement.since
        ),
        None,
    )
    if since is not None:
        entry = SubElement(SubElement(pupil, "SchoolHistory"), "School")
        _leaf(entry, "LEA", lea)
        _leaf(entry, "Estab", _estab(school))
        _leaf(entry, "SchoolName", school.name)
        _leaf(entry, "EntryDate", since.isoformat())


def _contact(contact: Element, order: int, carer: Carer) -> None:
    words = carer.name.split()
    title = words.pop(0) if len(words) > 1 and words[0] in _TITLES else None
    surname = words.pop() if words else None
    _leaf(contact, "Order", str(order))
    _leaf(contact, "Title", title)
    _leaf(contact, "Surname", surname)
    _leaf(contact, "Forename", " ".join(words) or None)
    _leaf(contact, "Relationship", RELATIONSHIP_CODES.get(carer.relationship.casefold(), "OTH"))
    _leaf(contact, "Responsibility", "true" if carer.parental_responsibility else "false")
    if carer.phone is not None:
        phone = SubElement(SubElement(contact, "Phones"), "Phone")
        _leaf(phone, "TelephoneType", "M" if carer.phone.startswith("07") else "H")
        _leaf(phone, "PhoneNo", carer.phone)
