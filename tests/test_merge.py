from datetime import datetime, timedelta
from functools import partial

from connectors.protocol import Address, FieldId, PersonName
from gateway.config import DEFAULT_FIELD_AUTHORITY
from gateway.merge import merge as merge_with
from gateway.types import MatchedRecord, MatchMethod, ReleasedRecord
from tests.factories import AS_OF, NHS, health_record, school_record, social_care_record

merge = partial(merge_with, authority=DEFAULT_FIELD_AUTHORITY)


def _released(source, record):
    matched = MatchedRecord(f"{source}:{record.record_id}", source, record, MatchMethod.NHS_NUMBER)
    return ReleasedRecord(matched, frozenset(FieldId), record)


def test_nothing_linked_merges_to_nothing():
    assert merge([]) is None


def test_single_values_come_from_the_first_source_in_authority_order():
    child = merge([_released("health", health_record()), _released("education", school_record())])
    assert child is not None
    assert child.name is not None
    assert (child.name.value.given, child.name.source) == ("Amelia", "health")
    assert child.school is not None
    assert child.school.source == "education"


def test_lists_are_the_union_across_sources_with_provenance():
    child = merge(
        [_released("health", health_record()), _released("social_care", social_care_record())]
    )
    assert child is not None
    assert [(i.source, i.value.service) for i in child.involvements] == [
        ("health", "health visiting"),
        ("health", "CAMHS"),
        ("social_care", "children's social care"),
    ]
    assert child.child_protection_plan is not None
    assert (child.child_protection_plan.value, child.child_protection_plan.source) == (
        True,
        "social_care",
    )
    assert child.looked_after is None


def test_identical_entries_from_two_sources_appear_once():
    twin = social_care_record(involvements=health_record().involvements)
    child = merge([_released("health", health_record()), _released("social_care", twin)])
    assert child is not None
    assert len(child.involvements) == 2


def test_entries_differing_in_a_nested_field_are_both_kept():
    visiting = health_record().involvements[0]
    assert visiting.practitioner is not None
    moved = visiting.practitioner.model_copy(update={"phone": "0113 000 0000"})
    twin = social_care_record(involvements=[visiting.model_copy(update={"practitioner": moved})])
    child = merge([_released("health", health_record()), _released("social_care", twin)])
    assert child is not None
    phones = [i.value.practitioner.phone for i in child.involvements if i.value.practitioner]
    assert phones.count("0113 000 0000") == 1
    assert len(child.involvements) == 3


MOVED = Address(lines=["9 Elsewhere Road", "Leeds"], postcode="LS11 5QT")


def test_disagreeing_values_take_the_authoritative_source_and_are_flagged_as_conflicts():
    child = merge(
        [
            _released("social_care", social_care_record(address=MOVED)),
            _released("health", health_record()),
        ]
    )
    assert child is not None
    assert child.address is not None
    assert (child.address.source, child.address.value.postcode) == ("health", "LS6 2AB")
    conflicts = {c.field: c for c in child.conflicts}
    assert conflicts[FieldId.ADDRESS].chosen == "health"
    assert conflicts[FieldId.ADDRESS].disagreeing == ("social_care",)


def test_spelling_case_and_spacing_differences_are_not_conflicts():
    shouty = social_care_record(
        name=PersonName(given="AMELIA", family="hart"),
        address=Address(lines=["1  test street", "LEEDS"], postcode="ls62ab"),
    )
    child = merge([_released("health", health_record()), _released("social_care", shouty)])
    assert child is not None
    assert child.conflicts == ()


def test_without_an_authority_for_the_field_the_most_recent_record_wins():
    older = health_record(address=MOVED, as_of=AS_OF - timedelta(days=30))
    newer = social_care_record()
    child = merge_with([_released("health", older), _released("social_care", newer)], authority={})
    assert child is not None
    assert child.address is not None
    assert child.address.source == "social_care"
    assert [c.field for c in child.conflicts] == [FieldId.ADDRESS]


def test_times_without_an_offset_are_utc_even_in_year_one():
    """A connector's `as_of` without an offset in year 1 made `timestamp()` raise, failing the
    whole lookup (found by fuzzing with a hostile connector)."""
    ancient = health_record(address=MOVED, as_of=datetime(1, 1, 1))
    naive = social_care_record(as_of=AS_OF.replace(tzinfo=None))
    child = merge_with(
        [_released("health", ancient), _released("social_care", naive)], authority={}
    )
    assert child is not None
    assert child.address is not None
    assert child.address.source == "social_care"


def test_an_nhs_number_failing_its_check_is_never_shown_as_the_childs():
    """A record linked by demographics may carry a mistyped or made-up NHS number (found by
    fuzzing with a hostile connector: it was released as the child's)."""
    mistyped = social_care_record(nhs="9434765918")  # the last digit fails the check
    alone = merge_with([_released("social_care", mistyped)], authority={})
    assert alone is not None
    assert alone.nhs_number is None
    both = merge_with(
        [_released("social_care", mistyped), _released("health", health_record())],
        authority={FieldId.NHS_NUMBER: ("social_care", "health")},
    )
    assert both is not None
    assert both.nhs_number is not None
    assert (both.nhs_number.value, both.nhs_number.source) == (NHS, "health")


def test_the_authority_order_is_configurable_per_field():
    child = merge_with(
        [
            _released("health", health_record()),
            _released("social_care", social_care_record(address=MOVED)),
        ],
        authority={FieldId.ADDRESS: ("social_care", "health")},
    )
    assert child is not None
    assert child.address is not None
    assert child.address.source == "social_care"
