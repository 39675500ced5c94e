"""Each agency's records about a placed child, and which agencies hold one.

The identity sources hold the truth (the spine is the original, the pupil register is checked
against it); agencies copy names and dates by hand, with the slips NoiseProfile describes. Their
identifiers are never wrong, since a wrong NHS number is another child, and every agency record
carries an identifier the identity sources also hold, so that a locator keyed on them can find it:

- social care and GP practice records always hold the NHS number (social care also the UPN, as
  the children in need census asks);
- school records always hold the UPN and the NHS number only at SCHOOL_NHS_NUMBER: the rest are
  reachable by UPN, or by the school route.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, NamedTuple

from connectors.national import AGENCY_KINDS, IDENTITY_SOURCES, agency_name
from connectors.protocol import (
    Address,
    ConnectorRecord,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
)
from connectors.synthetic.dates import age, years_later
from connectors.synthetic.names import NICKNAMES
from connectors.synthetic.national.children import NationalChild, Schooling
from connectors.synthetic.national.country import LocalAuthority
from connectors.synthetic.noise import NoiseProfile, slip, swapped_day_month
from connectors.synthetic.population import Status

SCHOOL_NHS_NUMBER: Final = 0.6
"""Share of school records holding the NHS number; all hold the UPN."""

RECORD_FILES: Final = (*IDENTITY_SOURCES, *AGENCY_KINDS)
"""The records files, one per identity source and agency kind."""

_HEALTH_VISITING_UNTIL: Final = 5
_STALENESS_DAYS: Final = {
    "health": 1,
    "education": 7,
    "social_care": 2,
    "gp_practice": 1,
    "school": 7,
}
_UNFLAGGED: Final = RecordFlags()
_RESTRICTED: Final = RecordFlags(restricted=True)
_SHIELDED: Final = RecordFlags(shielded=True)
_CLOSED: Final = Indicators(
    child_protection_plan=False, looked_after=False, child_in_need=False, early_help=False
)


class HeldRecord(NamedTuple):
    agency: str
    record: ConnectorRecord


class RecordWriter:
    """Builds every record about one child at a time, numbering each agency's records in turn."""

    def __init__(self, rng: random.Random, today: date, noise: NoiseProfile) -> None:
        self._rng = rng
        self._today = today
        self._noise = noise
        self._numbers: dict[str, int] = {}
        self.records: dict[str, list[HeldRecord]] = {kind: [] for kind in RECORD_FILES}

    def add(self, child: NationalChild) -> tuple[str, ...]:
        """Write the child's records; return the agencies (identity sources aside) holding one.

        One name object serves every record that holds the name as it is (most do): records are
        immutable, and building hundreds of thousands of them is most of the generation time.
        """
        name = PersonName(given=child.kid.given, family=child.kid.family)
        self._health(child, name)
        if child.school is not None:
            self._education(child, name, child.school)
        holders = [self._practice(child, name)]
        if child.status is not None:
            home = child.kid.household.address
            holders.append(
                self._social_care(child, name, child.local_authority, child.status, home)
            )
        move = child.moved
        if move is not None and move.status is not None:
            la, status = move.local_authority, move.status
            holders.append(self._social_care(child, name, la, status, move.address, move.on))
        for schooling in (child.school, child.former_school):
            if schooling is not None:
                holders.append(self._school(child, name, schooling))
        return tuple(sorted(holders))

    def _health(self, child: NationalChild, name: PersonName) -> None:
        kid = child.kid
        record = ConnectorRecord(
            record_id=self._record_id("health", "H{:07d}"),
            identifiers=Identifiers(nhs_number=kid.nhs_number),
            name=name,
            date_of_birth=kid.born,
            sex=kid.sex,
            address=kid.household.address,
            gp_practice=child.practice.local.practice,
            carers=list(kid.household.carers),
            flags=_RESTRICTED if child.restricted else _UNFLAGGED,
            as_of=self._as_of("health"),
        )
        self.records["health"].append(HeldRecord("health", record))

    def _education(self, child: NationalChild, name: PersonName, schooling: Schooling) -> None:
        kid = child.kid
        record = ConnectorRecord(
            record_id=self._record_id("education", "E{:07d}"),
            identifiers=Identifiers(upn=child.upn, nhs_number=kid.nhs_number),
            name=name,
            date_of_birth=kid.born,
            sex=kid.sex,
            address=kid.household.address,
            school=schooling.school.local.school,
            as_of=self._as_of("education"),
        )
        self.records["education"].append(HeldRecord("education", record))

    def _practice(self, child: NationalChild, name: PersonName) -> str:
        practice = child.practice
        agency = agency_name("gp_practice", practice.local.practice.ods_code)
        kid = child.kid
        involvements = [
            Involvement(
                service="General practice",
                organisation=practice.local.practice.name,
                practitioner=practice.gp,
                since=child.registered,
            )
        ]
        if age(kid.born, self._today) < _HEALTH_VISITING_UNTIL:
            involvements.append(
                Involvement(
                    service="Health visiting",
                    organisation=practice.local.practice.name,
                    practitioner=practice.local.health_visitor,
                    since=child.registered,
                )
            )
        copied, born = self._copied(child, name)
        record = ConnectorRecord(
            record_id=self._record_id(agency, "GP-{:06d}"),
            identifiers=Identifiers(nhs_number=kid.nhs_number),
            name=copied,
            date_of_birth=born,
            sex=kid.sex,
            address=kid.household.address,
            gp_practice=practice.local.practice,
            involvements=involvements,
            as_of=self._as_of("gp_practice"),
        )
        self.records["gp_practice"].append(HeldRecord(agency, record))
        return agency

    def _social_care(
        self,
        child: NationalChild,
        name: PersonName,
        la: LocalAuthority,
        status: Status,
        address: Address,
        closed: date | None = None,
    ) -> str:
        """The authority's record: open, or closed on the day the family moved away."""
        agency = agency_name("social_care", la.code)
        rng, kid = self._rng, child.kid
        if status is Status.EARLY_HELP:
            service, organisation = "Early help", f"{la.town} Early Help Service"
            practitioner = rng.choice(la.early_help_leads)
        else:
            service, organisation = "Children's social care", f"{la.town} Children's Social Care"
            practitioner = rng.choice(la.social_workers)
        involvement = Involvement(
            service=service,
            organisation=organisation,
            practitioner=practitioner,
            lead=closed is None,
            since=self._since(kid.born, closed or self._today),
            until=closed,
        )
        copied, born = self._copied(child, name)
        record_id = self._record_id(agency, "LA-{:06d}")
        record = ConnectorRecord(
            record_id=record_id,
            identifiers=Identifiers(nhs_number=kid.nhs_number, upn=child.upn, local_id=record_id),
            name=copied,
            date_of_birth=born,
            sex=kid.sex,
            address=address,
            carers=list(kid.household.carers),
            involvements=[involvement],
            indicators=status.value if closed is None else _CLOSED,
            flags=_SHIELDED if child.shielded and closed is None else _UNFLAGGED,
            as_of=self._as_of("social_care"),
        )
        self.records["social_care"].append(HeldRecord(agency, record))
        return agency

    def _school(self, child: NationalChild, name: PersonName, schooling: Schooling) -> str:
        """The school's file on a pupil on roll, or on a former pupil, with the DSL's involvement;
        a former pupil's file holds the address the family had then."""
        school = schooling.school.local
        agency = agency_name("school", school.school.urn)
        kid = child.kid
        address = kid.household.address
        if schooling.until is not None and child.moved is not None:
            address = child.moved.address
        held_nhs = self._rng.random() < SCHOOL_NHS_NUMBER
        copied, born = self._copied(child, name)
        record = ConnectorRecord(
            record_id=self._record_id(agency, "SCH-{:06d}"),
            identifiers=Identifiers(upn=child.upn, nhs_number=kid.nhs_number if held_nhs else None),
            name=copied,
            date_of_birth=born,
            sex=kid.sex,
            address=address,
            school=school.school,
            carers=list(kid.household.carers),
            involvements=[
                Involvement(
                    service="School safeguarding",
                    organisation=school.school.name,
                    practitioner=school.safeguarding_lead,
                    since=schooling.since,
                    until=schooling.until,
                )
            ],
            as_of=self._as_of("school"),
        )
        self.records["school"].append(HeldRecord(agency, record))
        return agency

    def _copied(self, child: NationalChild, name: PersonName) -> tuple[PersonName, date]:
        """The name and date of birth as an agency keyed them: a nickname, a slip, a day and month
        swapped, at the noise profile's rates."""
        rng, noise, kid = self._rng, self._noise, child.kid
        given, family = name.given, name.family
        if rng.random() < noise.nickname and given in NICKNAMES:
            given = rng.choice(NICKNAMES[given])
        if rng.random() < noise.typo:
            given, family, _ = slip(rng, given, family)
        born = kid.born
        if rng.random() < noise.swapped_day_month:
            swapped = swapped_day_month(born)
            if swapped is not None and swapped <= self._today:
                born = swapped
        if (given, family) != (name.given, name.family):
            name = PersonName(given=given, family=family)
        return name, born

    def _record_id(self, agency: str, shape: str) -> str:
        number = self._numbers.get(agency, 0) + 1
        self._numbers[agency] = number
        return shape.format(number)

    def _since(self, not_before: date, latest: date) -> date:
        earliest = max(not_before, years_later(latest, -3))
        return earliest + timedelta(days=self._rng.randint(0, max(0, (latest - earliest).days)))

    def _as_of(self, kind: str) -> datetime:
        extracted = datetime.combine(self._today, time(6, 0), tzinfo=UTC)
        return extracted - timedelta(minutes=self._rng.randrange(_STALENESS_DAYS[kind] * 1440))
