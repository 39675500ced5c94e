"""The synthetic population: deterministic, valid by every identifier's rules, drifted as
configured, and never a central copy of children's details."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.protocol import ConnectorRecord, Indicators, PersonName
from connectors.synthetic import (
    DEFAULT_SEED,
    DEFAULT_TODAY,
    SHOWCASE_KINDS,
    SHOWCASE_MIN_CHILDREN,
    SOURCES,
    NoiseLevel,
    NoiseProfile,
    Population,
    Prevalence,
    generate_population,
    load_truth,
    showcase,
    write_population,
)
from connectors.synthetic.names import NICKNAMES
from connectors.synthetic.noise import misspell, swapped_day_month
from gateway.identifiers import is_synthetic_nhs_number, is_valid_nhs_number, normalise_upn

POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}$")
DRAMA_PHONE = re.compile(r"^(0113 496 0[0-9]{3}|07700 900[0-9]{3})$")
EMAIL_DOMAINS = ("@example.nhs.uk", "@example.sch.uk", "@example.gov.uk")

small_populations = settings(max_examples=12, deadline=None)


@pytest.fixture(scope="module")
def population() -> Population:
    return generate_population(seed=7, children=2000)


def child_records(population: Population) -> dict[str, dict[str, ConnectorRecord]]:
    """Each child's records, by child id then source, via the ground truth."""
    by_child: dict[str, dict[str, ConnectorRecord]] = {}
    for source in SOURCES:
        for record in population.records(source):
            child = population.truth[source, record.record_id]
            assert source not in by_child.setdefault(child, {}), "two records, one source"
            by_child[child][source] = record
    return by_child


def copies(population: Population, source: str) -> list[tuple[ConnectorRecord, ConnectorRecord]]:
    """(health record, copy) pairs for one copying source."""
    return [
        (records["health"], records[source])
        for records in child_records(population).values()
        if source in records
    ]


def age(born: date, on: date = DEFAULT_TODAY) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def rate(hits: Iterable[bool]) -> float:
    """The share of true values."""
    values = list(hits)
    return sum(values) / len(values)


def name_of(record: ConnectorRecord) -> PersonName:
    assert record.name is not None
    return record.name


def born_of(record: ConnectorRecord) -> date:
    assert record.date_of_birth is not None
    return record.date_of_birth


def status_of(record: ConnectorRecord) -> str:
    """The one status a social care record's indicators describe."""
    flags = record.indicators
    assert flags is not None
    for status in ("child_protection_plan", "looked_after", "early_help"):
        if getattr(flags, status):
            return status
    return "child_in_need"


# Determinism


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    write_population(generate_population(3, 300), tmp_path / "a")
    write_population(generate_population(3, 300), tmp_path / "b")

    for name in ("health.jsonl", "education.jsonl", "social_care.jsonl", "truth.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seeds_give_different_populations() -> None:
    first, second = generate_population(3, 300), generate_population(4, 300)

    assert [r.identifiers.nhs_number for r in first.health] != [
        r.identifiers.nhs_number for r in second.health
    ]


def test_population_depends_on_today_not_the_clock() -> None:
    later = date(2030, 6, 1)

    population = generate_population(3, 50, today=later)

    assert all(0 <= age(born_of(r), on=later) <= 17 for r in population.health)
    assert all(r.as_of.date() <= later for r in population.health)
    assert generate_population(3, 50) == generate_population(3, 50, today=DEFAULT_TODAY)


# Invariants for any seed


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(0, 60))
def test_every_child_has_one_health_record_and_the_truth_covers_every_record(seed, children):
    population = generate_population(seed, children)

    by_child = child_records(population)
    all_records = {(s, r.record_id) for s in SOURCES for r in population.records(s)}
    assert len(population.health) == children
    assert len(by_child) == children
    assert all("health" in records for records in by_child.values())
    assert set(population.truth) == all_records


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(1, 60))
def test_nhs_numbers_are_synthetic_valid_unique_and_never_wrong_in_a_copy(seed, children):
    population = generate_population(seed, children)

    by_child = child_records(population)
    true_numbers = {
        child: records["health"].identifiers.nhs_number for child, records in by_child.items()
    }
    assert all(
        n is not None and is_synthetic_nhs_number(n) and is_valid_nhs_number(n)
        for n in true_numbers.values()
    )
    assert len(set(true_numbers.values())) == children
    for child, records in by_child.items():
        for record in records.values():
            assert record.identifiers.nhs_number in (None, true_numbers[child])


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(1, 60))
def test_identifiers_postcodes_phones_and_emails_have_valid_formats(seed, children):
    population = generate_population(seed, children)

    records = [r for s in SOURCES for r in population.records(s)]
    upns = [r.identifiers.upn for r in population.education]
    assert all(upn is not None and normalise_upn(upn) == upn for upn in upns)
    assert len(set(upns)) == len(upns)
    assert all(r.identifiers.local_id == r.record_id for r in population.social_care)
    assert all(re.fullmatch(r"LA-[0-9]{6}", r.record_id) for r in population.social_care)
    assert all(r.address is not None and POSTCODE.match(r.address.postcode) for r in records)
    assert all(re.fullmatch(r"[0-9]{6}", r.school.urn) for r in population.education if r.school)
    assert all(
        r.gp_practice and re.fullmatch(r"[A-Z][0-9]{5}", r.gp_practice.ods_code)
        for r in population.health
    )
    phones = [c.phone for r in records for c in r.carers or []]
    contacts = [
        c for r in records for i in r.involvements or [] for c in (i.practitioner, i.broker) if c
    ]
    phones += [c.phone for c in contacts] + [r.school.phone for r in records if r.school]
    phones += [r.gp_practice.phone for r in records if r.gp_practice]
    assert all(phone is None or DRAMA_PHONE.match(phone) for phone in phones)
    assert all(c.email and c.email.endswith(EMAIL_DOMAINS) for c in contacts)


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(1, 60))
def test_every_record_validates_and_round_trips_through_json(seed, children):
    population = generate_population(seed, children)

    for source in SOURCES:
        for record in population.records(source):
            assert ConnectorRecord.model_validate_json(record.model_dump_json()) == record


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(1, 60))
def test_who_holds_what_follows_age_and_circumstance(seed, children):
    population = generate_population(seed, children)

    for records in child_records(population).values():
        health = records["health"]
        child_age = age(born_of(health))
        services = {i.service for i in health.involvements or []}
        assert 0 <= child_age <= 17
        assert ("education" in records) == (child_age >= 4)
        assert ("Health visiting" in services) == (child_age < 5)
        assert ("School nursing" in services) == (child_age >= 5)
        assert not health.flags.shielded
        assert not any(r.flags.restricted for s, r in records.items() if s != "health")
        assert not any(r.flags.shielded for s, r in records.items() if s != "social_care")


@small_populations
@given(seed=st.integers(0, 2**32), children=st.integers(20, 80))
def test_social_care_indicators_and_lead_are_consistent(seed, children):
    population = generate_population(seed, children)

    for record in population.social_care:
        flags = record.indicators
        assert isinstance(flags, Indicators)
        assert flags.child_in_need == (status_of(record) != "early_help")
        assert [flags.child_protection_plan, flags.looked_after, flags.early_help].count(True) <= 1
        leads = [i for i in record.involvements or [] if i.lead]
        assert len(leads) == 1
        assert leads[0].service == ("Early help" if flags.early_help else "Children's social care")
        if flags.looked_after:
            assert any(c.relationship == "Foster carer" for c in record.carers or [])


# Rates on a population of 2000


def test_circumstances_have_the_configured_prevalence(population: Population) -> None:
    rates = Prevalence()
    sensitive = [r for r in population.health if any(i.sensitive for i in r.involvements or [])]

    assert len(population.social_care) == round(rates.social_care * 2000)
    assert sum(r.flags.shielded for r in population.social_care) == round(rates.shielded * 2000)
    assert sum(r.flags.restricted for r in population.health) == round(rates.restricted * 2000)
    assert len(sensitive) == round(rates.sensitive_service * 2000)
    assert all(i.broker is not None for r in sensitive for i in r.involvements or [] if i.sensitive)


def test_social_care_status_mix_is_plausible(population: Population) -> None:
    statuses = Counter(status_of(record) for record in population.social_care)

    assert statuses["early_help"] / 240 == pytest.approx(0.40, abs=0.01)
    assert statuses["child_in_need"] / 240 == pytest.approx(0.30, abs=0.01)
    assert statuses["child_protection_plan"] / 240 == pytest.approx(0.13, abs=0.01)
    assert statuses["looked_after"] / 240 == pytest.approx(0.17, abs=0.01)


def test_copies_hold_the_nhs_number_at_the_configured_rates(population: Population) -> None:
    noise = NoiseProfile()
    education, social_care = population.education, population.social_care

    education_held = rate(r.identifiers.nhs_number is not None for r in education)
    social_care_held = rate(r.identifiers.nhs_number is not None for r in social_care)

    assert education_held == pytest.approx(noise.education_nhs_number, abs=0.05)
    assert social_care_held == pytest.approx(noise.social_care_nhs_number, abs=0.1)


def test_noise_appears_in_copies_at_roughly_the_configured_rates(population: Population) -> None:
    noise = NoiseProfile()
    pairs = copies(population, "education")
    nicknamed = [(h, e) for h, e in pairs if name_of(h).given in NICKNAMES]
    swappable = [(h, e) for h, e in pairs if swapped_day_month(born_of(h))]

    def misspelt(health: PersonName, copy: PersonName) -> bool:
        given_changed = copy.given not in (health.given, *NICKNAMES.get(health.given, ()))
        family_changed = copy.family not in (health.family, *health.former_family)
        return given_changed or family_changed

    nickname_rate = rate(name_of(e).given in NICKNAMES[name_of(h).given] for h, e in nicknamed)
    typo_rate = rate(misspelt(name_of(h), name_of(e)) for h, e in pairs)
    swap_rate = rate(born_of(e) == swapped_day_month(born_of(h)) for h, e in swappable)
    moved_rate = rate(e.address != h.address for h, e in pairs)

    assert nickname_rate == pytest.approx(noise.nickname, abs=0.05)
    assert typo_rate == pytest.approx(noise.typo, abs=0.02)
    assert swap_rate == pytest.approx(noise.swapped_day_month, abs=0.02)
    assert swap_rate > 0
    assert moved_rate == pytest.approx(noise.moved_address, abs=0.03)


def test_a_name_change_leaves_exactly_one_stale_copy(population: Population) -> None:
    renamed = [
        records
        for records in child_records(population).values()
        if name_of(records["health"]).former_family
    ]

    assert len(renamed) == round(NoiseProfile().name_change * 2000)
    for records in renamed:
        former = name_of(records["health"]).former_family[0]
        stale = [s for s, r in records.items() if r.name and r.name.family == former]
        assert len(stale) == (1 if len(records) > 1 else 0)
        assert "health" not in stale


def test_without_noise_copies_agree_with_health() -> None:
    population = generate_population(5, 400, noise=NoiseProfile.preset("none"))

    for source in ("education", "social_care"):
        for health, copy in copies(population, source):
            assert copy.name == health.name
            assert copy.date_of_birth == health.date_of_birth
            assert copy.identifiers.nhs_number == health.identifiers.nhs_number
            looked_after = copy.indicators is not None and copy.indicators.looked_after
            assert looked_after or copy.address == health.address


def test_more_noise_means_more_disagreement() -> None:
    def disagreeing(level: NoiseLevel) -> int:
        population = generate_population(5, 1000, noise=NoiseProfile.preset(level))
        return sum(
            e.name != h.name or e.address != h.address for h, e in copies(population, "education")
        )

    assert disagreeing("low") < disagreeing("medium") < disagreeing("high")


def test_records_are_shuffled_so_order_does_not_reveal_matches(population: Population) -> None:
    health_order = [population.truth["health", r.record_id] for r in population.health]
    education_order = [population.truth["education", r.record_id] for r in population.education]

    assert health_order != sorted(health_order)
    assert sum(h == e for h, e in zip(health_order, education_order, strict=False)) < 10


def test_siblings_share_a_household(population: Population) -> None:
    by_address = Counter(
        r.address.postcode + r.address.lines[0] for r in population.health if r.address
    )

    assert max(by_address.values()) >= 3
    assert sum(count >= 2 for count in by_address.values()) > 200


# Noise primitives


@settings(max_examples=500)
@given(
    name=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'", min_size=2, max_size=20
    ),
    seed=st.integers(),
)
def test_a_misspelling_always_changes_the_name_by_one_keystroke(name, seed):
    slipped = misspell(random.Random(seed), name)

    assert slipped != name
    assert abs(len(slipped) - len(name)) <= 1
    initial_kept = slipped[0].lower() == name[0].lower()
    assert initial_kept or sorted(slipped[:2].lower()) == sorted(name[:2].lower())
    assert slipped[0].isupper() == name[0].isupper()


def test_a_day_month_swap_needs_a_day_that_can_be_a_month() -> None:
    assert swapped_day_month(date(2015, 3, 7)) == date(2015, 7, 3)
    assert swapped_day_month(date(2015, 3, 13)) is None
    assert swapped_day_month(date(2015, 4, 4)) is None


def test_noise_profiles_reject_impossible_rates() -> None:
    with pytest.raises(ValueError, match="typo"):
        NoiseProfile(typo=1.5)
    with pytest.raises(ValueError, match="unknown noise level"):
        NoiseProfile.preset("deafening")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subset"):
        Prevalence(social_care=0.01, shielded=0.02)


def test_no_children_gives_an_empty_population_and_a_negative_count_is_refused() -> None:
    assert generate_population(1, 0) == Population(
        health=(), education=(), social_care=(), truth={}
    )
    with pytest.raises(ValueError, match="negative"):
        generate_population(1, -1)


# Showcase


def test_showcase_picks_children_with_the_promised_properties() -> None:
    population = generate_population(DEFAULT_SEED, SHOWCASE_MIN_CHILDREN)

    picks = showcase(population)

    assert tuple(picks) == SHOWCASE_KINDS
    assert len(set(picks.values())) == len(picks)
    by_nhs = {r["health"].identifiers.nhs_number: r for r in child_records(population).values()}
    chosen = {kind: by_nhs[nhs] for kind, nhs in picks.items()}
    assert not any(records["health"].flags.restricted for records in chosen.values())
    shielded = chosen["shielded"]["social_care"]
    assert shielded.flags.shielded
    assert shielded.identifiers.nhs_number == picks["shielded"]
    protected = chosen["child_protection_plan"]["social_care"]
    assert protected.indicators
    assert protected.indicators.child_protection_plan
    assert protected.identifiers.nhs_number == picks["child_protection_plan"]
    assert any(i.sensitive for i in chosen["sensitive_service"]["health"].involvements or [])
    assert (
        chosen["education_linked"]["education"].identifiers.nhs_number == picks["education_linked"]
    )
    ordinary = chosen["ordinary"]
    assert "social_care" not in ordinary
    assert not any(i.sensitive for i in ordinary["health"].involvements or [])
    for kind in SHOWCASE_KINDS[1:]:
        assert "social_care" not in chosen[kind] or not chosen[kind]["social_care"].flags.shielded


def test_showcase_refuses_a_population_too_small_to_show_everything() -> None:
    with pytest.raises(ValueError, match="no child to show"):
        showcase(generate_population(DEFAULT_SEED, 20))


# Files


def test_write_population_writes_each_agency_and_the_truth_with_the_counts_returned(
    tmp_path: Path, population: Population
) -> None:
    summary = write_population(population, tmp_path)

    lines = {p.name: p.read_text(encoding="utf-8").splitlines() for p in tmp_path.iterdir()}
    assert set(lines) == {"health.jsonl", "education.jsonl", "social_care.jsonl", "truth.jsonl"}
    assert len(lines["health.jsonl"]) == summary.health == 2000
    assert len(lines["education.jsonl"]) == summary.education == len(population.education)
    assert len(lines["social_care.jsonl"]) == summary.social_care == len(population.social_care)
    assert len(lines["truth.jsonl"]) == summary.truth == len(population.truth)
    assert [ConnectorRecord.model_validate_json(line) for line in lines["health.jsonl"]] == list(
        population.health
    )
    assert load_truth(tmp_path / "truth.jsonl") == population.truth


def test_the_truth_file_holds_ids_only(tmp_path: Path) -> None:
    write_population(generate_population(2, 30), tmp_path)

    first = (tmp_path / "truth.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert set(ConnectorRecord.model_fields) & set(re.findall(r'"(\w+)":', first)) == {"record_id"}
    assert re.findall(r'"(\w+)":', first) == ["source", "record_id", "child_id"]


def test_load_truth_refuses_a_damaged_file(tmp_path: Path) -> None:
    row = '{"source": "health", "record_id": "H0000001", "child_id": "child-0000001"}\n'
    (tmp_path / "repeated.jsonl").write_text(row + row, encoding="utf-8")
    (tmp_path / "malformed.jsonl").write_text(row + '{"source": "health"}\n', encoding="utf-8")

    with pytest.raises(ValueError, match="line 2 repeats"):
        load_truth(tmp_path / "repeated.jsonl")
    with pytest.raises(ValueError, match="line 2 is not a truth row"):
        load_truth(tmp_path / "malformed.jsonl")
