"""Which sources say whether a child is NHS-restricted (`restriction_authority`), and that they are
asked: on every permitted lookup (plan.rego, as shield authorities are), never only when routed,
and in the national shape as in the reference one. A restriction authority the plan left out had
made every lookup of an identity-only role (the local authority's shielding team) say the
restriction could not be checked, and every demographic search of theirs find nobody.
"""

import pytest

from gateway.config import Asked, SourceConfig
from gateway.decide import child_flags
from gateway.national import national_sources
from gateway.plan import Planning
from gateway.types import SourceAnswer, SourceStatus
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import reference_stack

SEARCH = """query($demographics: DemographicsInput!) {
  child(identify: {demographics: $demographics}, purpose: SHIELDING_ADMINISTRATION) {
    outcome complete sources { source status } records { source method }
    child { name { given family } } withheld { field source reason } } }"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    population = {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record()],
    }
    with reference_stack(tmp_path_factory.mktemp("restriction-authorities"), population) as gw:
        yield gw


def _search(stack):
    person = {
        "givenName": "Amelia",
        "familyName": "Hart",
        "dateOfBirth": "2019-03-04",
        "postcode": "LS6 2AB",
    }
    body = {"query": SEARCH, "variables": {"demographics": person}}
    return stack.post(body, stack.token("la_shielding_admin")).json()


def test_shielding_team_lookup_of_a_clear_child_is_not_told_restriction_unknown(stack):
    """Nothing failed and the health source was simply not planned: no withheld field may say
    the source holding the NHS restricted flag did not answer."""
    body = stack.lookup("la_shielding_admin", NHS, "SHIELDING_ADMINISTRATION")
    assert "errors" not in body, body
    answer = body["data"]["child"]
    assert answer["outcome"] == "FOUND"
    assert {s["status"] for s in answer["sources"]} <= {"ANSWERED", "NO_RECORD", "NOT_ASKED"}
    reasons = {w["reason"] for w in answer["withheld"]}
    assert "RESTRICTION_STATUS_UNKNOWN" not in reasons, answer["withheld"]
    audited = stack.audited(answer["auditId"])
    assert audited["child_flags"].get("restriction_status_known", True) is True


def test_shielding_team_demographic_search_finds_a_clear_child(stack):
    """An unshielded, unrestricted child, every source answering: the shielding team's
    demographic search found them before 1fc8a46 (identity only); now it finds nobody."""
    body = _search(stack)
    assert "errors" not in body, body
    answer = body["data"]["child"]
    assert answer["outcome"] == "FOUND", answer


def _sources():
    national = {"agencies": [], "postcode_districts": {}}
    return national_sources(national, ("http://127.0.0.1:1",)).sources


def test_the_national_health_spine_is_a_restriction_authority():
    """`childlookup demo --national` and bench/national.py build their sources here: the spine
    was no restriction authority, and its silence cleared every child."""
    health = next(s for s in _sources() if s.name == "health")
    assert health.shield_authority is False
    assert health.holds_every_child is True  # taken from the reference profile ...
    assert health.restriction_authority is True  # ... and so should this be


def test_a_silent_national_health_spine_leaves_the_restriction_in_doubt():
    planning = Planning.of(_sources(), locator=True)
    answers = [
        SourceAnswer("health", SourceStatus.TIMED_OUT),
        SourceAnswer("education", SourceStatus.ANSWERED),
    ]
    flags = child_flags((), answers, planning.shield_authorities, planning.restriction_authorities)
    assert flags.restriction_status_known is False


def test_a_restriction_authority_is_never_asked_only_when_routed():
    """Asked only when routed, it may never be reached (no route found): its silence could not
    be told from its answer."""
    with pytest.raises(ValueError, match="restriction_authority is asked on every lookup"):
        SourceConfig(
            name="gp_y00001",
            url="http://127.0.0.1:1/gp_y00001",
            provides=("name", "gp_practice"),
            kind="gp_practice",
            asked=Asked.WHEN_ROUTED,
            routes=("ods:Y00001",),
            restriction_authority=True,
        )
