"""Which identifier a second round asks with, and whom (gateway.second_round); the rounds
themselves run end to end in tests/test_second_round_e2e.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from connectors.protocol import ConnectorRecord, Demographics, Identifiers
from gateway.match import RECORD_MISMATCH, MatchResult
from gateway.second_round import (
    FoundIdentifier,
    found_identifier,
    identifiers_found,
    sources_to_ask_again,
)
from gateway.types import (
    Ambiguity,
    AmbiguityReason,
    IdentifiedBy,
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    Plan,
    Purpose,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import NHS, OTHER_NHS, school_record, social_care_record

UPN = "H801200001001"
BY_UPN = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, upn=UPN)
BY_NHS = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, nhs_number=NHS)
PLAN = Plan(
    permitted=True,
    denial=None,
    fields=frozenset(),
    sources=("health", "education", "social_care"),
    decision_id="d",
)


def _linked(source: str, record: ConnectorRecord, method: MatchMethod) -> MatchedRecord:
    return MatchedRecord(f"{source}:{record.record_id}", source, record, method)


def _first(*matched: MatchedRecord, ambiguous: bool = False, **statuses: str) -> MatchResult:
    return MatchResult(
        answers=tuple(SourceAnswer(s, SourceStatus(status)) for s, status in statuses.items()),
        matched=matched,
        unmatched={},
        possible={},
        ambiguity=Ambiguity(AmbiguityReason.SEVERAL_IN_ONE_SOURCE, ()) if ambiguous else None,
    )


SCHOOL = _linked("education", school_record(), MatchMethod.UPN)
"""The school's record, found by UPN, holding the NHS number too."""


def test_the_nhs_number_a_linked_record_holds_is_found():
    assert found_identifier(BY_UPN, _first(SCHOOL)) == FoundIdentifier(IdentifiedBy.NHS_NUMBER, NHS)


def test_nothing_is_found_when_linked_records_hold_two_nhs_numbers():
    other = _linked(
        "social_care",
        social_care_record(OTHER_NHS, identifiers=Identifiers(nhs_number=OTHER_NHS, upn=UPN)),
        MatchMethod.UPN,
    )
    assert found_identifier(BY_UPN, _first(SCHOOL, other)) is None


def test_an_nhs_number_failing_its_check_digit_is_not_asked_with():
    bad = NHS[:9] + str((int(NHS[9]) + 1) % 10)
    school = _linked(
        "education",
        school_record(identifiers=Identifiers(nhs_number=bad, upn=UPN)),
        MatchMethod.UPN,
    )
    assert found_identifier(BY_UPN, _first(school)) is None


def test_an_ambiguous_lookup_asks_nobody_more():
    assert found_identifier(BY_UPN, _first(SCHOOL, ambiguous=True)) is None


def test_a_lookup_by_nhs_number_finds_the_upn_but_asks_only_sources_with_no_record():
    care = social_care_record(identifiers=Identifiers(nhs_number=NHS, upn=UPN))
    linked = _linked("social_care", care, MatchMethod.NHS_NUMBER)
    first = _first(linked, health="ANSWERED", education="NO_RECORD", social_care="ANSWERED")
    found = found_identifier(BY_NHS, first)
    assert found == FoundIdentifier(IdentifiedBy.UPN, UPN)
    # Health found the child by the NHS number: a UPN is no better, so it is not asked again.
    assert sources_to_ask_again(BY_NHS, PLAN, first, found) == ("education",)
    first = _first(linked, health="NO_RECORD", education="NO_RECORD", social_care="ANSWERED")
    assert sources_to_ask_again(BY_NHS, PLAN, first, found) == ("health", "education")


def test_sources_that_did_not_answer_or_were_not_planned_are_not_asked_again():
    first = _first(SCHOOL, health="TIMED_OUT", education="ANSWERED", social_care="NOT_ASKED")
    found = FoundIdentifier(IdentifiedBy.NHS_NUMBER, NHS)
    assert sources_to_ask_again(BY_UPN, PLAN, first, found) == ()
    first = _first(SCHOOL, health="NO_RECORD", education="ANSWERED", social_care="NO_RECORD")
    only_health = Plan(True, None, frozenset(), ("health", "education"), "d")
    assert sources_to_ask_again(BY_UPN, only_health, first, found) == ("health",)


HEALTH = _linked("health", social_care_record(), MatchMethod.NHS_NUMBER)
"""A record found when asked with the NHS number the school's record carries."""


def test_an_identifier_a_source_disputed_is_not_found_for_routing():
    """The school's record carries an NHS number; asked with it, health sent a record of another
    child (RECORD_MISMATCH): the number may be another child's, so routing is left with the
    lookup's own UPN - no agency is sent the disputed number."""
    confirmed = _first(SCHOOL, HEALTH, health="ANSWERED", education="ANSWERED")
    mismatched = replace(
        confirmed,
        matched=(SCHOOL,),
        answers=(
            SourceAnswer("health", SourceStatus.FAILED, error_code=RECORD_MISMATCH),
            SourceAnswer("education", SourceStatus.ANSWERED),
        ),
    )

    found = (FoundIdentifier(IdentifiedBy.NHS_NUMBER, NHS),)
    assert identifiers_found(BY_UPN, confirmed) == found
    assert identifiers_found(BY_UPN, mismatched) == ()


def test_an_nhs_number_only_a_record_found_by_upn_carries_is_not_found_for_routing():
    """Asked with it, health had no record (or did not answer): nothing but the school's record,
    found by the weaker UPN, says the number is this child's - routing keeps to the UPN."""
    unconfirmed = _first(SCHOOL, health="NO_RECORD", education="ANSWERED")

    assert identifiers_found(BY_UPN, unconfirmed) == ()
    # A register (holding every child, as the spine does) linking it by demographics vouches.
    by_register = _linked("health", school_record(), MatchMethod.DEMOGRAPHICS)
    by_demographics = LookupQuery(
        purpose=Purpose.SAFEGUARDING_ENQUIRY,
        demographics=Demographics(given="Amelia", family="Hart", date_of_birth=date(2019, 3, 4)),
    )
    assert identifiers_found(by_demographics, _first(by_register), registers={"health"})
    assert not identifiers_found(by_demographics, _first(by_register))


def test_a_upn_a_record_found_by_the_nhs_number_carries_is_found_for_routing():
    care = social_care_record(identifiers=Identifiers(nhs_number=NHS, upn=UPN))
    linked = _linked("social_care", care, MatchMethod.NHS_NUMBER)

    assert identifiers_found(BY_NHS, _first(linked)) == (FoundIdentifier(IdentifiedBy.UPN, UPN),)
