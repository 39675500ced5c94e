"""The conformance dataset: a fixed set of synthetic children an agency loads into its test system
before running the kit, so that the checks needing data know what the connector holds.

Every child has an NHS number from the 999 range (never issued to a person) and a UPN, both with
valid check characters, so a connector validating identifiers treats them as real ones. Each
agency gets its own copy of every child, holding only what that agency provides (see
`holdings`): the same child, as health, education and social care would each record them.

The children, by role in the checks:

- plain: an ordinary child holding every field the agency provides, with a sensitive
  involvement (brokered) beside an ordinary one; the identifier and field-subset checks use it.
- shielded, restricted: flagged where the agency carries that flag.
- slip: a child whose names are easily mistyped; searched for with both names misspelt.
- crowd: DEFAULT_LIMIT + 5 children sharing a family name, date of birth and postcode, so that
  one demographic search matches more of them than a connector may return.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from connectors.check_digits import nhs_check_digit, upn_check_letter
from connectors.conformance.holdings import Flag, Holdings, holdings
from connectors.minimisation import minimise
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    Demographics,
    FieldId,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    School,
    Sex,
)
from connectors.reference import REFERENCE_AGENCIES
from connectors.search import DEFAULT_LIMIT

AS_OF: Final = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
CROWD_SIZE: Final = DEFAULT_LIMIT + 5

_CROWD_GIVEN: Final = (
    "Alfie", "Bella", "Callum", "Daisy", "Ethan", "Freya", "George", "Hannah", "Isaac",
    "Jessica", "Kieran", "Lily", "Mason", "Nadia", "Oscar", "Poppy", "Quinn", "Rosie",
    "Samuel", "Tilly",
)  # fmt: skip
_LA_CODE: Final = "999"
_ESTABLISHMENT: Final = "9001"
_UNKNOWN_SERIAL: Final = 999


@dataclass(frozen=True)
class _Child:
    """One conformance child's true details, before any agency records them."""

    serial: int
    given: str
    family: str
    date_of_birth: date
    sex: Sex
    street: str
    postcode: str


_PLAIN: Final = _Child(
    1, "Amelia", "Hartley", date(2015, 3, 7), Sex.FEMALE, "1 Mill Lane", "LS99 1AA"
)
_SHIELDED: Final = _Child(
    2, "Noah", "Whitfield", date(2013, 11, 2), Sex.MALE, "7 Quarry Row", "LS99 3CC"
)
_RESTRICTED: Final = _Child(
    3, "Isla", "Pemberton", date(2017, 1, 23), Sex.FEMALE, "12 Orchard Way", "LS99 4DD"
)
_SLIP: Final = _Child(
    4, "Siobhan", "Featherstone", date(2014, 6, 18), Sex.FEMALE, "3 Beck Side", "LS99 5EE"
)
_CROWD: Final = tuple(
    _Child(10 + n, given, "Ashworth", date(2016, 9, 12), Sex.UNKNOWN, "Ashworth House", "LS99 2BB")
    for n, given in enumerate(_CROWD_GIVEN[:CROWD_SIZE])
)

SLIP_SEARCH: Final = Demographics(
    given="Siobahn", family="Fetherstone", date_of_birth=_SLIP.date_of_birth
)
"""The slip child as a practitioner keyed them: both names misspelt, the date of birth right and
no postcode. Only the date agrees exactly, so a connector finds the child only if it forgives
the slips, as the protocol's candidate search does."""

CROWD_SEARCH: Final = Demographics(
    family="Ashworth", date_of_birth=_CROWD[0].date_of_birth, postcode=_CROWD[0].postcode
)
"""A search every crowd child agrees with on three details: more candidates than may be sent."""


@dataclass(frozen=True)
class ConformanceDataset:
    """One agency's copy of the conformance children, by role."""

    holdings: Holdings
    plain: ConnectorRecord
    shielded: ConnectorRecord
    restricted: ConnectorRecord
    slip: ConnectorRecord
    crowd: tuple[ConnectorRecord, ...]

    def records(self) -> list[ConnectorRecord]:
        return [self.plain, self.shielded, self.restricted, self.slip, *self.crowd]

    def unknown_identifiers(self) -> Identifiers:
        """An identifier of the kind lookups use, valid, and held by no conformance child."""
        if self.holdings.lookup_kind == "nhs_number":
            return Identifiers(nhs_number=_nhs_number(_UNKNOWN_SERIAL))
        return Identifiers(upn=_upn(_UNKNOWN_SERIAL))


def lookup_identifiers(record: ConnectorRecord, holdings: Holdings) -> Identifiers:
    """The one identifier a lookup of `record` sends: the national identifier its agency holds."""
    if holdings.lookup_kind == "nhs_number":
        return Identifiers(nhs_number=record.identifiers.nhs_number)
    return Identifiers(upn=record.identifiers.upn)


def exact_search(record: ConnectorRecord) -> Demographics:
    """A demographic search giving `record`'s own name, date of birth and postcode."""
    name, address = record.name, record.address
    return Demographics(
        given=None if name is None else name.given,
        family=None if name is None else name.family,
        date_of_birth=record.date_of_birth,
        postcode=None if address is None else address.postcode,
    )


def conformance_dataset(
    agency: str,
    *,
    fields: Collection[FieldId] | None = None,
    flags: Collection[Flag] | None = None,
) -> ConformanceDataset:
    """The conformance children as `agency` holds them (see `holdings` for the overrides)."""
    held = holdings(agency, fields=fields, flags=flags)
    prefix = f"CONF-{agency.upper()}"

    def record(child: _Child) -> ConnectorRecord:
        return _agency_record(child, held, f"{prefix}-{child.serial:03d}")

    return ConformanceDataset(
        holdings=held,
        plain=record(_PLAIN),
        shielded=record(_SHIELDED),
        restricted=record(_RESTRICTED),
        slip=record(_SLIP),
        crowd=tuple(record(child) for child in _CROWD),
    )


def conformance_records(
    agency: str,
    *,
    fields: Collection[FieldId] | None = None,
    flags: Collection[Flag] | None = None,
) -> list[ConnectorRecord]:
    """Every conformance child as `agency` holds them: what its test system must load."""
    return conformance_dataset(agency, fields=fields, flags=flags).records()


def write_dataset(
    directory: Path,
    agencies: Iterable[str] | None = None,
    *,
    fields: Collection[FieldId] | None = None,
    flags: Collection[Flag] | None = None,
) -> list[Path]:
    """Write `<agency>.jsonl` (one `ConnectorRecord` per line) for each agency - every reference
    agency by default - into `directory`, creating it; return the files written. The same
    arguments always give byte-identical files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for agency in sorted(REFERENCE_AGENCIES) if agencies is None else agencies:
        path = directory / f"{agency}.jsonl"
        lines = [
            record.model_dump_json() + "\n"
            for record in conformance_records(agency, fields=fields, flags=flags)
        ]
        path.write_text("".join(lines), encoding="utf-8")
        written.append(path)
    return written


def _agency_record(child: _Child, held: Holdings, record_id: str) -> ConnectorRecord:
    """`child` as the agency records them: its identifiers and flags, only its fields."""
    identifiers = {
        "nhs_number": _nhs_number(child.serial),
        "upn": _upn(child.serial),
        "local_id": f"CONF-LA-{child.serial:04d}",
    }
    flags = RecordFlags(
        shielded=child is _SHIELDED and Flag.SHIELDED in held.flags,
        restricted=child is _RESTRICTED and Flag.RESTRICTED in held.flags,
    )
    whole = ConnectorRecord(
        record_id=record_id,
        identifiers=Identifiers(**{kind: identifiers[kind] for kind in held.identifiers}),
        name=PersonName(given=child.given, family=child.family),
        date_of_birth=child.date_of_birth,
        sex=child.sex,
        address=Address(lines=[child.street, "Conformance Town"], postcode=child.postcode),
        school=School(urn="999001", name="Conformance Primary School", phone="01632 960010"),
        gp_practice=GpPractice(ods_code="Z99901", name="Conformance Surgery", phone="01632 960020"),
        carers=[
            Carer(
                name=f"Jordan {child.family}",
                relationship="mother",
                parental_responsibility=True,
                phone="01632 960030",
            ),
            Carer(name=f"Sam {child.family}", relationship="father", parental_responsibility=True),
        ],
        involvements=list(_involvements(held.agency, held.fields)),
        indicators=Indicators(
            child_protection_plan=False, looked_after=False, child_in_need=True, early_help=False
        ),
        flags=flags,
        as_of=AS_OF,
    )
    return minimise(whole, held.fields)


def _involvements(agency: str, fields: Collection[FieldId]) -> Iterator[Involvement]:
    """An ordinary lead involvement and, for an agency providing `sensitive_service_details`
    (one that holds sensitive services at all), a sensitive one whose provider only that field
    releases (its broker is always released)."""
    yield Involvement(
        service=f"Conformance {agency.replace('_', ' ')} service",
        organisation="Conformance Borough",
        practitioner=Contact(name="Pat Example", role="Lead practitioner", phone="01632 960040"),
        lead=True,
        since=date(2024, 9, 2),
    )
    if FieldId.SENSITIVE_SERVICE_DETAILS not in fields:
        return
    yield Involvement(
        service="Conformance sexual health clinic",
        organisation="Conformance Sexual Health",
        practitioner=Contact(name="Alex Example", role="Nurse", phone="01632 960050"),
        since=date(2025, 1, 6),
        sensitive=True,
        broker=Contact(name="Conformance safeguarding hub", phone="01632 960060"),
    )


def _nhs_number(serial: int) -> str:
    """The first NHS number from 999 plus six digits at or after `serial` that can be issued."""
    for candidate in range(serial * 10, serial * 10 + 10):
        first_nine = f"999{candidate:06d}"
        check = nhs_check_digit(first_nine)
        if check is not None:
            return f"{first_nine}{check}"
    raise AssertionError("unreachable: one of ten consecutive numbers always has a check digit")


def _upn(serial: int) -> str:
    digits = f"{_LA_CODE}{_ESTABLISHMENT}25{serial:03d}"
    return upn_check_letter(digits) + digits
