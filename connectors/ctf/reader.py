"""Reading one Common Transfer File (CTF) into the connector's records.

A CTF is the XML a school's management information system writes when pupils leave it (DfE
specification, CTF 18 onwards: `CTfile` / `Header` / `CTFpupilData` / `Pupil`). One file holds one
school's pupils and a header saying who sent it, to whom, and when. What the connector takes from
each pupil: UPN, legal names (`Surname`, `Forename`), `PreferredForename` (as known-as),
`FormerSurname` and `PreferredSurname` (as other family names: the protocol has no other place for a
family name in use, and the gateway matches these against a searched family name), `DOB`,
`Sex` (`Gender` before CTF 24), `Address` (BS7666 or address lines, with `PostCode`), the contacts
who care for the child, and the school (see `placement`). Elements of `BasicDetails` are read there
or directly under `Pupil`, since suppliers have put them in both places over the versions.

CTF files come from outside the authority (schools' systems, the DfE's school-to-school service),
so they are parsed with defusedxml, which refuses DTDs and entity declarations: a CTF never needs
one, and an entity can expand a small file into gigabytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from xml.etree.ElementTree import Element, ParseError
from zoneinfo import ZoneInfo

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError

from connectors.backend import summarise_validation_error
from connectors.ctf.codes import CARER_RELATIONSHIPS, NOT_A_SCHOOL, RELATIONSHIPS, SEX_FROM_CODE
from connectors.ctf.schools import (
    NO_SCHOOL_CONTACTS,
    SAFEGUARDING_LEAD_ROLE,
    SchoolContact,
    SchoolContacts,
)
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    Identifiers,
    Involvement,
    PersonName,
    School,
    Sex,
)

UK_TIME: Final = ZoneInfo("Europe/London")
"""CTF header times carry no offset; schools' systems write the local time in England and Wales."""

CURRENT_SCHOOL_SERVICE: Final = "School safeguarding"
PREVIOUS_SCHOOL_SERVICE: Final = "Previous school safeguarding"

_UPN: Final = re.compile(r"^[A-Z0-9]{13}$")
_PHONE_PREFERENCE: Final = ("M", "H", "D", "W", "E")
"""Which of a contact's numbers reaches them first: mobile, home, daytime, work, evening (never
fax)."""
_UNORDERED: Final = 99


class CtfFileError(ValueError):
    """A file that is not a usable CTF. The message says where and why, never what the file holds:
    it is read from a child's record."""


@dataclass(frozen=True, slots=True)
class SchoolRef:
    """A school as a CTF header names it: LA number, establishment number, URN, name."""

    lea: str | None
    estab: str | None
    urn: str | None
    name: str | None

    @property
    def is_school(self) -> bool:
        """Whether this names an actual school, not the LA or an unknown destination."""
        return (
            self.estab is not None
            and self.estab.isdigit()
            and (self.lea is None or self.lea.isdigit())
            and self.estab not in NOT_A_SCHOOL
        )


@dataclass(frozen=True, slots=True)
class TransferPupil:
    """One pupil's record, which says the UPN it used to have (a newer record supersedes the old
    one)."""

    record: ConnectorRecord

    @property
    def former_upn(self) -> str | None:
        return next(iter(self.record.identifiers.former_upns or ()), None)


@dataclass(frozen=True, slots=True)
class TransferFile:
    """What one CTF says: when it was made, by and for whom, and its pupils' records.

    `skipped` gives, for each pupil that could not be read, its position and the reason only.
    """

    created: datetime
    source: SchoolRef
    destination: SchoolRef | None
    pupils: tuple[TransferPupil, ...]
    skipped: tuple[str, ...]


def placement(source: SchoolRef, destination: SchoolRef | None) -> tuple[SchoolRef | None, bool]:
    """The child's current school as the file tells it, and whether the source school is one the
    child has left.

    A CTF goes from the school a pupil leaves to the school they join: then the destination is the
    current school and the source a school they left. Sent to the local authority (LLLL) or with
    no destination, it is the school's own roll, and the source is the current school (unless
    the pupil's school history records them leaving it by the file's date: then no school is, and
    the source is a previous school - decided per pupil, in `_Context.pupil`). A
    destination that is not known (XXXX, MMMM: a pupil gone missing from education) leaves no
    current school - the source, which knew the child last, is kept as a previous school. So is a
    destination school given without a URN (before CTF 18): it cannot be named reliably.
    """
    if destination is None or destination.estab is None or destination.estab == "LLLL":
        return source, False
    if destination.is_school and destination.urn is not None:
        return destination, True
    return None, True


def read_ctf(data: bytes, contacts: SchoolContacts = NO_SCHOOL_CONTACTS) -> TransferFile:
    """Parse one CTF; a pupil that cannot be read is skipped and named by position in `skipped`,
    and so are pupils sharing a UPN whose details differ (a file's UPN names one child).

    Raises CtfFileError when the file as a whole cannot be used: not well-formed XML, a DTD, not a
    `CTfile`, or a header without a valid `DateTime` (every record's as-of, and the order in which
    files supersede each other).
    """
    root = _parse(data)
    if root.tag != "CTfile":
        raise CtfFileError(f"the root element is {root.tag!r}, not 'CTfile'")
    header = root.find("Header")
    if header is None:
        raise CtfFileError("there is no Header")
    created = _created(_text(header, "DateTime"))
    source = _school_ref(header.find("SourceSchool"))
    if source is None:
        raise CtfFileError("the Header has no SourceSchool")
    destination = _school_ref(header.find("DestSchool"))
    context = _Context(created, source, destination, contacts)
    by_upn: dict[str, list[tuple[int, TransferPupil]]] = defaultdict(list)
    skipped: list[str] = []
    for position, element in enumerate(root.iterfind("CTFpupilData/Pupil"), start=1):
        try:
            pupil = context.pupil(element)
        except _SkippedPupil as reason:
            skipped.append(f"Pupil {position}: {reason}")
        except ValidationError as error:
            skipped.append(f"Pupil {position}: {summarise_validation_error(error)}")
        else:
            by_upn[pupil.record.record_id].append((position, pupil))
    pupils: list[TransferPupil] = []
    for entries in by_upn.values():
        first = entries[0][1]
        if all(pupil == first for _, pupil in entries):
            pupils.append(first)
        else:
            # Two children under one identifier: serving either could be the wrong child.
            positions = ", ".join(str(position) for position, _ in entries)
            skipped.append(f"Pupils {positions}: one UPN with different details; none served")
    return TransferFile(created, source, destination, tuple(pupils), tuple(skipped))


class _SkippedPupil(Exception):
    """Why one pupil cannot be served; says nothing about the pupil."""


def _parse(data: bytes) -> Element:
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except ParseError as error:
        line, column = error.position
        raise CtfFileError(f"not well-formed XML (line {line}, column {column})") from None
    except DefusedXmlException as error:
        raise CtfFileError(
            f"refused {type(error).__name__}: a CTF never declares a DTD or entities"
        ) from None
    except (LookupError, ValueError) as error:
        # An encoding the XML declaration names but Python does not know, or one expat cannot
        # read: the parser's own message may quote the file.
        raise CtfFileError(f"unreadable XML ({type(error).__name__} from the parser)") from None
    for element in root.iter():
        element.tag = _local(element.tag)
    return root


def _local(tag: str) -> str:
    """The element's name without a namespace: CTF 10 and earlier schemas set one, later not."""
    return tag.rpartition("}")[2]


def _created(value: str | None) -> datetime:
    if value is None:
        raise CtfFileError("the Header has no DateTime")
    try:
        created = datetime.fromisoformat(value)
    except ValueError:
        raise CtfFileError("the Header DateTime is not a date and time") from None
    return created if created.tzinfo is not None else created.replace(tzinfo=UK_TIME)


def _school_ref(element: Element | None) -> SchoolRef | None:
    if element is None:
        return None
    return SchoolRef(
        lea=_text(element, "LEA"),
        estab=_text(element, "Estab"),
        urn=_text(element, "URN"),
        name=_text(element, "SchoolName"),
    )


def _text(element: Element, path: str) -> str | None:
    """The element's text with whitespace collapsed, or None when absent or blank."""
    value = element.findtext(path)
    if value is None:
        return None
    return " ".join(value.split()) or None


@dataclass(frozen=True, slots=True)
class _Context:
    """What every pupil of one file shares: the file's time and its schools."""

    created: datetime
    source: SchoolRef
    destination: SchoolRef | None
    contacts: SchoolContacts

    def pupil(self, element: Element) -> TransferPupil:
        upn = (_detail(element, "UPN") or "").upper()
        if not upn:
            raise _SkippedPupil("no UPN")
        if not _UPN.match(upn):
            raise _SkippedPupil("the UPN is not 13 letters and digits")
        former_upn = (_detail(element, "FormerUPN") or "").upper()
        current, left = placement(self.source, self.destination)
        if current is self.source and _has_left(element, self.source, self.created.date()):
            # The school's own roll (sent to the LA) still lists a pupil it records as gone:
            # showing them on roll would send a practitioner to a school they left.
            current, left = None, True
        school = self._school(current)
        involvements = []
        if school is not None and current is not None:
            involvements += self._involvement(element, current, school, until=None)
        if left:
            previous = self._school(self.source)
            if previous is not None:
                involvements += self._involvement(
                    element, self.source, previous, until=self.created.date()
                )
        record = ConnectorRecord(
            record_id=upn,
            identifiers=Identifiers(
                upn=upn, former_upns=(former_upn,) if former_upn not in ("", upn) else None
            ),
            name=_name(element),
            date_of_birth=_date_of_birth(element),
            sex=_sex(element),
            address=_address(element.find("Address")),
            school=school,
            carers=_carers(element),
            involvements=involvements,
            as_of=self.created,
        )
        return TransferPupil(record)

    def _school(self, ref: SchoolRef | None) -> School | None:
        if ref is None or ref.urn is None:
            return None
        known = self.contacts.get(ref.urn) or SchoolContact()
        name = ref.name or known.name or f"URN {ref.urn}"
        return School(urn=ref.urn, name=name, phone=known.phone)

    def _involvement(
        self, element: Element, ref: SchoolRef, school: School, until: date | None
    ) -> list[Involvement]:
        """The school's safeguarding lead, when the authority listed one for this school."""
        known = self.contacts.get(school.urn)
        lead = known.safeguarding_lead if known is not None else None
        if lead is None:
            return []
        entered, left = _attendance(element, ref)
        previous = until is not None
        return [
            Involvement(
                service=PREVIOUS_SCHOOL_SERVICE if previous else CURRENT_SCHOOL_SERVICE,
                organisation=school.name,
                practitioner=Contact(
                    name=lead.name, role=SAFEGUARDING_LEAD_ROLE, phone=lead.phone, email=lead.email
                ),
                since=entered,
                until=(left or until) if previous else left,
            )
        ]


def _detail(pupil: Element, name: str) -> str | None:
    """A pupil element read directly under Pupil or under BasicDetails, where CTFs also put it."""
    return _text(pupil, name) or _text(pupil, f"BasicDetails/{name}")


def _name(pupil: Element) -> PersonName | None:
    given, family = _detail(pupil, "Forename"), _detail(pupil, "Surname")
    if given is None or family is None:
        return None
    preferred_given = _detail(pupil, "PreferredForename")
    others = [_detail(pupil, "FormerSurname"), _detail(pupil, "PreferredSurname")]
    former: list[str] = []
    for other in others:
        if other and other.casefold() != family.casefold() and other not in former:
            former.append(other)
    known_as = (
        [preferred_given]
        if preferred_given and preferred_given.casefold() != given.casefold()
        else []
    )
    return PersonName(given=given, family=family, former_family=former, known_as=known_as)


def _date_of_birth(pupil: Element) -> date | None:
    value = _detail(pupil, "DOB")
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _SkippedPupil("DOB is not a date") from None


def _sex(pupil: Element) -> Sex | None:
    code = _detail(pupil, "Sex") or _detail(pupil, "Gender")
    if code is None:
        return None
    return SEX_FROM_CODE.get(code.upper(), Sex.UNKNOWN)


def _address(element: Element | None) -> Address | None:
    """The pupil's address as lines, most specific first, with its postcode; None without a
    postcode (an address abroad has a `Zip` instead), since a record's address needs one."""
    if element is None:
        return None
    postcode = _text(element, "PostCode")
    if postcode is None:
        return None
    bs7666 = element.find("BS7666Address")
    lines = list(_bs7666_lines(bs7666)) if bs7666 is not None else _plain_lines(element)
    county = _text(element, "County")
    if county and county not in lines:
        lines.append(county)
    return Address(lines=lines, postcode=postcode.upper())


def _bs7666_lines(element: Element) -> Iterator[str]:
    """BS7666 parts as a letter would show them: a numbered house on its street's line ("12 Church
    Road"), a named one above it; then locality, town and the post town when it differs."""
    saon, paon, street = (_text(element, name) for name in ("SAON", "PAON", "Street"))
    if saon:
        yield saon
    if paon and street and paon[0].isdigit():
        yield f"{paon} {street}"
    else:
        yield from (part for part in (paon, street) if part)
    seen: set[str] = set()
    for name in ("Locality", "Town", "AdministrativeArea", "PostTown"):
        part = _text(element, name)
        if part and part.casefold() not in seen:
            seen.add(part.casefold())
            yield part


def _plain_lines(element: Element) -> list[str]:
    lines = element.find("AddressLines")
    holder = lines if lines is not None else element
    found = (_text(holder, f"AddressLine{n}") for n in range(1, 6))
    return [line for line in found if line]


def _carers(pupil: Element) -> list[Carer]:
    """Contacts who care for the child, in the school's order of whom to call first."""
    ranked: list[tuple[int, int, Carer]] = []
    for position, contact in enumerate(pupil.iterfind("Contacts/Contact")):
        code = (_text(contact, "Relationship") or "").upper()
        responsible = (_text(contact, "Responsibility") or "").lower() in ("true", "1")
        if code not in CARER_RELATIONSHIPS and not responsible:
            continue
        name = " ".join(
            part for part in (_text(contact, n) for n in ("Title", "Forename", "Surname")) if part
        )
        if not name:
            continue
        carer = Carer(
            name=name,
            relationship=RELATIONSHIPS.get(code, code or "Not recorded"),
            parental_responsibility=responsible,
            phone=_phone(contact),
        )
        ranked.append((_contact_order(_text(contact, "Order")), position, carer))
    return [carer for *_, carer in sorted(ranked, key=lambda r: (r[0], r[1]))]


def _contact_order(value: str | None) -> int:
    """The school's calling order of one contact; a missing or unusable one sorts last. Only
    decimal digits, and few of them: `isdigit` also passes "²", which `int` refuses, and `int`
    refuses thousands of digits."""
    if value is None or not value.isdecimal() or len(value) > 9:
        return _UNORDERED
    return int(value)


def _phone(contact: Element) -> str | None:
    numbers: dict[str, str] = {}
    for phone in contact.iterfind("Phones/Phone"):
        number = _text(phone, "PhoneNo") or _text(phone, "TelephoneNumber")
        kind = (_text(phone, "TelephoneType") or "").upper()
        if number and kind != "F":
            numbers.setdefault(kind, number)
    for kind in _PHONE_PREFERENCE:
        if kind in numbers:
            return numbers[kind]
    return next(iter(numbers.values()), None)


def _attendance(pupil: Element, ref: SchoolRef) -> tuple[date | None, date | None]:
    """When the pupil joined and left this school, from the file's school history."""
    for school in pupil.iterfind("SchoolHistory/School"):
        same = (_text(school, "URN") is not None and _text(school, "URN") == ref.urn) or (
            ref.estab is not None
            and (_text(school, "LEA"), _text(school, "Estab")) == (ref.lea, ref.estab)
        )
        if same:
            return _date(_text(school, "EntryDate")), _date(_text(school, "LeavingDate"))
    return None, None


def _has_left(pupil: Element, ref: SchoolRef, on: date) -> bool:
    """Whether the file's school history records the pupil leaving `ref` on or before `on` (the
    file's date: as of it, a later leaving date is still to come)."""
    left = _attendance(pupil, ref)[1]
    return left is not None and left <= on


def _date(value: str | None) -> date | None:
    """A history date; one that does not parse is left out rather than losing the pupil."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
