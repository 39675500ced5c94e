"""An NHS restriction (the PDS 'R' flag) is known only from the source holding it: while that
source is silent, nobody can say the child is not restricted, so where the child can be found is
withheld as RESTRICTION_STATUS_UNKNOWN - break-glass or not, since an override never lifts a
restriction. The gateway had told the policy plainly that the child was not restricted, and the
local authority's and the school's copies of the address, carers and school went out.

DOMAIN.md: the R flag 'removes address, telecom, GP and contacts'; fail closed. Real gateway, real
Rego, reference connectors on loopback (health slow past its timeout).
"""

import pytest

from connectors.protocol import RecordFlags
from gateway.demo import reference_source
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import reference_apps, running_gateway, serving

RESTRICTED = synthetic_nhs(71)
REASON = "Child reported missing; police at the door need the current address now."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restriction-unknown")
    apps = reference_apps(
        tmp,
        {
            "health": [health_record(RESTRICTED, flags=RecordFlags(restricted=True))],
            "education": [school_record(RESTRICTED)],
            "social_care": [social_care_record(RESTRICTED)],
        },
        latency_ms={"health": 3000},
    )
    with serving(apps) as urls:
        sources = [
            reference_source("health", urls["health"], timeout_ms=300),
            reference_source("education", urls["education"]),
            reference_source("social_care", urls["social_care"]),
        ]
        with running_gateway(tmp, sources) as gateway:
            yield gateway


@pytest.mark.parametrize(
    ("purpose", "justification"),
    [("SAFEGUARDING_ENQUIRY", None), ("EMERGENCY_OVERRIDE", REASON)],
)
def test_location_is_withheld_while_the_nhs_restriction_cannot_be_checked(
    stack, purpose, justification
):
    answer = stack.lookup("social_worker", RESTRICTED, purpose, justification)["data"]["child"]

    assert {s["source"]: s["status"] for s in answer["sources"]}["health"] == "TIMED_OUT"
    child = answer["child"]
    assert (child["address"], child["school"], child["carers"]) == (None, None, [])
    assert "LS6 2AB" not in str(answer)
    reasons = {(w["source"], w["field"]): w["reason"] for w in answer["withheld"]}
    assert reasons[("social_care", "address")] == "RESTRICTION_STATUS_UNKNOWN"
    assert reasons[("education", "school")] == "RESTRICTION_STATUS_UNKNOWN"


SEARCH = """query($demographics: DemographicsInput!) {
  child(identify: {demographics: $demographics}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete sources { source status } records { source method } withheld { field }
    ambiguity { reason } } }"""


def _search(stack, given, family, born, postcode):
    person = {"givenName": given, "familyName": family, "dateOfBirth": born, "postcode": postcode}
    body = {"query": SEARCH, "variables": {"demographics": person}}
    return stack.post(body, stack.token("social_worker")).json()


def test_a_search_reaching_the_child_while_the_restriction_is_unknown_finds_nobody(stack):
    """Shield-safe search: a search that cannot rule out a restricted child - the source holding
    the flag silent - is answered as one that found nobody, or its answer would confirm where a
    possibly restricted child lives."""
    reached = _search(stack, "Amelia", "Hart", "2019-03-04", "LS6 2AB")
    nobody = _search(stack, "Nobody", "Atall", "2016-02-02", "LS1 1AA")

    assert "errors" not in reached, reached
    assert reached == nobody
