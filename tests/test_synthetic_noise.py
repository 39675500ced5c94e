"""The hard cases of the synthetic population: the "extreme" noise level's faults, twins and
namesakes - each present at its configured rate, only where it belongs, and recorded in the truth
file so that a benchmark can say why a record was missed."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.protocol import ConnectorRecord, Sex
from connectors.synthetic import (
    DEFAULT_TODAY,
    SOURCES,
    Fault,
    NoiseLevel,
    NoiseProfile,
    Population,
    generate_population,
    load_faults,
    write_population,
)
from connectors.synthetic.names import FEMALE_GIVEN, LOOKALIKE_TWINS, MALE_GIVEN, NICKNAMES
from connectors.synthetic.noise import another_given_name, wrong_date_of_birth
from tests.test_synthetic import born_of, name_of

EXTREME = NoiseProfile.preset("extreme")
CHILDREN = 6000
TWIN_NAMES = tuple(name for pairs in LOOKALIKE_TWINS.values() for pair in pairs for name in pair)
NAME_FAULTS = {
    Fault.NICKNAME,
    Fault.GIVEN_TYPO,
    Fault.FAMILY_TYPO,
    Fault.STALE_FAMILY,
    Fault.NAMES_SWAPPED,
    Fault.KNOWN_AS,
    Fault.NEW_FAMILY,
    Fault.NEW_FAMILY_UNRECORDED,
}


@pytest.fixture(scope="module")
def extreme() -> Population:
    return generate_population(seed=7, children=CHILDREN, noise=EXTREME)


@pytest.fixture(scope="module")
def medium() -> Population:
    return generate_population(seed=7, children=CHILDREN)


def health_by_child(population: Population) -> dict[str, ConnectorRecord]:
    return {population.truth["health", r.record_id]: r for r in population.health}


def copies(population: Population) -> list[tuple[ConnectorRecord, ConnectorRecord, set[Fault]]]:
    """(health record, copy, the copy's faults) for every education and social care record."""
    health = health_by_child(population)
    return [
        (
            health[population.truth[source, copy.record_id]],
            copy,
            set(population.faults.get((source, copy.record_id), ())),
        )
        for source in ("education", "social_care")
        for copy in population.records(source)
    ]


def home(record: ConnectorRecord) -> tuple[str, ...]:
    assert record.address is not None
    return (*record.address.lines, record.address.postcode)


def share(population: Population, fault: Fault) -> float:
    pairs = copies(population)
    return sum(fault in faults for _, _, faults in pairs) / len(pairs)


def twin_sets(population: Population) -> list[list[ConnectorRecord]]:
    """Health records of children sharing a home and a date of birth."""
    groups: defaultdict[tuple[object, ...], list[ConnectorRecord]] = defaultdict(list)
    for record in population.health:
        groups[(*home(record), born_of(record))].append(record)
    return [group for group in groups.values() if len(group) > 1]


def namesake_pairs(population: Population) -> list[tuple[ConnectorRecord, ConnectorRecord]]:
    """Health records of two children of different homes in one postcode district with the same
    given and family name."""
    groups: defaultdict[tuple[str, str, str], list[ConnectorRecord]] = defaultdict(list)
    for record in population.health:
        assert record.address is not None
        district = record.address.postcode.split()[0]
        groups[name_of(record).given, name_of(record).family, district].append(record)
    return [
        (a, b)
        for group in groups.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
        if home(a) != home(b)
    ]


# Rates


@pytest.mark.parametrize(
    ("fault", "rate"),
    [
        (Fault.NAMES_SWAPPED, EXTREME.names_swapped),
        (Fault.KNOWN_AS, EXTREME.known_as),
        (Fault.WRONG_DATE_OF_BIRTH, EXTREME.wrong_date_of_birth),
        (Fault.NO_DATE_OF_BIRTH, EXTREME.missing_date_of_birth),
        (Fault.NO_ADDRESS, EXTREME.missing_address),
        (Fault.ADDRESS_WRITTEN_DIFFERENTLY, EXTREME.address_written_differently * 0.95),
    ],
)
def test_each_hard_case_appears_in_copies_at_roughly_its_rate(
    extreme: Population, fault: Fault, rate: float
) -> None:
    assert share(extreme, fault) == pytest.approx(rate, abs=0.01)


def test_a_new_family_name_appears_at_its_rate_with_the_old_name_recorded_about_half_the_time(
    extreme: Population,
) -> None:
    recorded = share(extreme, Fault.NEW_FAMILY)
    unrecorded = share(extreme, Fault.NEW_FAMILY_UNRECORDED)

    # A copy that kept a stale family name gets no new one: a little under the configured rate.
    assert recorded + unrecorded == pytest.approx(EXTREME.new_family, abs=0.01)
    assert recorded == pytest.approx(unrecorded, abs=0.01)


def test_without_the_hard_cases_no_copy_shows_one(medium: Population) -> None:
    hard = {
        Fault.NAMES_SWAPPED,
        Fault.KNOWN_AS,
        Fault.NEW_FAMILY,
        Fault.NEW_FAMILY_UNRECORDED,
        Fault.WRONG_DATE_OF_BIRTH,
        Fault.NO_DATE_OF_BIRTH,
        Fault.NO_ADDRESS,
        Fault.ADDRESS_WRITTEN_DIFFERENTLY,
    }

    assert not any(faults & hard for _, _, faults in copies(medium))
    assert all(copy.date_of_birth and copy.address for _, copy, _ in copies(medium))


def test_existing_noise_levels_give_the_populations_they_always_gave() -> None:
    # Digests of the records before the hard cases were added: a hard case at rate zero must not
    # draw from the random stream. Change them only for a change meant to alter old populations.
    expected: dict[NoiseLevel, str] = {
        "low": "9872edf642d1be9f1161695a08ca04756236c3471fe2f900914c2c67f3f37f87",
        "medium": "d8acad19c05b1e4f0cac4d1e1eb1dd637045fec78c25700c6b3abb7224a9e347",
        "high": "190e7111bb223dc1c8fe53081cbaad7f7556bd46a5ac85cee872c3e903230bdb",
    }
    for level, digest in expected.items():
        population = generate_population(3, 200, noise=NoiseProfile.preset(level))
        lines = [r.model_dump_json() for s in SOURCES for r in population.records(s)]
        assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == digest, level


# Each fault is what its label says, and only in copies


def test_the_health_record_is_never_corrupted(extreme: Population) -> None:
    assert not any(source == "health" for source, _ in extreme.faults)
    for record in extreme.health:
        assert record.date_of_birth is not None
        assert record.address is not None
        assert name_of(record).given in FEMALE_GIVEN + MALE_GIVEN + TWIN_NAMES


def test_a_copy_shows_a_missing_or_wholly_wrong_date_exactly_when_its_faults_say_so(
    extreme: Population,
) -> None:
    for health, copy, faults in copies(extreme):
        assert (copy.date_of_birth is None) == (Fault.NO_DATE_OF_BIRTH in faults)
        assert (copy.address is None) == (Fault.NO_ADDRESS in faults)
        if copy.date_of_birth is None:
            continue
        true, held = born_of(health), copy.date_of_birth
        all_differ = held.day != true.day and held.month != true.month and held.year != true.year
        assert all_differ == (Fault.WRONG_DATE_OF_BIRTH in faults)
        if all_differ:
            assert date(2008, 1, 16) <= held <= DEFAULT_TODAY


def test_an_address_written_another_way_is_the_same_house_in_other_lines(
    extreme: Population,
) -> None:
    rewritten = 0
    for health, copy, faults in copies(extreme):
        if Fault.ADDRESS_WRITTEN_DIFFERENTLY not in faults or faults & {
            Fault.MOVED,
            Fault.PLACEMENT,
        }:
            continue
        assert health.address is not None
        assert copy.address is not None
        assert copy.address.postcode == health.address.postcode
        assert copy.address.lines != health.address.lines
        assert copy.address.lines[0][0] == health.address.lines[0][0]
        rewritten += 1
    assert rewritten > 50


def test_swapped_names_are_the_health_names_the_other_way_round(extreme: Population) -> None:
    swapped = 0
    for health, copy, faults in copies(extreme):
        true, held = name_of(health), name_of(copy)
        exactly_swapped = (held.given, held.family) == (true.family, true.given)
        if exactly_swapped and true.given != true.family:  # Thomas Thomas swaps to himself
            assert Fault.NAMES_SWAPPED in faults
        if Fault.NAMES_SWAPPED in faults and not faults & (NAME_FAULTS - {Fault.NAMES_SWAPPED}):
            assert exactly_swapped
            swapped += 1
    assert swapped > 20


def test_swapped_names_sometimes_carry_a_slip_as_well(extreme: Population) -> None:
    slipped = [
        faults
        for _, _, faults in copies(extreme)
        if Fault.NAMES_SWAPPED in faults and faults & {Fault.GIVEN_TYPO, Fault.FAMILY_TYPO}
    ]

    assert len(slipped) >= 10


def test_a_known_as_name_is_another_real_name_of_the_same_sex_and_never_a_nickname(
    extreme: Population,
) -> None:
    known_as = [
        (health, copy)
        for health, copy, faults in copies(extreme)
        if faults & NAME_FAULTS == {Fault.KNOWN_AS}
    ]

    assert len(known_as) > 100
    for health, copy in known_as:
        true, held = name_of(health).given, name_of(copy).given
        assert held in (FEMALE_GIVEN if health.sex is Sex.FEMALE else MALE_GIVEN)
        assert held != true
        assert held not in NICKNAMES.get(true, ())
        assert true not in NICKNAMES.get(held, ())


def test_a_new_family_name_keeps_the_old_one_as_former_only_when_recorded(
    extreme: Population,
) -> None:
    changed = [
        (health, copy, faults)
        for health, copy, faults in copies(extreme)
        if faults & {Fault.NEW_FAMILY, Fault.NEW_FAMILY_UNRECORDED}
    ]

    for health, copy, faults in changed:
        if faults & {Fault.NAMES_SWAPPED, Fault.FAMILY_TYPO}:
            continue
        assert name_of(copy).family != name_of(health).family
        recorded = name_of(health).family in name_of(copy).former_family
        assert recorded == (Fault.NEW_FAMILY in faults)
    # "A new name plus one other difference": the cases a matcher must still link.
    assert sum(len(faults) >= 2 for _, _, faults in changed) > 20


def test_no_copy_differs_from_health_without_a_fault_to_say_why(extreme: Population) -> None:
    for health, copy, faults in copies(extreme):
        if faults:
            continue
        assert name_of(copy).given == name_of(health).given
        assert name_of(copy).family == name_of(health).family
        assert copy.date_of_birth == health.date_of_birth
        assert copy.address == health.address


# Twins and namesakes


def test_about_one_child_in_thirty_five_is_a_twin_and_twins_share_a_household(
    extreme: Population,
) -> None:
    twins = twin_sets(extreme)

    # ~1.4% of maternities in England are twins: ~2.8% of children.
    assert sum(len(t) for t in twins) / CHILDREN == pytest.approx(0.028, abs=0.008)
    for twin in twins:
        assert len({name_of(r).family for r in twin}) == 1
        assert len({json.dumps(r.model_dump(mode="json")["carers"]) for r in twin}) == 1
        assert len({r.gp_practice for r in twin}) == 1
        assert len({name_of(r).given for r in twin}) == len(twin)


def test_some_twins_have_lookalike_names_including_boy_girl_twins(
    extreme: Population, medium: Population
) -> None:
    pairs = {frozenset(p) for pairs in LOOKALIKE_TWINS.values() for p in pairs}

    def lookalike(population: Population) -> list[list[ConnectorRecord]]:
        return [
            t
            for t in twin_sets(population)
            if any(frozenset((name_of(a).given, name_of(b).given)) in pairs for a in t for b in t)
        ]

    named_alike = lookalike(extreme)
    assert len(named_alike) / len(twin_sets(extreme)) == pytest.approx(
        EXTREME.lookalike_twins, abs=0.12
    )
    assert any(len({r.sex for r in t}) == 2 for t in named_alike)
    assert len(lookalike(medium)) < len(named_alike) / 3


def test_namesakes_live_in_one_district_some_born_the_same_year(
    extreme: Population, medium: Population
) -> None:
    planted = round(EXTREME.namesakes * CHILDREN)
    pairs = namesake_pairs(extreme)
    same_year = [(a, b) for a, b in pairs if born_of(a).year == born_of(b).year]

    assert len(pairs) >= planted
    assert len(pairs) >= len(namesake_pairs(medium)) + planted * 0.9
    assert len(same_year) >= planted * 0.4
    assert all(born_of(a) != born_of(b) for a, b in same_year)


# The truth file


def test_the_truth_file_records_each_copys_faults_and_no_values(
    tmp_path: Path, extreme: Population
) -> None:
    write_population(extreme, tmp_path)

    rows = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert load_faults(tmp_path / "truth.jsonl") == extreme.faults
    assert all("faults" not in row for row in rows if row["source"] == "health")
    with_faults = [row for row in rows if "faults" in row]
    assert len(with_faults) == len(extreme.faults) > 1000
    assert {f for row in with_faults for f in row["faults"]} == set(Fault)
    assert all(set(row) == {"source", "record_id", "child_id", "faults"} for row in with_faults)


# Primitives


@given(
    born=st.dates(min_value=date(2008, 1, 16), max_value=DEFAULT_TODAY),
    seed=st.integers(),
)
def test_a_wrong_date_of_birth_differs_in_every_part_and_stays_a_child_s(born, seed):
    earliest = date(2008, 1, 16)

    wrong = wrong_date_of_birth(random.Random(seed), born, earliest, DEFAULT_TODAY)

    assert wrong.day != born.day
    assert wrong.month != born.month
    assert wrong.year != born.year
    assert earliest <= wrong <= DEFAULT_TODAY


@pytest.mark.parametrize(
    ("name", "forms"),
    [
        ("Amelia", {"Amelia", "Millie", "Mia"}),
        ("Mia", {"Mia", "Amelia", "Millie"}),
        ("Charlie", {"Charlie", "Charles", "Charlotte", "Lottie"}),
        ("Henry", {"Henry", "Harry", "Hal"}),
    ],
)
def test_another_given_name_is_never_a_form_of_the_name(name: str, forms: set[str]) -> None:
    pool = FEMALE_GIVEN + MALE_GIVEN
    others = {another_given_name(random.Random(seed), name, pool) for seed in range(500)}

    assert not others & forms
    assert len(others) > 100
