from connectors.protocol import FieldId
from gateway.merge import merge
from gateway.types import MatchedRecord, MatchMethod, ReleasedRecord
from tests.factories import health_record, school_record, social_care_record


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
