"""The answer cache on, end to end (every other end-to-end test runs with it off): it keeps the
agencies' answers to one caller (role, organisation and user), never what a caller was shown, so
policy decides each lookup again - another role is asked afresh, and an override's lifting of a
shield lasts its own lookup, not the cache's lifetime."""

import pytest

from connectors.protocol import Identifiers, RecordFlags
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

ORDINARY = synthetic_nhs(31)
SHIELDED = synthetic_nhs(32)
REASON = "Child reported missing; police at the door need the current address now."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    shield = Identifiers(nhs_number=SHIELDED, local_id="LA-32")
    records = {
        "health": [health_record(ORDINARY), health_record(SHIELDED, record_id="H2")],
        "education": [
            school_record(ORDINARY, identifiers=Identifiers(nhs_number=ORDINARY)),
            school_record(SHIELDED, record_id="E2", identifiers=Identifiers(nhs_number=SHIELDED)),
        ],
        "social_care": [
            social_care_record(SHIELDED, identifiers=shield, flags=RecordFlags(shielded=True))
        ],
    }
    with reference_stack(tmp, records, cache_ttl_s=30) as gateway:
        yield gateway


def _child(answer):
    return answer["data"]["child"]


def _cached(answer) -> set[str]:
    return {s["source"] for s in _child(answer)["sources"] if s["cached"]}


def test_a_repeated_lookup_is_answered_from_the_cache_and_still_decided_by_policy(stack):
    first = stack.lookup("social_worker", ORDINARY)
    again = stack.lookup("social_worker", ORDINARY)

    assert not _cached(first)
    assert _cached(again) == {"health", "education", "social_care"}
    assert _child(again)["child"] == _child(first)["child"]
    assert _child(again)["auditId"] != _child(first)["auditId"]  # each lookup audited


def test_another_role_is_not_answered_from_a_cache_filled_for_a_role_with_more_rights(stack):
    """An agency answers a caller (it may refuse a role): its answer to a social worker is no
    answer to a school's safeguarding lead, who is asked for, and shown, their own."""
    stack.lookup("social_worker", ORDINARY)  # the address and GP cached for a social worker
    dsl = stack.lookup("school_dsl", ORDINARY)

    assert not _cached(dsl)
    assert _cached(stack.lookup("school_dsl", ORDINARY))
    child = _child(dsl)
    assert child["outcome"] == "FOUND"
    assert child["child"]["address"] is None
    assert child["child"]["gpPractice"] is None
    withheld = {(w["field"], w["reason"]) for w in child["withheld"]}
    assert ("address", "NOT_PERMITTED_FOR_ROLE") in withheld


def test_an_override_lifts_the_shield_for_its_own_lookup_only_cache_or_no_cache(stack):
    glass = stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    assert _child(glass)["child"]["address"]["postcode"] == "LS6 2AB"

    for _ in range(2):  # the second from the cache
        after = stack.lookup("social_worker", SHIELDED, "CHILD_PROTECTION_ENQUIRY", REASON)
        assert _child(after)["child"]["address"] is None
        assert _child(after)["child"]["school"] is None
    assert _cached(after)

    again = stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    assert _child(again)["child"]["address"]["postcode"] == "LS6 2AB"
    assert stack.audited(_child(again)["auditId"])["flagged_for_investigation"] is True
