"""The sensitive-service vocabulary (connectors.sensitive_services) at English service naming.

English NHS and council naming the matcher missed, so that an unmarked involvement showed its
provider: brand names of the commissioned providers ("Brook", "Forward Leeds"), mental health
services not called "mental health" ("Crisis team", "Early intervention in psychosis"), and a
sensitive provider named only by the involvement's organisation or practitioner's role.
"""

from __future__ import annotations

import pytest

from connectors.minimisation import minimise
from connectors.protocol import Contact, FieldId, Involvement
from connectors.sensitive_services import as_marked, is_sensitive_service
from gateway.types import Purpose
from tests.factories import (
    NHS,
    answered,
    decided,
    health_record,
    matched,
    social_care_record,
)

PRACTITIONER = Contact(name="Sam Worker", role="Key worker", phone="07700 900123")


@pytest.mark.parametrize(
    "service",
    [
        "Brook",
        "Brook Leeds",
        "Crisis team",
        "Crisis Resolution and Home Treatment",
        "Home treatment team",
        "Early intervention in psychosis",
        "EIP team",
        "Emotional health and wellbeing service",
        "Emotional wellbeing service",
        "MHST",
        "Kooth",
        "Psychological therapies",
        "Child psychotherapy",
        "Consultant psychiatrist",
        "CaSH clinic",
        "Chlamydia screening",
        "C-Card scheme",
        "SARC",
        "Sexual assault referral centre",
        "BPAS",
        "Forward Leeds",
        "Change Grow Live",
        "CGL young people's service",
        "We Are With You",
        "Addaction",
        "Turning Point",
        "Needle exchange",
        "Harm reduction service",
    ],
)
def test_english_naming_of_a_sensitive_service_is_in_the_vocabulary(service):
    assert is_sensitive_service(service)


@pytest.mark.parametrize(
    "service",
    [
        "Brookfield Primary School",  # words, not letters
        "Cashier",
        "Health visiting",
        "School nursing",
        "Educational welfare",
    ],
)
def test_ordinary_services_stay_outside_the_vocabulary(service):
    assert not is_sensitive_service(service)


@pytest.mark.parametrize(
    "involvement",
    [
        Involvement(service="Young people's service", organisation="Forward Leeds"),
        Involvement(service="Outreach", organisation="Leeds CAMHS"),
        Involvement(
            service="Counselling",
            practitioner=Contact(name="Dr Mind", role="CAMHS nurse", phone="07700 900002"),
        ),
    ],
)
def test_a_sensitive_organisation_or_role_marks_the_involvement(involvement):
    assert as_marked(involvement).sensitive
    assert minimise_one(involvement) == Involvement(service=None, sensitive=True)


def test_an_ordinary_organisation_and_role_do_not():
    ordinary = Involvement(
        service="Early help", organisation="Leeds City Council", practitioner=PRACTITIONER
    )
    assert as_marked(ordinary) is ordinary


def minimise_one(involvement: Involvement) -> Involvement:
    record = social_care_record(NHS).model_copy(update={"involvements": [involvement]})
    return (minimise(record, [FieldId.INVOLVEMENTS]).involvements or [])[0]


async def _decide(role: str, purpose: Purpose, involvement: Involvement):
    record = social_care_record(NHS).model_copy(update={"involvements": [involvement]})
    records = (matched(health_record(), "health"), matched(record, "social_care"))
    return await decided(role, purpose, answered(*records))


@pytest.mark.anyio
async def test_decide_brokers_an_involvement_whose_organisation_is_a_sensitive_provider():
    unmarked = Involvement(
        service="Young people's service", organisation="Forward Leeds", practitioner=PRACTITIONER
    )
    release = await _decide("gp", Purpose.DIRECT_CARE, unmarked)

    by_source = {r.matched.source: r.record.involvements for r in release.records}
    assert by_source["social_care"] == [Involvement(service=None, sensitive=True)]
    assert ("social_care", "SENSITIVE_SERVICE") in {
        (w.source, w.reason)
        for w in release.withheld
        if w.field is FieldId.SENSITIVE_SERVICE_DETAILS
    }


def test_details_requested_still_show_the_provider_of_an_involvement_marked_by_organisation():
    unmarked = Involvement(
        service="Outreach", organisation="Forward Leeds", practitioner=PRACTITIONER
    )
    record = social_care_record(NHS).model_copy(update={"involvements": [unmarked]})

    asked = [FieldId.INVOLVEMENTS, FieldId.SENSITIVE_SERVICE_DETAILS]
    assert minimise(record, asked).involvements == [unmarked.model_copy(update={"sensitive": True})]
