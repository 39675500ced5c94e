"""A seeded synthetic population of children, as three agencies would each hold it.

There is deliberately no central list of children in the output: each agency gets its own records,
shaped and drifted the way that agency's records are, and the only thing that ties them together is
a ground-truth map from record to child id, kept for measuring linkage and nothing else.

Generation runs in four steps, all from one seeded random stream: the area's services, households
of children, what sets each child apart (in exact proportions, see Prevalence), and finally each
agency's records, shuffled and numbered per agency.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Final, Literal

from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    Sex,
)
from connectors.synthetic import names, places
from connectors.synthetic.dates import (
    age,
    earliest_birthday,
    primary_start,
    secondary_start,
    years_later,
)
from connectors.synthetic.households import Child, draw_children
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.noise import (
    Fault,
    NoiseProfile,
    another_given_name,
    happens,
    misspell,
    slip,
    swapped_day_month,
    wrong_date_of_birth,
)
from connectors.synthetic.services import (
    CHILDRENS_SERVICES,
    COMMUNITY_HEALTH,
    EARLY_HELP,
    SENSITIVE_SERVICES,
    LocalSchool,
    SensitiveService,
    Services,
    area_services,
)

Source = Literal["health", "education", "social_care"]
SOURCES: Final[tuple[Source, ...]] = ("health", "education", "social_care")

# The demo's seed; SHOWCASE_MIN_CHILDREN is verified for it.
DEFAULT_SEED: Final = 7
# A fixed date, not the clock: the same seed must give the same files on any day it is run.
DEFAULT_TODAY: Final = date(2026, 1, 15)

_SCHOOL_AGE: Final = 4
_HEALTH_VISITING_UNTIL: Final = 5
# Of copies with a new family name, the share that keep the old one as a former name; of copies
# with given and family name swapped, the share with a slip in one of them as well.
_FORMER_RECORDED: Final = 0.5
_SWAP_WITH_SLIP: Final = 0.3


@dataclass(frozen=True)
class Prevalence:
    """How common each circumstance is, as a share of all children.

    Counts are exact (the share times the population, rounded) rather than drawn child by child, so
    that a small population reliably contains every kind of child the demo and tests need.
    `shielded` children are a subset of `social_care` ones: only a local authority shields.
    """

    social_care: float = 0.12
    shielded: float = 0.015
    sensitive_service: float = 0.03
    restricted: float = 0.005

    def __post_init__(self) -> None:
        for share in (self.social_care, self.shielded, self.sensitive_service, self.restricted):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"a prevalence is a share between 0 and 1, not {share}")
        if self.shielded > self.social_care:
            raise ValueError("shielded children are a subset of children known to social care")


@dataclass(frozen=True)
class Population:
    """Each agency's records, plus the ground truth: (source, record_id) -> true child id, and
    (source, record_id) -> the faults a copy shows (copies without one are left out)."""

    health: tuple[ConnectorRecord, ...]
    education: tuple[ConnectorRecord, ...]
    social_care: tuple[ConnectorRecord, ...]
    truth: dict[tuple[str, str], str]
    faults: dict[tuple[str, str], tuple[Fault, ...]] = field(default_factory=dict)

    def records(self, source: Source) -> tuple[ConnectorRecord, ...]:
        match source:
            case "health":
                return self.health
            case "education":
                return self.education
            case "social_care":
                return self.social_care


class Status(Enum):
    """A child's level of social care involvement; each implies a consistent set of indicators
    (a child on a protection plan or looked after is by definition also a child in need)."""

    EARLY_HELP = Indicators(
        child_protection_plan=False, looked_after=False, child_in_need=False, early_help=True
    )
    CHILD_IN_NEED = Indicators(
        child_protection_plan=False, looked_after=False, child_in_need=True, early_help=False
    )
    CHILD_PROTECTION_PLAN = Indicators(
        child_protection_plan=True, looked_after=False, child_in_need=True, early_help=False
    )
    LOOKED_AFTER = Indicators(
        child_protection_plan=False, looked_after=True, child_in_need=True, early_help=False
    )


# Shares of the children known to social care, roughly as England's statistics have them.
_STATUS_SHARES: Final = (
    (Status.EARLY_HELP, 0.40),
    (Status.CHILD_IN_NEED, 0.30),
    (Status.CHILD_PROTECTION_PLAN, 0.13),
    (Status.LOOKED_AFTER, 0.17),
)
_CHILD_IN_NEED_ALSO_EARLY_HELP: Final = 0.10


@dataclass(frozen=True)
class _Circumstances:
    """What sets one child apart; `former_family` is set when the family name changed, and
    `stale_source` names the copy that still uses it."""

    status: Status | None
    shielded: bool
    sensitive: SensitiveService | None
    restricted: bool
    former_family: str | None
    stale_source: Source | None


def generate_population(
    seed: int,
    children: int,
    today: date | None = None,
    *,
    noise: NoiseProfile | None = None,
    prevalence: Prevalence | None = None,
) -> Population:
    """Generate `children` children aged 0-17 on `today` and every agency's records about them.

    The same arguments always give the same population: all randomness comes from one
    `random.Random(seed)`, and `today` defaults to DEFAULT_TODAY rather than the clock. Records are
    shuffled and numbered per agency, so neither order nor record id hints at which records match.
    """
    if children < 0:
        raise ValueError("children must not be negative")
    with cyclic_gc_paused():
        return _generate(
            random.Random(seed),
            children,
            today or DEFAULT_TODAY,
            noise or NoiseProfile(),
            prevalence or Prevalence(),
        )


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector while building a population.

    Generation allocates millions of small objects that are all kept, so the collector's full
    passes rescan an ever-growing heap and cost three times the generation itself; nothing built
    here forms a cycle, so pausing it frees no less memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _generate(
    rng: random.Random, children: int, today: date, noise: NoiseProfile, prevalence: Prevalence
) -> Population:
    issuer = IdentifierIssuer(rng)
    services = area_services(
        rng, issuer, children, prevalence.social_care, prevalence.sensitive_service
    )
    kids = draw_children(
        rng,
        issuer,
        services,
        children,
        today,
        lookalike_twins=noise.lookalike_twins,
        namesakes=noise.namesakes,
    )
    circumstances = _circumstances(rng, kids, today, prevalence, noise)
    build = _RecordBuilder(rng, issuer, services, today, noise)
    truth: dict[tuple[str, str], str] = {}
    faults: dict[tuple[str, str], tuple[Fault, ...]] = {}

    def records(
        source: Source,
        holders: list[int],
        record: Callable[[str, Child, _Circumstances], _Built],
    ) -> tuple[ConnectorRecord, ...]:
        rng.shuffle(holders)
        built = []
        for number, i in enumerate(holders, start=1):
            record_id = _RECORD_ID_FORMATS[source].format(number)
            made, shown = record(record_id, kids[i], circumstances[i])
            built.append(made)
            truth[source, record_id] = kids[i].child_id
            if shown:
                faults[source, record_id] = shown
        return tuple(built)

    everyone = list(range(len(kids)))
    health = records("health", everyone, build.health)
    pupils = [i for i in everyone if age(kids[i].born, today) >= _SCHOOL_AGE]
    education = records("education", pupils, build.education)
    known = [i for i in everyone if circumstances[i].status is not None]
    social_care = records("social_care", known, build.social_care)
    return Population(
        health=health, education=education, social_care=social_care, truth=truth, faults=faults
    )


_RECORD_ID_FORMATS: Final[dict[Source, str]] = {
    "health": "H{:07d}",
    "education": "E{:07d}",
    "social_care": "LA-{:06d}",
}


def _circumstances(
    rng: random.Random,
    kids: Sequence[Child],
    today: date,
    prevalence: Prevalence,
    noise: NoiseProfile,
) -> list[_Circumstances]:
    count = len(kids)
    everyone = range(count)
    ages = [age(kid.born, today) for kid in kids]

    def share(rate: float, among: Sequence[int] = everyone) -> list[int]:
        return rng.sample(among, min(len(among), round(rate * count)))

    known = share(prevalence.social_care)
    shielded = set(known[: round(prevalence.shielded * count)])
    status = deal_statuses(rng, known)
    youngest = min(service.minimum_age for service in SENSITIVE_SERVICES)
    sensitive = {
        i: _sensitive_service(rng, ages[i])
        for i in share(prevalence.sensitive_service, [i for i in everyone if ages[i] >= youngest])
    }
    restricted = set(share(prevalence.restricted))
    renamed = set(share(noise.name_change))
    result = []
    for i, kid in enumerate(kids):
        former = stale = None
        if i in renamed:
            former = rng.choice([name for name in names.FAMILY if name != kid.family])
            copies: list[Source] = ["education"] if ages[i] >= _SCHOOL_AGE else []
            copies += ["social_care"] if i in status else []
            stale = rng.choice(copies) if copies else None
        result.append(
            _Circumstances(
                status=status.get(i),
                shielded=i in shielded,
                sensitive=sensitive.get(i),
                restricted=i in restricted,
                former_family=former,
                stale_source=stale,
            )
        )
    return result


def deal_statuses(rng: random.Random, known: Sequence[int]) -> dict[int, Status]:
    """Deal the children known to social care into statuses, in exact proportion."""
    dealt = rng.sample(known, len(known))
    statuses: dict[int, Status] = {}
    start, cumulative = 0, 0.0
    for status, status_share in _STATUS_SHARES:
        cumulative += status_share
        end = round(cumulative * len(dealt))
        statuses.update((i, status) for i in dealt[start:end])
        start = end
    return statuses


def _sensitive_service(rng: random.Random, child_age: int) -> SensitiveService:
    offered = [service for service in SENSITIVE_SERVICES if child_age >= service.minimum_age]
    return rng.choices(offered, [service.weight for service in offered])[0]


# A record, and the faults it shows against the health record (none for the health record).
_Built = tuple[ConnectorRecord, tuple[Fault, ...]]
# Faults a looked-after child's placement address replaces.
_ADDRESS_FAULTS: Final = frozenset({Fault.MOVED, Fault.NO_ADDRESS})

# How far behind today each agency's extract may be: the spine is near-live, schools export weekly.
_STALENESS_DAYS: Final[dict[Source, int]] = {"health": 1, "education": 7, "social_care": 2}


class _RecordBuilder:
    """Writes each agency's record about one child.

    Health is the original; the education and social care records are copies made by hand, so
    their name, date of birth and address pass through the noise profile, and they hold the NHS
    number only as often as those agencies really do.
    """

    def __init__(
        self,
        rng: random.Random,
        issuer: IdentifierIssuer,
        services: Services,
        today: date,
        noise: NoiseProfile,
    ) -> None:
        self._rng = rng
        self._issuer = issuer
        self._services = services
        self._today = today
        self._noise = noise

    def health(self, record_id: str, kid: Child, circumstances: _Circumstances) -> _Built:
        household = kid.household
        if age(kid.born, self._today) < _HEALTH_VISITING_UNTIL:
            universal = Involvement(
                service="Health visiting",
                organisation=COMMUNITY_HEALTH,
                practitioner=household.practice.health_visitor,
                since=min(kid.born + timedelta(days=self._rng.randint(10, 14)), self._today),
            )
        else:
            school, started = self._school(kid)
            universal = Involvement(
                service="School nursing",
                organisation=COMMUNITY_HEALTH,
                practitioner=school.nurse,
                since=started,
            )
        involvements = [universal]
        sensitive = circumstances.sensitive
        if sensitive is not None:
            involvements.append(
                Involvement(
                    service=sensitive.service,
                    organisation=sensitive.organisation,
                    practitioner=self._rng.choice(
                        self._services.sensitive_practitioners[sensitive.service]
                    ),
                    since=self._since(years_later(kid.born, sensitive.minimum_age), years_back=2),
                    sensitive=True,
                    broker=self._services.safeguarding_hub,
                )
            )
        record = ConnectorRecord(
            record_id=record_id,
            identifiers=Identifiers(nhs_number=kid.nhs_number),
            name=PersonName(
                given=kid.given, family=kid.family, former_family=_former(circumstances)
            ),
            date_of_birth=kid.born,
            sex=kid.sex,
            address=household.address,
            gp_practice=household.practice.practice,
            carers=list(household.carers),
            involvements=involvements,
            flags=RecordFlags(restricted=circumstances.restricted),
            as_of=self._as_of("health"),
        )
        return record, ()

    def education(self, record_id: str, kid: Child, circumstances: _Circumstances) -> _Built:
        school, started = self._school(kid)
        name, born, address, faults = self._copy(kid, circumstances, "education")
        carers, faults = self._copied_carers(kid, faults)
        first_school = kid.household.primary.establishment
        record = ConnectorRecord(
            record_id=record_id,
            identifiers=Identifiers(
                upn=self._issuer.upn(first_school, primary_start(kid.born, self._today).year),
                nhs_number=self._nhs_number(kid, self._noise.education_nhs_number),
            ),
            name=name,
            date_of_birth=born,
            sex=kid.sex,
            address=address,
            school=school.school,
            carers=carers,
            involvements=[
                Involvement(
                    service="School safeguarding",
                    organisation=school.school.name,
                    practitioner=school.safeguarding_lead,
                    since=started,
                )
            ],
            as_of=self._as_of("education"),
        )
        return record, faults

    def social_care(self, record_id: str, kid: Child, circumstances: _Circumstances) -> _Built:
        status = circumstances.status
        if status is None:
            raise ValueError("only a child known to social care has a social care record")
        name, born, address, faults = self._copy(kid, circumstances, "social_care")
        carers, faults = self._copied_carers(kid, faults)
        if status is Status.LOOKED_AFTER:
            # In placement: the foster carers look after the child, the parents keep their rights.
            address = places.home_address(self._rng)
            carers = self._foster_carers() + [c for c in carers if c.parental_responsibility]
            faults = tuple(sorted({*faults, Fault.PLACEMENT} - _ADDRESS_FAULTS))
        record = ConnectorRecord(
            record_id=record_id,
            identifiers=Identifiers(
                local_id=record_id,
                nhs_number=self._nhs_number(kid, self._noise.social_care_nhs_number),
            ),
            name=name,
            date_of_birth=born,
            sex=kid.sex,
            address=address,
            carers=carers,
            involvements=self._social_care_involvements(kid, status),
            indicators=status.value,
            flags=RecordFlags(shielded=circumstances.shielded),
            as_of=self._as_of("social_care"),
        )
        return record, faults

    def _social_care_involvements(self, kid: Child, status: Status) -> list[Involvement]:
        rng, services = self._rng, self._services
        early_help = Involvement(
            service="Early help",
            organisation=EARLY_HELP,
            practitioner=rng.choice(services.early_help_leads),
            lead=status is Status.EARLY_HELP,
            since=self._since(kid.born, years_back=2),
        )
        if status is Status.EARLY_HELP:
            return [early_help]
        social_worker = Involvement(
            service="Children's social care",
            organisation=CHILDRENS_SERVICES,
            practitioner=rng.choice(services.social_workers),
            lead=True,
            since=self._since(kid.born, years_back=3),
        )
        if status is Status.CHILD_IN_NEED and rng.random() < _CHILD_IN_NEED_ALSO_EARLY_HELP:
            return [social_worker, early_help]
        return [social_worker]

    def _foster_carers(self) -> list[Carer]:
        rng = self._rng
        family = rng.choice(names.FAMILY)
        return [
            Carer(
                name=f"{rng.choice(names.GIVEN)} {family}",
                relationship="Foster carer",
                parental_responsibility=False,
                phone=places.mobile(rng),
            )
            for _ in range(rng.choice((1, 2)))
        ]

    def _copy(
        self, kid: Child, circumstances: _Circumstances, source: Source
    ) -> tuple[PersonName, date | None, Address | None, tuple[Fault, ...]]:
        """The child's name, date of birth and address as a copying agency holds them, and the
        faults that make them differ from the health record's.

        Faults are kept per field, so that one which replaces a field's value (another given
        name, a missing date) also replaces the faults that field showed before.
        """
        rng, noise = self._rng, self._noise
        given, family, former = kid.given, kid.family, _former(circumstances)
        given_faults: list[Fault] = []
        family_faults: list[Fault] = []
        born_faults: list[Fault] = []
        address_faults: list[Fault] = []
        if circumstances.stale_source == source and circumstances.former_family is not None:
            family, former = circumstances.former_family, []
            family_faults.append(Fault.STALE_FAMILY)
        if rng.random() < noise.nickname and given in names.NICKNAMES:
            given = rng.choice(names.NICKNAMES[given])
            given_faults.append(Fault.NICKNAME)
        if rng.random() < noise.typo:
            given, family, fault = slip(rng, given, family)
            (given_faults if fault is Fault.GIVEN_TYPO else family_faults).append(fault)
        born: date | None = kid.born
        if rng.random() < noise.swapped_day_month:
            swapped = swapped_day_month(kid.born)
            if swapped is not None and swapped <= self._today:
                born = swapped
                born_faults.append(Fault.SWAPPED_DAY_MONTH)
        address: Address | None = kid.household.address
        if rng.random() < noise.moved_address:
            address = places.home_address(rng)
            address_faults.append(Fault.MOVED)
        # The hard cases: each draws only when its rate is above zero (see NoiseProfile).
        if happens(rng, noise.known_as):
            pool = names.FEMALE_GIVEN if kid.sex is Sex.FEMALE else names.MALE_GIVEN
            given, given_faults = another_given_name(rng, kid.given, pool), [Fault.KNOWN_AS]
        if happens(rng, noise.new_family) and Fault.STALE_FAMILY not in family_faults:
            old = (kid.family, *former)
            family = rng.choice([name for name in names.FAMILY if name not in old])
            if rng.random() < _FORMER_RECORDED:
                former, family_faults = [kid.family, *former], [Fault.NEW_FAMILY]
            else:
                family_faults = [Fault.NEW_FAMILY_UNRECORDED]
        if happens(rng, noise.names_swapped):
            given, family = family, given
            given_faults, family_faults = (
                [*family_faults, Fault.NAMES_SWAPPED],
                [*given_faults, Fault.NAMES_SWAPPED],
            )
            if rng.random() < _SWAP_WITH_SLIP:
                given, family, fault = slip(rng, given, family)
                (given_faults if fault is Fault.GIVEN_TYPO else family_faults).append(fault)
        if happens(rng, noise.wrong_date_of_birth):
            earliest = earliest_birthday(self._today)
            born = wrong_date_of_birth(rng, kid.born, earliest, self._today)
            born_faults = [Fault.WRONG_DATE_OF_BIRTH]
        if happens(rng, noise.missing_date_of_birth):
            born, born_faults = None, [Fault.NO_DATE_OF_BIRTH]
        if happens(rng, noise.missing_address):
            address, address_faults = None, [Fault.NO_ADDRESS]
        if address is not None and happens(rng, noise.address_written_differently):
            address = places.rewritten(rng, address)
            address_faults.append(Fault.ADDRESS_WRITTEN_DIFFERENTLY)
        faults = {*given_faults, *family_faults, *born_faults, *address_faults}
        name = PersonName(given=given, family=family, former_family=former)
        return name, born, address, tuple(sorted(faults))

    def _copied_carers(
        self, kid: Child, faults: tuple[Fault, ...]
    ) -> tuple[list[Carer], tuple[Fault, ...]]:
        """The household's carers as a copying agency records them: all of them, or (at the
        noise profile's rate) only one, none, or each with a slip in the given name."""
        carers = list(kid.household.carers)
        if not carers or not happens(self._rng, self._noise.carers_recorded_differently):
            return carers, faults
        way = self._rng.choice(("one", "none", "slips"))
        if way == "one":
            carers = [self._rng.choice(carers)]
        elif way == "none":
            carers = []
        else:
            carers = [_carer_with_slip(self._rng, carer) for carer in carers]
        return carers, tuple(sorted({*faults, Fault.CARERS_RECORDED_DIFFERENTLY}))

    def _nhs_number(self, kid: Child, held: float) -> str | None:
        return kid.nhs_number if self._rng.random() < held else None

    def _school(self, kid: Child) -> tuple[LocalSchool, date]:
        """The school a child attends now, and the September they started there."""
        started_secondary = secondary_start(kid.born)
        if started_secondary <= self._today:
            return kid.household.secondary, started_secondary
        return kid.household.primary, primary_start(kid.born, self._today)

    def _since(self, not_before: date, years_back: int) -> date:
        earliest = max(not_before, years_later(self._today, -years_back))
        return earliest + timedelta(
            days=self._rng.randint(0, max(0, (self._today - earliest).days))
        )

    def _as_of(self, source: Source) -> datetime:
        extracted = datetime.combine(self._today, time(6, 0), tzinfo=UTC)
        return extracted - timedelta(minutes=self._rng.randrange(_STALENESS_DAYS[source] * 1440))


def _carer_with_slip(rng: random.Random, carer: Carer) -> Carer:
    given, _, family = carer.name.partition(" ")
    return carer.model_copy(update={"name": f"{misspell(rng, given)} {family}"})


def _former(circumstances: _Circumstances) -> list[str]:
    return [] if circumstances.former_family is None else [circumstances.former_family]
