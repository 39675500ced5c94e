"""The organisations and practitioners of the synthetic area: GP practices with their health
visitors, schools with their safeguarding leads and nurses, and the social care and sensitive
health teams.

Practitioners are shared by many children, as they are in life, and teams are sized to the
population so that caseloads stay plausible whether it holds a hundred children or a hundred
thousand.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from connectors.protocol import Contact, GpPractice, School
from connectors.synthetic import names, places
from connectors.synthetic.identifiers import IdentifierIssuer

COMMUNITY_HEALTH: Final = f"{places.TOWN} Community Health Services"
CHILDRENS_SERVICES: Final = f"{places.TOWN} Children's Social Care"
EARLY_HELP: Final = f"{places.TOWN} Early Help Service"


@dataclass(frozen=True)
class SensitiveService:
    """A service whose involvement is recorded only with consent and whose contact is brokered;
    `weight` is its share of sensitive involvements among children old enough for it."""

    service: str
    organisation: str
    role: str
    minimum_age: int
    weight: float


SENSITIVE_SERVICES: Final = (
    SensitiveService(
        "Child and adolescent mental health service",
        f"{places.TOWN} CAMHS",
        "CAMHS practitioner",
        minimum_age=5,
        weight=0.6,
    ),
    SensitiveService(
        "Sexual health service",
        f"{places.TOWN} Young People's Sexual Health",
        "Sexual health nurse",
        minimum_age=13,
        weight=0.25,
    ),
    SensitiveService(
        "Substance misuse service",
        f"{places.TOWN} Young People's Drug and Alcohol Service",
        "Substance misuse worker",
        minimum_age=13,
        weight=0.15,
    ),
)


@dataclass(frozen=True)
class LocalSchool:
    """A school as the generator sees it: what a record shows, plus the DfE establishment number
    its UPNs are allocated under and the school nurse who covers it."""

    establishment: str
    school: School
    safeguarding_lead: Contact
    nurse: Contact


@dataclass(frozen=True)
class LocalPractice:
    """A GP practice and the health visitor attached to it, who sees its under-fives."""

    practice: GpPractice
    health_visitor: Contact


@dataclass(frozen=True)
class Services:
    """Everyone a child's records can point to, built once per population."""

    practices: tuple[LocalPractice, ...]
    primaries: tuple[LocalSchool, ...]
    secondaries: tuple[LocalSchool, ...]
    social_workers: tuple[Contact, ...]
    early_help_leads: tuple[Contact, ...]
    sensitive_practitioners: dict[str, tuple[Contact, ...]]
    safeguarding_hub: Contact


def area_services(
    rng: random.Random,
    issuer: IdentifierIssuer,
    children: int,
    social_care_share: float,
    sensitive_share: float,
) -> Services:
    """The services of an area holding `children` children, of whom the given shares are known to
    social care or to a sensitive health service; team sizes follow from typical caseloads."""
    nurses = _team(rng, _clamp(children // 2500, 1, 200), "School nurse", "example.nhs.uk")

    def school(phase_digit: int, kinds: Sequence[str]) -> LocalSchool:
        phone = places.landline(rng)
        if rng.random() < 0.2:
            name = f"St {rng.choice(names.SAINTS)}'s Catholic {rng.choice(kinds)}"
        else:
            name = f"{rng.choice(places.STREET_NAMES)} {rng.choice(kinds)}"
        return LocalSchool(
            establishment=issuer.establishment(phase_digit),
            school=School(urn=issuer.urn(), name=name, phone=phone),
            safeguarding_lead=practitioner(
                rng, "Designated safeguarding lead", "example.sch.uk", phone
            ),
            nurse=rng.choice(nurses),
        )

    def practice() -> LocalPractice:
        kind = rng.choice(("Surgery", "Medical Centre", "Health Centre", "Medical Practice"))
        return LocalPractice(
            practice=GpPractice(
                ods_code=issuer.ods_code(),
                name=f"{rng.choice(places.STREET_NAMES)} {kind}",
                phone=places.landline(rng),
            ),
            health_visitor=practitioner(rng, "Health visitor", "example.nhs.uk"),
        )

    cases = children * social_care_share
    sensitive_cases = children * sensitive_share
    return Services(
        practices=tuple(practice() for _ in range(_clamp(children // 1800, 2, 400))),
        primaries=tuple(
            school(2, ("Primary School", "Primary Academy", "Church of England Primary School"))
            for _ in range(_clamp(children // 650, 2, 600))
        ),
        secondaries=tuple(
            school(4, ("High School", "Academy", "School"))
            for _ in range(_clamp(children // 2500, 1, 300))
        ),
        social_workers=_team(
            rng, _clamp(int(cases / 30), 1, 2000), "Social worker", "example.gov.uk"
        ),
        early_help_leads=_team(
            rng, _clamp(int(cases / 40), 1, 2000), "Early help lead practitioner", "example.gov.uk"
        ),
        sensitive_practitioners={
            service.service: _team(
                rng, _clamp(int(sensitive_cases / 40), 1, 500), service.role, "example.nhs.uk"
            )
            for service in SENSITIVE_SERVICES
        },
        safeguarding_hub=Contact(
            name="Health safeguarding hub",
            role="Duty safeguarding nurse",
            phone=places.landline(rng),
            email="safeguarding.hub@example.nhs.uk",
        ),
    )


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _email(given: str, family: str, domain: str) -> str:
    local = f"{given}.{family}".lower()
    return "".join(c for c in local if c.isalpha() or c == ".") + f"@{domain}"


def practitioner(rng: random.Random, role: str, domain: str, phone: str | None = None) -> Contact:
    """A named practitioner with a work email at `domain`, on `phone` or else a Leeds line."""
    given = rng.choice(names.GIVEN)
    family = rng.choice(names.FAMILY)
    return Contact(
        name=f"{given} {family}",
        role=role,
        phone=phone or places.landline(rng),
        email=_email(given, family, domain),
    )


def _team(rng: random.Random, size: int, role: str, domain: str) -> tuple[Contact, ...]:
    return tuple(practitioner(rng, role, domain) for _ in range(size))
