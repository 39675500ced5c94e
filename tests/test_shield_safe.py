from datetime import date

from connectors.protocol import Demographics, Identifiers, RecordFlags
from gateway.linkage import LinkageModel
from gateway.match import match_records
from gateway.shield_safe import shield_safe
from gateway.types import LookupQuery, Purpose, SourceAnswer, SourceStatus
from tests.factories import NHS, health_record, social_care_record

MODEL = LinkageModel.load()
SEARCH = LookupQuery(
    purpose=Purpose.SAFEGUARDING_ENQUIRY,
    demographics=Demographics(
        given="Amelia", family="Hart", date_of_birth=date(2019, 3, 4), postcode="LS6 2AB"
    ),
)
BY_NHS = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, nhs_number=NHS)
AUTHORITIES = {"social_care"}
SHIELDED = RecordFlags(shielded=True)


def _answer(source, *records):
    status = SourceStatus.ANSWERED if records else SourceStatus.NO_RECORD
    return SourceAnswer(source, status, 1.0, tuple(records))


def _safe(query, answers):
    return shield_safe(query, match_records(query, answers, MODEL), AUTHORITIES)


def _nobody():
    return _safe(SEARCH, [_answer("health"), _answer("social_care")])


def test_a_search_reaching_a_child_shielded_in_another_source_looks_like_finding_nobody():
    shielded = social_care_record(flags=RecordFlags(shielded=True))
    hidden, was_hidden = _safe(
        SEARCH, [_answer("health", health_record()), _answer("social_care", shielded)]
    )
    nobody, nothing_hidden = _nobody()
    assert was_hidden
    assert not nothing_hidden
    assert hidden == nobody


def test_an_ambiguous_search_reaching_a_shielded_child_looks_like_finding_nobody():
    twin = social_care_record(
        record_id="LA-2", nhs=None, identifiers=Identifiers(local_id="LA-2"), flags=SHIELDED
    )
    shielded = social_care_record(nhs=None, identifiers=Identifiers(local_id="LA-1"))
    answers = [_answer("health"), _answer("social_care", shielded, twin)]
    assert match_records(SEARCH, answers, MODEL).ambiguous

    hidden, was_hidden = _safe(SEARCH, answers)

    assert was_hidden
    assert hidden == _nobody()[0]
    assert hidden.ambiguity is None


def test_a_restricted_record_is_hidden_the_same_way():
    restricted = health_record(flags=RecordFlags(restricted=True))
    hidden, was_hidden = _safe(
        SEARCH, [_answer("health", restricted), _answer("social_care", social_care_record())]
    )
    assert was_hidden
    assert hidden == _nobody()[0]


def test_a_search_is_hidden_when_the_shield_authority_did_not_answer():
    silent = SourceAnswer("social_care", SourceStatus.TIMED_OUT, 800.0, error_code="TIMEOUT")
    hidden, was_hidden = _safe(SEARCH, [_answer("health", health_record()), silent])
    assert was_hidden
    assert hidden.matched == ()
    assert [a.status for a in hidden.answers] == [SourceStatus.NO_RECORD, SourceStatus.TIMED_OUT]


def test_an_unflagged_child_found_by_demographics_is_not_hidden():
    result, was_hidden = _safe(
        SEARCH, [_answer("health", health_record()), _answer("social_care", social_care_record())]
    )
    assert not was_hidden
    assert len(result.matched) == 2


def test_identifier_lookups_are_not_hidden_the_policy_withholds_location_instead():
    shielded = social_care_record(flags=RecordFlags(shielded=True))
    result, was_hidden = _safe(
        BY_NHS, [_answer("health", health_record()), _answer("social_care", shielded)]
    )
    assert not was_hidden
    assert len(result.matched) == 2
