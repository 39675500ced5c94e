"""Reading Common Transfer Files shaped as the DfE specifies them into connector records."""

from datetime import UTC, date, datetime

import pytest

from connectors.check_digits import upn_check_letter
from connectors.ctf import CtfFileError, SchoolContacts, read_ctf
from connectors.ctf.schools import SafeguardingLead, SchoolContact
from connectors.protocol import Address, Carer, Involvement, PersonName, School, Sex


def upn(digits: str) -> str:
    return upn_check_letter(digits) + digits


AMELIA = upn("383200901001")
OLIVER = upn("383200901002")
FORMER = upn("383200701009")


def ctf(pupils: str, *, destination: str = "<LEA>383</LEA><Estab>LLLL</Estab>") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<CTfile>
  <Header>
    <DocumentName>Common Transfer File</DocumentName>
    <CTFversion>25.0</CTFversion>
    <DateTime>2025-07-18T14:30:00</DateTime>
    <DocumentQualifier>full</DocumentQualifier>
    <SupplierID>MIS</SupplierID>
    <SourceSchool>
      <LEA>383</LEA><Estab>2009</Estab><URN>107001</URN>
      <SchoolName>Headingley Primary School</SchoolName><AcademicYear>2024</AcademicYear>
    </SourceSchool>
    <DestSchool>{destination}</DestSchool>
  </Header>
  <CTFpupilData>{pupils}</CTFpupilData>
</CTfile>""".encode()


FULL_PUPIL = f"""
<Pupil>
  <UPN>{AMELIA}</UPN>
  <Surname>Hart-Walsh</Surname>
  <Forename>Amelia Rose</Forename>
  <DOB>2015-03-07</DOB>
  <Sex>F</Sex>
  <BasicDetails>
    <FormerUPN>{FORMER}</FormerUPN>
    <PreferredSurname>Hart</PreferredSurname>
    <FormerSurname>Walsh</FormerSurname>
    <PreferredForename>Millie</PreferredForename>
    <MiddleNames>Jane</MiddleNames>
    <NCyearActual>5</NCyearActual>
  </BasicDetails>
  <Address>
    <BS7666Address>
      <SAON>Flat 2</SAON><PAON>12</PAON><Street>Church Road</Street>
      <Locality>Headingley</Locality><Town>Leeds</Town><PostTown>Leeds</PostTown>
    </BS7666Address>
    <PostCode>ls6 3ab</PostCode>
  </Address>
  <Phones><Phone><TelephoneType>H</TelephoneType><PhoneNo>0113 496 0000</PhoneNo></Phone></Phones>
  <Contacts>
    <Contact>
      <Order>2</Order><Title>Mr</Title><Surname>Hart</Surname><Forename>Daniel</Forename>
      <Gender>M</Gender><Relationship>STF</Relationship><Responsibility>false</Responsibility>
      <Phones>
        <Phone><TelephoneType>W</TelephoneType><PhoneNo>0113 496 0100</PhoneNo></Phone>
      </Phones>
    </Contact>
    <Contact>
      <Order>1</Order><Title>Mrs</Title><Surname>Hart</Surname><Forename>Sarah</Forename>
      <Relationship>PAM</Relationship><Responsibility>true</Responsibility>
      <Phones>
        <Phone><TelephoneType>F</TelephoneType><PhoneNo>0113 496 0999</PhoneNo></Phone>
        <Phone><TelephoneType>H</TelephoneType><PhoneNo>0113 496 0000</PhoneNo></Phone>
        <Phone><TelephoneType>M</TelephoneType><PhoneNo>07700 900123</PhoneNo></Phone>
      </Phones>
      <Email>sarah@example.com</Email>
    </Contact>
    <Contact>
      <Order>3</Order><Title>Dr</Title><Surname>Khan</Surname><Forename>Aisha</Forename>
      <Relationship>DOC</Relationship><Responsibility>false</Responsibility>
    </Contact>
  </Contacts>
  <SchoolHistory>
    <School>
      <LEA>383</LEA><Estab>2009</Estab><SchoolName>Headingley Primary School</SchoolName>
      <EntryDate>2019-09-04</EntryDate>
    </School>
  </SchoolHistory>
</Pupil>"""

BARE_PUPIL = f"""
<Pupil>
  <UPN>{OLIVER}</UPN><Surname>O'Neill</Surname><Forename>Oliver</Forename>
</Pupil>"""

CONTACTS = SchoolContacts(
    schools={
        "107001": SchoolContact(
            phone="0113 496 0500",
            safeguarding_lead=SafeguardingLead(name="Ann Lee", phone="0113 496 0501"),
        )
    }
)


def test_a_full_pupil_gives_every_field_ctf_carries():
    read = read_ctf(ctf(FULL_PUPIL), CONTACTS)

    (pupil,) = read.pupils
    record = pupil.record
    assert record.record_id == AMELIA
    assert record.identifiers.upn == AMELIA
    assert record.identifiers.nhs_number is None
    assert record.name == PersonName(
        given="Amelia Rose",
        family="Hart-Walsh",
        former_family=["Walsh", "Hart"],
        known_as=["Millie"],
    )
    assert record.date_of_birth == date(2015, 3, 7)
    assert record.sex is Sex.FEMALE
    assert record.address == Address(
        lines=["Flat 2", "12 Church Road", "Headingley", "Leeds"], postcode="LS6 3AB"
    )
    assert record.school == School(
        urn="107001", name="Headingley Primary School", phone="0113 496 0500"
    )
    assert pupil.former_upn == FORMER


def test_carers_come_in_the_schools_order_with_the_first_phone_to_try_and_no_doctor():
    (pupil,) = read_ctf(ctf(FULL_PUPIL)).pupils

    assert pupil.record.carers == [
        Carer(
            name="Mrs Sarah Hart",
            relationship="Mother",
            parental_responsibility=True,
            phone="07700 900123",
        ),
        Carer(
            name="Mr Daniel Hart",
            relationship="Stepfather",
            parental_responsibility=False,
            phone="0113 496 0100",
        ),
    ]


def test_the_schools_safeguarding_lead_comes_from_the_contacts_file_with_the_entry_date():
    (pupil,) = read_ctf(ctf(FULL_PUPIL), CONTACTS).pupils

    (involvement,) = pupil.record.involvements or []
    assert involvement.service == "School safeguarding"
    assert involvement.organisation == "Headingley Primary School"
    assert involvement.practitioner is not None
    assert (involvement.practitioner.name, involvement.practitioner.phone) == (
        "Ann Lee",
        "0113 496 0501",
    )
    assert involvement.since == date(2019, 9, 4)
    assert involvement.until is None


def test_without_a_contacts_file_a_school_has_no_lead_and_no_phone():
    (pupil,) = read_ctf(ctf(FULL_PUPIL)).pupils

    assert pupil.record.involvements == []
    assert pupil.record.school == School(urn="107001", name="Headingley Primary School")


def test_missing_optional_elements_leave_their_fields_empty():
    (pupil,) = read_ctf(ctf(BARE_PUPIL)).pupils

    record = pupil.record
    assert record.name == PersonName(given="Oliver", family="O'Neill")
    assert (record.date_of_birth, record.sex, record.address) == (None, None, None)
    assert record.carers == []
    assert pupil.former_upn is None


def test_the_header_time_is_every_records_as_of_read_as_uk_time():
    read = read_ctf(ctf(FULL_PUPIL + BARE_PUPIL))

    expected = datetime(2025, 7, 18, 13, 30, tzinfo=UTC)  # BST
    assert read.created == expected
    assert [p.record.as_of for p in read.pupils] == [expected, expected]


def test_older_files_gender_and_a_namespace_are_read_too():
    older = ctf(BARE_PUPIL.replace("</Forename>", "</Forename><Gender>M</Gender>")).replace(
        b"<CTfile>", b'<CTfile xmlns="http://www.dcsf.gov.uk/schemas/cbds">'
    )

    (pupil,) = read_ctf(older).pupils

    assert pupil.record.sex is Sex.MALE


def test_address_lines_are_read_in_order():
    lines = (
        "<Address><AddressLines><AddressLine1>Rose Cottage</AddressLine1>"
        "<AddressLine2>Moor Lane</AddressLine2></AddressLines><County>West Yorkshire</County>"
        "<PostCode>LS16 9AB</PostCode></Address>"
    )
    (pupil,) = read_ctf(ctf(BARE_PUPIL.replace("</Forename>", "</Forename>" + lines))).pupils

    assert pupil.record.address == Address(
        lines=["Rose Cottage", "Moor Lane", "West Yorkshire"], postcode="LS16 9AB"
    )


def test_a_pupil_that_cannot_be_read_is_skipped_by_position_and_the_rest_served():
    no_upn = BARE_PUPIL.replace(f"<UPN>{OLIVER}</UPN>", "")
    bad_date = FULL_PUPIL.replace("2015-03-07", "07/03/2015")

    read = read_ctf(ctf(no_upn + bad_date + BARE_PUPIL))

    assert [p.record.record_id for p in read.pupils] == [OLIVER]
    assert read.skipped == ("Pupil 1: no UPN", "Pupil 2: DOB is not a date")


@pytest.mark.parametrize("order", ["\u00b2", "9" * 5000, "-1", "x"])
def test_a_contact_order_that_is_not_a_small_number_puts_the_contact_last(order):
    # "²" passes str.isdigit but not int(); 5,000 digits are more than int() reads.
    first = FULL_PUPIL.replace("<Order>1</Order>", f"<Order>{order}</Order>")

    (pupil,) = read_ctf(ctf(first)).pupils

    assert [c.name for c in pupil.record.carers or []] == ["Mr Daniel Hart", "Mrs Sarah Hart"]


def test_two_different_children_under_one_upn_in_a_file_are_neither_served():
    twin = BARE_PUPIL.replace("Oliver", "Olivia")

    read = read_ctf(ctf(BARE_PUPIL + FULL_PUPIL + twin + BARE_PUPIL))

    assert [p.record.record_id for p in read.pupils] == [AMELIA]
    assert read.skipped == ("Pupils 1, 3, 4: one UPN with different details; none served",)


def test_a_pupil_listed_twice_alike_is_served_once():
    read = read_ctf(ctf(BARE_PUPIL + BARE_PUPIL))

    assert [p.record.record_id for p in read.pupils] == [OLIVER]
    assert read.skipped == ()


def test_a_pupil_moving_to_a_named_school_is_at_that_school_and_has_left_the_sender():
    destination = (
        "<LEA>383</LEA><Estab>4001</Estab><URN>108002</URN><SchoolName>Kirkstall</SchoolName>"
    )

    (pupil,) = read_ctf(ctf(FULL_PUPIL, destination=destination), CONTACTS).pupils

    assert pupil.record.school == School(urn="108002", name="Kirkstall")
    (previous,) = pupil.record.involvements or []
    assert previous == Involvement(
        service="Previous school safeguarding",
        organisation="Headingley Primary School",
        practitioner=previous.practitioner,
        since=date(2019, 9, 4),
        until=date(2025, 7, 18),
    )


def test_a_pupil_whose_next_school_is_not_known_has_no_current_school():
    (pupil,) = read_ctf(ctf(FULL_PUPIL, destination="<LEA>XXX</LEA><Estab>XXXX</Estab>")).pupils

    assert pupil.record.school is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ctf(FULL_PUPIL)[:-40], "not well-formed XML"),
        (b"<Pupils><Pupil/></Pupils>", "not 'CTfile'"),
        (ctf(FULL_PUPIL).replace(b"<DateTime>2025-07-18T14:30:00</DateTime>", b""), "DateTime"),
        (ctf(FULL_PUPIL).replace(b"2025-07-18T14:30:00", b"18/07/2025"), "DateTime"),
        (
            b'<?xml version="1.0"?><!DOCTYPE CTfile [<!ENTITY n "Amelia">]><CTfile>&n;</CTfile>',
            "DTD",
        ),
        (ctf(FULL_PUPIL).replace(b'encoding="UTF-8"', b'encoding="x-no-such"'), "unreadable"),
    ],
)
def test_a_malformed_file_is_refused_without_quoting_it(data, reason):
    with pytest.raises(CtfFileError) as refused:
        read_ctf(data)

    assert reason in str(refused.value)
    assert "Amelia" not in str(refused.value)
    assert "Hart" not in str(refused.value)
