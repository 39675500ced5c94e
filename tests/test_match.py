from datetime import date
from functools import partial

from connectors.protocol import Address, Demographics, Identifiers, PersonName, RecordFlags, Sex
from gateway.linkage import Band, LinkageModel, Person
from gateway.match import RECORD_MISMATCH, TWINS_IN_VIEW
from gateway.match import match_records as match_with
from gateway.types import (
    AmbiguityReason,
    AmbiguousRecords,
    Corroboration,
    LookupQuery,
    MatchMethod,
    Purpose,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import (
    NHS,
    OTHER_NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)

QUERY = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)
MODEL = LinkageModel.load()
match_records = partial(match_with, model=MODEL)
AMELIA = Demographics(
    given="Amelia",
    family="Hart",
    date_of_birth=date(2019, 3, 4),
    postcode="LS6 2AB",
    sex=Sex.FEMALE,
)
BY_DEMOGRAPHICS = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, demographics=AMELIA)


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


def test_a_upn_lookup_links_the_record_holding_that_upn():
    query = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, upn="H801200001001")
    result = match_records(query, [_answer("education", school_record())])
    assert [(m.source, m.method) for m in result.matched] == [("education", MatchMethod.UPN)]


def test_a_upn_lookup_answered_with_another_upn_fails_that_source():
    query = LookupQuery(purpose=Purpose.SAFEGUARDING_ENQUIRY, upn="H801200001001")
    other = school_record(identifiers=Identifiers(upn="A123456789012"))
    result = match_records(query, [_answer("education", other)])
    assert result.matched == ()
    assert result.answers[0].error_code == RECORD_MISMATCH


def test_demographic_candidates_that_agree_are_linked_with_score_and_reasons():
    result = match_records(
        BY_DEMOGRAPHICS,
        [_answer("health", health_record()), _answer("social_care", social_care_record())],
    )
    assert [m.source for m in result.matched] == ["health", "social_care"]
    for m in result.matched:
        assert m.method is MatchMethod.DEMOGRAPHICS
        assert 0.99 < m.score <= 1.0
        assert m.weight is not None
        assert m.weight >= MODEL.link_threshold
        assert "family:EXACT" in m.reasons
    assert not result.ambiguous


def test_a_nickname_and_a_move_still_link_but_a_sibling_does_not():
    millie_moved = school_record(
        nhs=None,
        address=Address(lines=["9 Elsewhere Road", "Leeds"], postcode="LS11 5QT"),
        sex=Sex.FEMALE,
    )
    brother = health_record(
        nhs=synthetic_nhs(1),
        record_id="H2",
        name=PersonName(given="Oliver", family="Hart"),
        date_of_birth=date(2016, 7, 9),
        sex=Sex.MALE,
    )
    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", brother), _answer("education", millie_moved)]
    )
    assert [m.source for m in result.matched] == ["education"]
    assert result.answers[0].status is SourceStatus.NO_RECORD
    assert result.unmatched == {}


def test_a_weak_candidate_is_possible_not_merged_and_described_by_count_only():
    # Same name, a day out on the date of birth, another street in the same district: perhaps
    # the child, perhaps a namesake - never merged on that.
    near_miss = health_record(
        nhs=None,
        date_of_birth=date(2019, 3, 5),
        address=Address(lines=["4 Other Street", "Leeds"], postcode="LS6 9XY"),
    )
    assert MODEL.score(Person.from_demographics(AMELIA), Person.from_record(near_miss)).band is (
        Band.POSSIBLE
    )
    result = match_records(BY_DEMOGRAPHICS, [_answer("health", near_miss)])
    assert result.matched == ()
    assert result.possible == {"health": 1}
    assert result.answers[0].status is SourceStatus.NO_RECORD


def test_twin_candidates_in_one_source_are_ambiguous_and_nothing_is_merged():
    twin = health_record(
        nhs=synthetic_nhs(2), record_id="H2", name=PersonName(given="Amelia", family="Hart")
    )
    result = match_records(BY_DEMOGRAPHICS, [_answer("health", health_record(), twin)])
    assert result.ambiguous
    assert result.matched == ()


def test_an_ambiguous_result_says_why_and_how_many_records_of_each_source_fit():
    twin = health_record(nhs=None, record_id="H2", name=PersonName(given="Amelia", family="Hart"))
    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", health_record(), twin), _answer("social_care")]
    )

    assert result.ambiguity is not None
    assert result.ambiguity.reason is AmbiguityReason.SEVERAL_IN_ONE_SOURCE
    assert result.ambiguity.records == (AmbiguousRecords("health", MatchMethod.DEMOGRAPHICS, 2),)
    # The source holding them answered: "no record" would say nothing fits.
    assert [a.status for a in result.answers] == [SourceStatus.ANSWERED, SourceStatus.NO_RECORD]


def test_linked_records_with_contradicting_nhs_numbers_are_ambiguous_whatever_the_names():
    result = match_records(
        BY_DEMOGRAPHICS,
        [
            _answer("health", health_record()),
            _answer("social_care", social_care_record(nhs=synthetic_nhs(3))),
        ],
    )
    assert result.ambiguity is not None
    assert result.ambiguity.reason is AmbiguityReason.NHS_NUMBERS_DIFFER
    assert {r.source: r.count for r in result.ambiguity.records} == {"health": 1, "social_care": 1}
    assert result.matched == ()


def test_a_record_sharing_an_nhs_number_with_a_linked_record_is_linked_by_that_identifier():
    renamed = social_care_record(
        name=PersonName(given="Amy", family="Okafor"),
        address=Address(lines=["Foster placement"], postcode="BD1 1AA"),
    )
    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", health_record()), _answer("social_care", renamed)]
    )
    by_source = {m.source: m for m in result.matched}
    assert by_source["health"].method is MatchMethod.DEMOGRAPHICS
    assert by_source["social_care"].method is MatchMethod.NHS_NUMBER
    assert "nhs_number:SHARED_WITH_LINKED_RECORD" in by_source["social_care"].reasons


def test_a_shielded_candidate_marks_the_result_flagged():
    shielded = social_care_record(flags=RecordFlags(shielded=True))
    result = match_records(BY_DEMOGRAPHICS, [_answer("social_care", shielded)])
    assert result.flagged
    clean = match_records(BY_DEMOGRAPHICS, [_answer("social_care", social_care_record())])
    assert not clean.flagged


def test_two_linked_records_that_cannot_be_one_child_make_the_lookup_ambiguous():
    alex = LookupQuery(
        purpose=Purpose.SAFEGUARDING_ENQUIRY,
        demographics=AMELIA.model_copy(update={"given": "Alex", "sex": None}),
    )
    alexander = health_record(nhs=None, name=PersonName(given="Alexander", family="Hart"))
    alexandra = school_record(nhs=None, name=PersonName(given="Alexandra", family="Hart"))
    result = match_records(alex, [_answer("health", alexander), _answer("education", alexandra)])
    assert result.ambiguity is not None
    assert result.ambiguity.reason is AmbiguityReason.RECORDS_DISAGREE
    assert result.matched == ()
    assert {a.status for a in result.answers} == {SourceStatus.ANSWERED}


def test_copies_using_different_short_forms_of_the_same_name_still_link():
    isabella = LookupQuery(
        purpose=Purpose.SAFEGUARDING_ENQUIRY,
        demographics=AMELIA.model_copy(update={"given": "Isabella"}),
    )
    records = [
        _answer(
            "health", health_record(nhs=None, name=PersonName(given="Isabella", family="Hart"))
        ),
        _answer(
            "education", school_record(nhs=None, name=PersonName(given="Bella", family="Hart"))
        ),
        _answer(
            "social_care",
            social_care_record(nhs=None, name=PersonName(given="Izzy", family="Hart")),
        ),
    ]
    result = match_records(isabella, records)
    assert not result.ambiguous
    assert [m.source for m in result.matched] == ["health", "education", "social_care"]


# A school that knows Amelia by her middle name: same family, birthday and address, sex unknown.
MAE = school_record(
    nhs=None,
    record_id="E7",
    name=PersonName(given="Mae", family="Hart"),
    address=Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
)
# Amelia's twin sister, as the health record holds her.
ROSE = health_record(
    nhs=synthetic_nhs(4), record_id="H9", name=PersonName(given="Rose", family="Hart")
)


def test_another_given_name_with_the_whole_household_agreeing_links_when_no_twin_is_in_view():
    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", health_record(nhs=None)), _answer("education", MAE)]
    )
    assert not result.ambiguous
    by_source = {m.source: m for m in result.matched}
    assert set(by_source) == {"health", "education"}
    assert "given:DIFFERENT" in by_source["education"].reasons
    assert TWINS_IN_VIEW not in by_source["education"].reasons


def test_with_twins_in_one_source_another_given_name_is_the_other_twin_and_never_linked():
    # Health holds Amelia and Rose: twins. The school's "Mae" might be either of them - or Rose
    # under her middle name - so only the exact name links.
    result = match_records(
        BY_DEMOGRAPHICS,
        [_answer("health", health_record(nhs=None), ROSE), _answer("education", MAE)],
    )
    assert not result.ambiguous
    assert [(m.source, m.key) for m in result.matched] == [("health", "health:H1")]
    assert all(TWINS_IN_VIEW in m.reasons for m in result.matched)


def test_a_girl_s_other_given_name_is_not_her_twin_brother():
    # Health holds Amelia and her twin brother Arthur. The school's "Mae" is a girl: she cannot
    # be Arthur, so she is Amelia under another name. Recorded as a boy, or with no sex, she
    # could be him.
    arthur = health_record(
        nhs=synthetic_nhs(5),
        record_id="H8",
        name=PersonName(given="Arthur", family="Hart"),
        sex=Sex.MALE,
    )
    health = _answer("health", health_record(nhs=None), arthur)

    def linked(sex: Sex | None) -> list[str]:
        mae = _answer("education", MAE.model_copy(update={"sex": sex}))
        return [m.key for m in match_records(BY_DEMOGRAPHICS, [health, mae]).matched]

    assert linked(Sex.FEMALE) == ["health:H1", "education:E7"]
    assert linked(Sex.MALE) == ["health:H1"]
    assert linked(None) == ["health:H1"]


def test_a_bad_slip_of_the_child_s_name_that_is_nothing_like_the_twin_s_is_the_child():
    # Health holds Amelia and Rose: twins in view. A given name that is neither twin's is
    # weighed by whom it is closer to.
    def linked(given: str) -> list[str]:
        copy = MAE.model_copy(update={"name": PersonName(given=given, family="Hart")})
        health = _answer("health", health_record(nhs=None), ROSE)
        result = match_records(BY_DEMOGRAPHICS, [health, _answer("education", copy)])
        return [m.key for m in result.matched]

    assert linked("Aeilma") == ["health:H1", "education:E7"]  # JW_MEDIUM to Amelia only
    assert linked("Roes") == ["health:H1"]  # near Rose: the other twin
    assert linked("Mae") == ["health:H1"]  # like neither: either twin's other name


AT_HOME = LookupQuery(
    purpose=Purpose.SAFEGUARDING_ENQUIRY,
    demographics=AMELIA,
    corroboration=Corroboration(address_lines=("1 Test Street", "Leeds")),
)
LEO = health_record(
    nhs=synthetic_nhs(6),
    record_id="H6",
    name=PersonName(given="Leo", family="Hart"),
    date_of_birth=date(2016, 9, 1),
    sex=Sex.MALE,
)


def _school_copy(**changes):
    return MAE.model_copy(
        update={"name": PersonName(given="Amelia", family="Hart"), "sex": Sex.FEMALE, **changes}
    )


def test_a_wrong_date_of_birth_at_the_house_links_once_the_register_shows_no_such_sibling():
    wrong_date = _school_copy(date_of_birth=date(2018, 12, 30))
    answers = [_answer("health", health_record(nhs=None), LEO), _answer("education", wrong_date)]

    heard = match_records(AT_HOME, answers, registers=frozenset({"health"}))
    no_register = match_records(AT_HOME, answers)
    no_lines = match_records(BY_DEMOGRAPHICS, answers, registers=frozenset({"health"}))

    assert [m.key for m in heard.matched] == ["health:H1", "education:E7"]
    assert "address:SAME_HOUSE" in heard.matched[1].reasons
    assert [m.key for m in no_register.matched] == ["health:H1"]
    assert no_register.possible == {"education": 1}
    assert [m.key for m in no_lines.matched] == ["health:H1"]


def test_a_brother_s_record_under_the_child_s_name_is_his_not_hers():
    # The school keyed Leo's record with his sister's given name: his date of birth, her name.
    leos = _school_copy(date_of_birth=LEO.date_of_birth, sex=None)
    answers = [_answer("health", health_record(nhs=None), LEO), _answer("education", leos)]

    result = match_records(AT_HOME, answers, registers=frozenset({"health"}))

    assert [m.key for m in result.matched] == ["health:H1"]


ROSE_AT_SCHOOL = school_record(
    nhs=None,
    record_id="E9",
    name=PersonName(given="Rose", family="Hart"),
    address=Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
)


def test_the_twin_alone_in_a_source_is_not_linked_once_another_source_shows_both_twins():
    result = match_records(
        BY_DEMOGRAPHICS,
        [_answer("health", health_record(nhs=None), ROSE), _answer("education", ROSE_AT_SCHOOL)],
    )
    assert [m.source for m in result.matched] == ["health"]


def test_when_a_source_holding_every_child_has_not_answered_another_given_name_never_links():
    # Without health's answer nothing tells the school's Rose from Amelia under another name.
    for health in (
        SourceAnswer("health", SourceStatus.TIMED_OUT, 1000.0, ()),
        SourceAnswer("health", SourceStatus.WITHHELD, 0.0, ()),
    ):
        result = match_records(
            BY_DEMOGRAPHICS,
            [health, _answer("education", ROSE_AT_SCHOOL)],
            registers=frozenset({"health"}),
        )
        assert result.matched == ()
    # Health answered with Amelia alone: no twin exists, and the school's other name links.
    heard = match_records(
        BY_DEMOGRAPHICS,
        [_answer("health", health_record(nhs=None)), _answer("education", ROSE_AT_SCHOOL)],
        registers=frozenset({"health"}),
    )
    assert [m.source for m in heard.matched] == ["health", "education"]


def test_records_holding_one_nhs_number_under_two_given_names_are_one_child_not_twins():
    renamed = health_record(record_id="H5", name=PersonName(given="Mae", family="Hart"))
    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", health_record(), renamed), _answer("education", MAE)]
    )
    assert not any(TWINS_IN_VIEW in m.reasons for m in result.matched)


def test_a_lookup_without_a_given_name_is_ambiguous_between_twins():
    no_given = LookupQuery(
        purpose=Purpose.SAFEGUARDING_ENQUIRY,
        demographics=AMELIA.model_copy(update={"given": None}),
    )
    result = match_records(no_given, [_answer("health", health_record(nhs=None), ROSE)])
    assert result.ambiguous
    assert result.matched == ()


def test_copies_that_each_fit_the_query_but_not_each_other_are_two_children():
    # Query "Alex": health's Alexander and the school's Alexandra both fit it, never each other.
    alex = LookupQuery(
        purpose=Purpose.SAFEGUARDING_ENQUIRY,
        demographics=AMELIA.model_copy(update={"given": "Alex", "sex": None}),
    )
    alexander = health_record(nhs=None, name=PersonName(given="Alexander", family="Hart"), sex=None)
    alexandra = school_record(nhs=None, name=PersonName(given="Alexandra", family="Hart"))
    result = match_records(alex, [_answer("health", alexander), _answer("education", alexandra)])
    assert result.ambiguous


PLACEHOLDER_NHS = "1234567890"
"""A made-up number, as a record may carry one: it fails the modulus-11 check."""


def test_a_sibling_sharing_a_placeholder_nhs_number_is_not_linked_to_the_child():
    amelia = health_record(nhs=PLACEHOLDER_NHS)
    # Her younger sister at the school: another child, another birthday, the same made-up number.
    sister = school_record(
        nhs=PLACEHOLDER_NHS,
        record_id="E5",
        name=PersonName(given="Rose", family="Hart"),
        date_of_birth=date(2021, 8, 30),
    )

    result = match_records(
        BY_DEMOGRAPHICS, [_answer("health", amelia), _answer("education", sister)]
    )

    assert [m.key for m in result.matched] == ["health:H1"]


def test_twins_sharing_a_placeholder_nhs_number_in_one_source_are_two_children():
    amelia = health_record(nhs=PLACEHOLDER_NHS)
    rose = health_record(
        nhs=PLACEHOLDER_NHS, record_id="H9", name=PersonName(given="Rose", family="Hart")
    )

    result = match_records(BY_DEMOGRAPHICS, [_answer("health", amelia, rose)])

    assert "health:H9" not in [m.key for m in result.matched]
