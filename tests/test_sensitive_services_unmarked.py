"""A sensitive service (mental health, sexual health, substance misuse) an agency did not mark
`sensitive` is brokered all the same: its provider is not shown to an ordinary user.

DOMAIN.md: for sensitive services 'ordinary users never see the provider's name or contact details
- contact is brokered'. That rested on every agency marking every such involvement; a local
authority listing "CAMHS / Leeds CAMHS / Dr Mind" unmarked showed Dr Mind's name and phone to a GP
beside the health record's brokered entry. The vocabulary (connectors.sensitive_services) is
applied twice: by the SDK's minimise, and by the gateway's decide stage for a connector not built
on the current SDK.
"""

from __future__ import annotations

import json

import pytest

from connectors.minimisation import minimise
from connectors.protocol import FieldId, Involvement
from connectors.sensitive_services import is_sensitive_service
from gateway.types import Purpose
from tests.factories import (
    UNMARKED_CAMHS,
    answered,
    decided,
    health_record,
    matched,
    social_care_with_unmarked_camhs,
    synthetic_nhs,
)
from tests.stack import reference_stack

CHILD = synthetic_nhs(91)
CALLERS = [
    ("gp", "DIRECT_CARE"),
    ("ed_clinician", "DIRECT_CARE"),
    ("social_worker", "SAFEGUARDING_ENQUIRY"),
]


# The vocabulary


@pytest.mark.parametrize(
    "service",
    [
        "CAMHS",
        "camhs",
        "Tier 3 CAMHS",
        "  CAMHS / Leeds ",
        "Child and Adolescent Mental Health Service",
        "Child and Adolescent Mental Health Services",
        "child & adolescent mental-health service",
        "Adult mental health",
        "Eating disorders service",
        "Sexual health clinic",
        "GUM",
        "GUM clinic",
        "Genito-urinary medicine",
        "Contraception",
        "Contraceptive services",
        "Sexual and Reproductive Health",
        "Drug and alcohol service",
        "Drugs & Alcohol team",
        "Young people's alcohol service",
        "Substance misuse",
        "Substance Use Service",
    ],
)
def test_a_service_in_the_vocabulary_is_sensitive(service):
    assert is_sensitive_service(service)


@pytest.mark.parametrize(
    "service",
    [
        None,
        "",
        "Health visiting",
        "School nursing",
        "GP",
        "children's social care",
        "Community paediatrics",
        "Speech and language therapy",
        "Youth justice",
        "Early help",
        "Gumtree outreach",  # words, not letters: "gum" inside another word is not GUM
    ],
)
def test_a_service_outside_the_vocabulary_is_not(service):
    assert not is_sensitive_service(service)


# The SDK's minimise


def test_minimise_brokers_an_unmarked_camhs_involvement():
    record = social_care_with_unmarked_camhs()

    involvements = minimise(record, [FieldId.INVOLVEMENTS]).involvements or []

    assert involvements[0] == record.involvements[0]  # children's social care: as it was
    assert involvements[1] == Involvement(service=None, sensitive=True)


def test_minimise_marks_an_unmarked_camhs_involvement_whose_details_were_requested():
    record = social_care_with_unmarked_camhs()

    asked = [FieldId.INVOLVEMENTS, FieldId.SENSITIVE_SERVICE_DETAILS]
    involvements = minimise(record, asked).involvements or []

    assert involvements[1] == UNMARKED_CAMHS.model_copy(update={"sensitive": True})


# The gateway's decide stage, for a connector that did not minimise with the vocabulary


@pytest.mark.anyio
async def test_decide_brokers_an_unmarked_camhs_involvement_as_it_does_a_marked_one():
    records = (
        matched(health_record(), "health"),
        matched(social_care_with_unmarked_camhs(), "social_care"),
    )
    release = await decided("gp", Purpose.DIRECT_CARE, answered(*records))

    by_source = {r.matched.source: r.record.involvements for r in release.records}
    assert by_source["social_care"][1] == Involvement(service=None, sensitive=True)
    assert by_source["health"][1].service is None  # the marked one, for comparison
    withheld = {
        (w.source, w.reason)
        for w in release.withheld
        if w.field is FieldId.SENSITIVE_SERVICE_DETAILS
    }
    assert withheld == {("health", "SENSITIVE_SERVICE"), ("social_care", "SENSITIVE_SERVICE")}


# End to end: real gateway, real Rego, reference connectors on loopback


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sensitive-unmarked")
    records = {
        "health": [health_record(CHILD, record_id=f"H-{CHILD}")],
        "social_care": [social_care_with_unmarked_camhs(CHILD)],
    }
    with reference_stack(tmp, records) as gateway:
        yield gateway


@pytest.mark.parametrize(("role", "purpose"), CALLERS)
def test_an_unmarked_camhs_involvement_does_not_show_its_provider(stack, role, purpose):
    answer = stack.lookup(role, CHILD, purpose)["data"]["child"]

    assert answer["outcome"] == "FOUND"
    involvements = answer["child"]["involvements"]
    shown = json.dumps(involvements)
    for detail in ("Dr Mind", "07700 900002", "CAMHS"):
        assert detail not in shown
    from_social_care = [i for i in involvements if i["provenance"]["source"] == "social_care"]
    assert [i["sensitive"] for i in from_social_care] == [False, True]
    assert from_social_care[1]["service"] is None
    assert from_social_care[1]["organisation"] is None
    assert from_social_care[1]["practitioner"] is None
    withheld = {
        (w["source"], w["reason"])
        for w in answer["withheld"]
        if w["field"] == "sensitive_service_details"
    }
    assert withheld == {("health", "SENSITIVE_SERVICE"), ("social_care", "SENSITIVE_SERVICE")}
