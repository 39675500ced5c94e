"""The routing stage's parts: which agencies the identity sources' records lead to, how agencies
asked only when routed are planned (by kind), and how their config is checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from connectors.protocol import Address, FieldId, GpPractice, School
from gateway.config import REPO_ROOT, Asked, SourceConfig, SourcesFile, load_sources_file
from gateway.plan import Planning, make_plan
from gateway.routing import UNCONFIRMED_IDENTIFIER, Directory
from gateway.types import (
    LOCATOR_SOURCE,
    AskedBecause,
    LookupOutcome,
    LookupQuery,
    LookupResult,
    Purpose,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import health_record, lookup_context, matched, school_record

PROVIDES_LA = (FieldId.INVOLVEMENTS, FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER)


def _agency(name: str, kind: str, *routes: str, shield: bool = False) -> SourceConfig:
    provides = PROVIDES_LA if kind == "social_care" else (FieldId.INVOLVEMENTS, FieldId.SCHOOL)
    return SourceConfig(
        name=name,
        url=f"http://127.0.0.1:9/{name}",
        provides=provides,
        kind=kind,
        asked=Asked.WHEN_ROUTED,
        routes=routes,
        shield_authority=shield,
    )


HEALTH = SourceConfig(
    name="health",
    url="http://127.0.0.1:9/health",
    provides=(FieldId.NAME, FieldId.ADDRESS, FieldId.GP_PRACTICE),
    holds_every_child=True,
)
AGENCIES = [
    _agency("la_e0800001", "social_care", "la:E0800001", shield=True),
    _agency("la_e0800002", "social_care", "la:E0800002", shield=True),
    _agency("gp_y00001", "gp_practice", "ods:Y00001"),
    _agency("gp_y00002", "gp_practice", "ods:Y00002"),
    _agency("school_100001", "school", "urn:100001"),
]
DISTRICTS = {"LS1": "E0800001", "LS6": "E0800001", "M1": "E0800002"}


def test_the_identity_records_lead_to_the_practice_the_authority_and_the_school():
    directory = Directory.of([HEALTH, *AGENCIES], DISTRICTS)
    health = health_record(
        address=Address(lines=["1 Test Street"], postcode="ls6 2ab"),
        gp_practice=GpPractice(ods_code="y00001", name="Test Surgery"),
    )
    pupil = school_record(school=School(urn="100001", name="Test Primary"))

    routed = directory.routed([matched(health, "health"), matched(pupil, "education")])

    assert routed == {
        "la_e0800001": {AskedBecause.ROUTED_BY_ADDRESS},
        "gp_y00001": {AskedBecause.ROUTED_BY_GP},
        "school_100001": {AskedBecause.ROUTED_BY_SCHOOL},
    }
    assert set(directory.agencies) == {a.name for a in AGENCIES}  # health is asked always


@pytest.mark.parametrize("postcode", ["NFA", "ZZ9 9ZZ", "not a postcode"])
def test_an_address_with_no_known_district_routes_to_no_authority(postcode):
    directory = Directory.of(AGENCIES, DISTRICTS)
    record = health_record(
        address=Address(lines=["1 Test Street"], postcode=postcode),
        gp_practice=GpPractice(ods_code="Q99999", name="Unlisted Surgery"),
    )

    assert directory.routed([matched(record, "health")]) == {}


def test_agencies_asked_when_routed_are_planned_once_per_kind():
    planning = Planning.of([HEALTH, *AGENCIES], locator=True)

    assert [s.name for s in planning.inputs] == ["health", "social_care", "gp_practice", "school"]
    social_care = next(s for s in planning.inputs if s.name == "social_care")
    assert social_care.shield_authority
    assert planning.kinds["la_e0800002"] == "social_care"
    # A silent locator may hide a shielding authority the child is known to.
    assert planning.shield_authorities == {"la_e0800001", "la_e0800002", LOCATOR_SOURCE}
    assert LOCATOR_SOURCE not in Planning.of([HEALTH, *AGENCIES]).shield_authorities


@pytest.mark.anyio
async def test_the_plan_names_kinds_and_says_what_each_agency_was_planned_as():
    lookup = lookup_context(
        LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, nhs_number="9434765919")
    )

    plan = await make_plan(lookup, Planning.of([HEALTH, *AGENCIES], locator=True))

    assert {"health", "social_care", "school"} <= set(plan.sources)
    assert plan.planned_as("la_e0800001") == "social_care"
    assert plan.planned_as("health") == "health"
    assert plan.unrequested["social_care"] <= frozenset(PROVIDES_LA)


def test_a_kind_may_not_share_a_source_name():
    with pytest.raises(ValidationError, match="a kind cannot also be a source name"):
        SourcesFile(sources=[HEALTH, _agency("health_1", "health", "ods:Y00002")])


@pytest.mark.parametrize("route", ["la:e0800001", "school:100001", "urn:", "ods:Y0 0001"])
def test_a_malformed_route_key_is_refused(route):
    with pytest.raises(ValidationError):
        _agency("la_e0800001", "social_care", route)


def test_a_postcode_district_must_be_an_outward_code():
    with pytest.raises(ValidationError):
        SourcesFile(sources=AGENCIES, postcode_districts={"LS1 4AB": "E0800001"})


def test_the_readme_example_of_a_routed_agency_loads(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = next(
        b.split("\n", 1)[1] for b in readme.split("```toml")[1:] if 'asked = "when_routed"' in b
    ).split("```")[0]
    config = tmp_path / "sources.toml"
    config.write_text(block)

    loaded = load_sources_file(config)

    (agency,) = loaded.sources
    assert agency.asked is Asked.WHEN_ROUTED
    assert agency.policy_name == "social_care"
    assert Directory.of(loaded.sources, loaded.postcode_districts).routed(
        [matched(health_record(address=Address(lines=[], postcode="LS6 2AB")), "health")]
    ) == {"la_e0800001": {AskedBecause.ROUTED_BY_ADDRESS}}


def test_routes_come_from_each_identity_sources_latest_record_only():
    """A source sending many records of the child (up to the protocol's fifty), each naming
    another practice or school, leads to its latest record's: the current registration. Every
    record's route would send the child's identifiers to as many agencies."""
    directory = Directory.of([HEALTH, *AGENCIES], DISTRICTS)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    current = health_record(
        record_id="current",
        as_of=now,
        gp_practice=GpPractice(ods_code="Y00001", name="Test Surgery"),
        address=Address(lines=["1 Test Street"], postcode="LS6 2AB"),
    )
    older = [
        health_record(
            record_id=f"old-{n}",
            as_of=now - timedelta(days=n),
            gp_practice=GpPractice(ods_code="Y00002", name="Old Surgery"),
            address=Address(lines=["9 Far Road"], postcode="M1 1AA"),
        )
        for n in (1, 400)
    ]
    pupil = school_record(school=School(urn="100001", name="Test Primary"))

    routed = directory.routed(
        [matched(r, "health") for r in (older[0], current, older[1])]
        + [matched(pupil, "education")]
    )

    assert routed == {
        "la_e0800001": {AskedBecause.ROUTED_BY_ADDRESS},
        "gp_y00001": {AskedBecause.ROUTED_BY_GP},
        "school_100001": {AskedBecause.ROUTED_BY_SCHOOL},
    }


def test_a_lookup_whose_locator_could_not_be_asked_is_not_complete():
    """UNCONFIRMED_IDENTIFIER: the child's shielding is unknown - the portal reads `complete` to
    say an answer is incomplete, and a missing indicator as "not known" rather than "none"."""
    locator_not_asked = SourceAnswer(
        LOCATOR_SOURCE,
        SourceStatus.NOT_ASKED,
        error_code=UNCONFIRMED_IDENTIFIER,
        asked_because=(AskedBecause.CONFIGURED,),
    )
    result = LookupResult(
        "request",
        "audit",
        LookupOutcome.FOUND,
        None,
        "revision",
        (
            SourceAnswer("health", SourceStatus.ANSWERED),
            SourceAnswer("education", SourceStatus.NO_RECORD),
            locator_not_asked,
        ),
    )
    assert result.complete is False
