"""The FHIR tests' population: children chosen for the edges PDS and CP-IS have - a restricted,
a very restricted and a redacted patient, a near-duplicate name, a double-barrelled family name,
namesakes enough to be too many - and the servers the tests run them on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from connectors.check_digits import nhs_check_digit
from connectors.fhir import (
    CPIS_PATH,
    PDS_PATH,
    Confidentiality,
    CpisPlan,
    FhirSandbox,
    PlanKind,
    ResponsibleAuthority,
    create_fhir_app,
)
from connectors.protocol import (
    LOOKUP_PATH,
    Address,
    Caller,
    Carer,
    ConnectorRecord,
    Demographics,
    FieldId,
    GpPractice,
    Identifiers,
    LookupRequest,
    PersonName,
    RecordFlags,
    Sex,
)
from connectors.serving import BackgroundServer

AS_OF = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def nhs_number(serial: int) -> str:
    """A valid NHS number in the range never issued to real people."""
    while True:
        first_nine = f"{900000000 + serial:09d}"
        check = nhs_check_digit(first_nine)
        if check is not None:
            return f"{first_nine}{check}"
        serial += 1000


def child(
    serial: int,
    given: str,
    family: str,
    born: date,
    sex: Sex,
    postcode: str,
    **changes: Any,
) -> ConnectorRecord:
    number = nhs_number(serial)
    record = ConnectorRecord(
        record_id=f"H-{serial}",
        identifiers=Identifiers(nhs_number=number),
        name=PersonName(given=given, family=family),
        date_of_birth=born,
        sex=sex,
        address=Address(lines=[f"{serial} Victoria Road", "Leeds"], postcode=postcode),
        gp_practice=GpPractice(ods_code="B86001", name="Hyde Park Surgery"),
        carers=[
            Carer(
                name=f"Sam {family}",
                relationship="Mother",
                parental_responsibility=True,
                phone="07700 900111",
            ),
        ],
        as_of=AS_OF,
    )
    return record.model_copy(update=changes)


AMELIA = child(
    1,
    "Amelia",
    "Hart",
    date(2015, 3, 7),
    Sex.FEMALE,
    "LS6 3AB",
    name=PersonName(given="Amelia", family="Hart", former_family=["Walsh"], known_as=["Millie"]),
    carers=[
        Carer(
            name="Jo Hart",
            relationship="Mother",
            parental_responsibility=True,
            phone="07700 900123",
        ),
        Carer(name="Dan Price", relationship="Stepfather", parental_responsibility=False),
    ],
)
AMELIE = child(2, "Amelie", "Hart", date(2015, 3, 7), Sex.FEMALE, "LS7 1AA")
"""A near-duplicate of Amelia: one letter apart, same day, another home."""
OLIVER = child(3, "Oliver James", "Smith-Jones", date(2014, 6, 1), Sex.MALE, "LS1 6AE")
ZARA = child(
    4, "Zara", "Ahmed", date(2016, 9, 12), Sex.FEMALE, "LS8 2QQ", flags=RecordFlags(restricted=True)
)
KAI = child(5, "Kai", "Brown", date(2013, 11, 30), Sex.MALE, "LS9 9ZZ")
LEO = child(6, "Leo", "Green", date(2012, 1, 20), Sex.MALE, "LS10 1AB")
NOAHS = [
    child(10 + i, "Noah", "Taylor", date(2017, 2, 2), Sex.MALE, f"LS{11 + i} 4CD") for i in range(3)
]
"""Three namesakes born the same day: a multi-match within the limit."""
JACKS = [
    child(20 + i, "Jack", "Smith", date(2016, 1, 1), Sex.MALE, f"LS{12 + i} 5EF") for i in range(12)
]
"""Twelve namesakes born the same day: more than the connector's limit of ten."""
PATIENTS = [AMELIA, AMELIE, OLIVER, ZARA, KAI, LEO, *NOAHS, *JACKS]
LABELS = {
    nhs_number(5): Confidentiality.VERY_RESTRICTED,
    nhs_number(6): Confidentiality.REDACTED,
}
AUTHORITY = ResponsibleAuthority(
    name="Leeds Children's Social Care",
    ods_code="X99LA",
    office_hours_phone="0113 496 0100",
    emergency_duty_phone="0113 496 0199",
)
PLANS = [
    CpisPlan(nhs_number(1), PlanKind.CHILD_PROTECTION, date(2024, 5, 1), AUTHORITY),
    CpisPlan(nhs_number(4), PlanKind.LOOKED_AFTER, date(2023, 1, 9), AUTHORITY),
    CpisPlan(
        nhs_number(2), PlanKind.CHILD_PROTECTION, date(2019, 1, 1), AUTHORITY, end=date(2020, 6, 30)
    ),
]


def sandbox(**options: Any) -> FhirSandbox:
    return FhirSandbox(PATIENTS, PLANS, labels=LABELS, **options)


@dataclass
class Stack:
    """The sandbox and a connector app in front of it, both served on loopback."""

    sandbox: FhirSandbox
    fhir_url: str
    connector: httpx.Client

    def lookup(self, *, fields: list[FieldId] | None = None, **asked: Any) -> httpx.Response:
        return self.connector.post(LOOKUP_PATH, content=lookup_body(fields=fields, **asked))


def lookup_body(
    *,
    nhs: str | None = None,
    demographics: Demographics | None = None,
    fields: list[FieldId] | None = None,
    deadline_in: float = 5.0,
) -> bytes:
    request = LookupRequest(
        request_id="req-fhir",
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_in),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="health_visitor", organisation="RX1"),
        identifiers=Identifiers(nhs_number=nhs),
        demographics=demographics,
        fields=list(FieldId) if fields is None else fields,
    )
    return request.model_dump_json().encode()


@contextlib.contextmanager
def running_stack(sandbox_app: FhirSandbox, **app_options: Any) -> Iterator[Stack]:
    with BackgroundServer(sandbox_app.app) as fhir:
        options = {"pds_url": fhir.url + PDS_PATH, "cpis_url": fhir.url + CPIS_PATH} | app_options
        app = create_fhir_app(**options)
        with (
            BackgroundServer(app) as connector,
            httpx.Client(base_url=connector.url, timeout=10) as client,
        ):
            yield Stack(sandbox_app, fhir.url, client)
