from gateway.match import RECORD_MISMATCH, match_records
from gateway.types import LookupQuery, MatchMethod, Purpose, SourceAnswer, SourceStatus
from tests.factories import NHS, OTHER_NHS, health_record, school_record, social_care_record

QUERY = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)


def _answer(source, *records):
    status = SourceStatus.ANSWERED if records else SourceStatus.NO_RECORD
    return SourceAnswer(source, status, 1.0, tuple(records))


def test_records_with_the_same_nhs_number_are_linked_by_identifier():
    result = match_records(
        QUERY, [_answer("health", health_record()), _answer("social_care", social_care_record())]
    )
    assert [m.key for m in result.matched] == ["health:H1", "social_care:LA-000001"]
    assert all(m.method is MatchMethod.NHS_NUMBER and m.score == 1.0 for m in result.matched)


def test_a_source_returning_another_childs_record_is_failed_and_nothing_of_it_is_used():
    answers = [
        _answer("health", health_record()),
        _answer("education", school_record(), school_record(OTHER_NHS, record_id="E2")),
    ]
    result = match_records(QUERY, answers)
    assert [m.source for m in result.matched] == ["health"]
    education = result.answers[1]
    assert education.status is SourceStatus.FAILED
    assert education.error_code == RECORD_MISMATCH
    assert education.records == ()


def test_records_without_an_nhs_number_are_counted_not_merged():
    result = match_records(QUERY, [_answer("education", school_record(None))])
    assert result.matched == ()
    assert result.unmatched == {"education": 1}
    assert result.answers[0].status is SourceStatus.ANSWERED


def test_a_record_repeated_by_a_source_is_linked_once():
    result = match_records(QUERY, [_answer("health", health_record(), health_record())])
    assert len(result.matched) == 1


def test_statuses_of_sources_that_did_not_answer_pass_through():
    timed_out = SourceAnswer("social_care", SourceStatus.TIMED_OUT, 800.0, error_code="TIMEOUT")
    result = match_records(QUERY, [timed_out])
    assert result.answers == (timed_out,)
