"""Details that corroborate a demographic lookup: address lines (which house) and the names of
parents or carers, and what each adds to a score beyond the postcode."""

from dataclasses import replace
from datetime import date

import pytest

from connectors.protocol import Sex
from gateway.linkage import Band, LinkageModel, Person
from gateway.linkage.person import House

MODEL = LinkageModel.load()
HOME = ("12 Church Road", "Headingley", "Leeds")


def person(**changes):
    """Oliver Smith, born 4 March 2015, at 12 Church Road, LS6 1AB, son of Sophie Smith - or as
    changed."""
    base = Person(
        "Oliver",
        "Smith",
        (),
        date(2015, 3, 4),
        "LS6 1AB",
        Sex.MALE,
        address_lines=HOME,
        carers=("Sophie Smith",),
    )
    return replace(base, **changes)


def level(a: Person, b: Person, field: str) -> str:
    return next(c.level for c in MODEL.score(a, b).comparisons if c.field == field)


def address_level(a: Person, b: Person) -> str:
    return level(a, b, "address")


def renamed(**changes):
    """Oliver's copy under a family name the copy's agency has and the query does not (a
    step-parent's): the house is then evidence beyond the household."""
    return person(family="Jones", **changes)


@pytest.mark.parametrize(
    "lines",
    [
        ("12 CHURCH RD", "HEADINGLEY", "LEEDS"),
        ("12, Church Road",),
        ("Flat 3, 12 Church Road", "Leeds"),
        ("Flat 3", "12 Church Road"),
        ("12 Church Rd.", "Hyde Park", "Leeds"),
    ],
)
def test_one_house_however_the_lines_are_written(lines):
    assert address_level(person(), renamed(address_lines=lines)) == "SAME_HOUSE"


@pytest.mark.parametrize(
    "lines",
    [("14 Church Road", "Headingley", "Leeds"), ("12 Mill Lane", "Headingley", "Leeds")],
)
def test_another_house_at_the_same_postcode_is_different(lines):
    assert address_level(person(), person(address_lines=lines)) == "DIFFERENT"


def test_another_house_in_another_postcode_is_one_move_counted_once():
    moved = person(address_lines=("3 Otley Road", "Leeds"), postcode="LS16 5AB")
    assert address_level(person(), moved) == "MISSING"


def test_within_one_household_the_house_says_nothing_more():
    # Same family name, same postcode: a brother lives there too. The house cannot tell Oliver
    # from a brother recorded under Oliver's name with his own date of birth.
    brother = person(date_of_birth=date(2013, 11, 21))
    assert address_level(person(), brother) == "MISSING"
    assert MODEL.score(person(), brother).band is Band.POSSIBLE


def test_the_same_house_carries_a_record_whose_postcode_was_keyed_wrong():
    slipped = person(postcode="LS6 1AD")
    assert address_level(person(), slipped) == "SAME_HOUSE"
    assert (
        MODEL.score(person(), slipped).weight
        > MODEL.score(person(), replace(slipped, address_lines=())).weight
    )


def test_town_lines_alone_name_no_house():
    assert House.of(("Headingley", "Leeds")) == House(frozenset(), frozenset({"headingley"}))
    assert address_level(person(), person(address_lines=("Leeds",))) == "MISSING"
    assert House.of(()) is None


def test_named_houses_compare_by_their_name_and_not_with_numbered_ones():
    rose = person(address_lines=("Rose Cottage", "Moor Lane"))
    assert address_level(rose, renamed(address_lines=("ROSE COTTAGE",))) == "SAME_HOUSE"
    assert address_level(rose, person(address_lines=("Ivy Cottage",))) == "DIFFERENT"
    assert address_level(rose, person()) == "MISSING"


def test_the_house_weighs_for_a_copy_under_another_family_name():
    # Another family name (a step-parent's) and a wrong date of birth: not a household by name,
    # so the same house is evidence that it is the family whose name changed.
    both = renamed(date_of_birth=date(2013, 11, 21))
    assert address_level(person(), both) == "SAME_HOUSE"
    assert MODEL.score(person(), both).weight > MODEL.score(person(address_lines=()), both).weight


def test_a_namesake_in_another_house_of_the_postcode_scores_lower_than_without_lines():
    namesake = person(address_lines=("40 Church Road",))
    without = MODEL.score(person(address_lines=()), namesake).weight
    assert MODEL.score(person(), namesake).weight < without - 3


def test_twins_in_view_stay_apart_though_they_share_the_house():
    assert MODEL.score(person(), person(given="Harry"), twins=True).band is Band.REJECTED
    assert MODEL.score(person(), person(given="Olvrr"), twins=True).band is Band.REJECTED


# --- Parents and carers ---------------------------------------------------------------------

MOVED = {"postcode": "LS16 5AB", "address_lines": ("3 Otley Road", "Leeds")}


def test_a_shared_carer_is_evidence_only_where_the_postcodes_differ():
    assert level(person(), person(**MOVED), "carer") == "SAME"
    # At one postcode the household is counted already: twins and siblings share both.
    assert level(person(), person(), "carer") == "MISSING"


def test_carers_match_by_full_name_whatever_the_spelling_and_order():
    record = person(**MOVED, carers=("Dev Patel", "SOPHIE  SMITH"))
    assert level(person(), record, "carer") == "SAME"


def test_a_one_word_carer_names_nobody():
    assert person(carers=("Mum", "Sophie")).carer_keys == frozenset()
    assert level(person(carers=("Sophie",)), person(**MOVED, carers=("Sophie",)), "carer") == (
        "MISSING"
    )


def test_carers_named_on_both_sides_and_none_shared_are_different():
    assert level(person(), person(**MOVED, carers=("Ann Lee",)), "carer") == "DIFFERENT"
    assert level(person(), person(carers=("Ann Lee",)), "carer") == "DIFFERENT"


def test_a_shared_carer_makes_a_moved_copy_possible_but_never_links_it_alone():
    # Carers mostly bear the child's family name, so what a shared one adds is a shared given
    # name (+4.1 bits): enough to flag a moved, undated copy as possible, not to merge it.
    undated = person(**MOVED, date_of_birth=None)
    assert MODEL.score(person(), undated).band is Band.POSSIBLE
    assert MODEL.score(person(carers=()), undated).band is Band.REJECTED


def test_a_shared_carer_counts_the_whole_name_when_the_child_s_family_name_changed():
    # The copy kept the old family name and the family moved: the mother's whole name, not just
    # her given name, is what the two records share.
    stale = person(**MOVED, family="Jones")
    assert level(person(), stale, "carer") == "ACROSS_FAMILIES"
    assert MODEL.score(person(), stale).band is Band.LINKED
    assert MODEL.score(person(carers=()), stale).band is not Band.LINKED


def test_a_namesake_elsewhere_with_other_parents_scores_lower_than_without_carers():
    namesake = person(**MOVED, carers=("Ann Lee",))
    without = MODEL.score(person(carers=()), namesake).weight
    assert MODEL.score(person(), namesake).weight < without


def test_a_twin_who_moved_with_the_family_stays_apart_in_view():
    twin = person(**MOVED, given="Harry")
    assert level(person(), twin, "carer") == "SAME"
    assert MODEL.score(person(), twin, twins=True).band is Band.REJECTED
