"""The national synthetic population: many agencies, children who moved, and a truth file whose
holders are exactly the agencies whose records name the child."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from connectors.national import (
    AGENCY_KINDS,
    NATIONAL_KINDS,
    agency_name,
    postcode_district,
    route_key,
)
from connectors.protocol import ConnectorRecord
from connectors.synthetic.national import (
    RECORD_FILES,
    ChildTruth,
    HeldRecord,
    NationalManifest,
    generate_national,
    load_national,
    load_national_records,
    load_national_truth,
    write_national,
)
from gateway.identifiers import (
    is_synthetic_nhs_number,
    is_valid_nhs_number,
    normalise_postcode,
    normalise_upn,
)

SHAPE = {"local_authorities": 20, "practices": 60, "schools": 150}
CHILDREN = 2000
AGENCY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DRAMA_PHONE = re.compile(
    r"^(01[1-9]1 49[68] 0[0-9]{3}|011[3-8] 496 0[0-9]{3}|020 7946 0[0-9]{3}|01632 960[0-9]{3}"
    r"|07700 900[0-9]{3})$"
)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("national")
    write_national(generate_national(11, CHILDREN, **SHAPE), directory)
    return directory


@pytest.fixture(scope="module")
def manifest(out: Path) -> NationalManifest:
    return load_national(out)


@pytest.fixture(scope="module")
def truth(out: Path) -> list[ChildTruth]:
    return load_national_truth(out)


@pytest.fixture(scope="module")
def records(out: Path) -> dict[str, list[HeldRecord]]:
    """Every line of every records file, read back through the validating protocol model."""
    return {kind: load_national_records(out, kind) for kind in RECORD_FILES}


@pytest.fixture(scope="module")
def holdings(
    truth: list[ChildTruth], records: dict[str, list[HeldRecord]]
) -> dict[str, list[tuple[str, ConnectorRecord]]]:
    """child id -> (agency, record) for every agency record, matched by NHS number or UPN."""
    by_identifier = {row.nhs_number: row.child for row in truth}
    by_identifier.update((row.upn, row.child) for row in truth if row.upn)
    held: dict[str, list[tuple[str, ConnectorRecord]]] = defaultdict(list)
    for kind in AGENCY_KINDS:
        for agency, record in records[kind]:
            ids = record.identifiers
            children = {by_identifier[i] for i in (ids.nhs_number, ids.upn) if i is not None}
            assert len(children) == 1, f"{agency} {record.record_id} names {children}"
            held[children.pop()].append((agency, record))
    return held


def test_the_same_seed_writes_the_same_bytes(out: Path, tmp_path: Path) -> None:
    write_national(generate_national(11, CHILDREN, **SHAPE), tmp_path)
    for path in sorted(out.rglob("*.json*")):
        assert (tmp_path / path.relative_to(out)).read_bytes() == path.read_bytes(), path.name


def test_another_seed_gives_another_population(truth: list[ChildTruth]) -> None:
    other = generate_national(12, 50, **SHAPE)
    assert {row.nhs_number for row in other.truth}.isdisjoint(row.nhs_number for row in truth)


def test_agencies_are_as_many_as_asked_and_named_from_their_codes(
    manifest: NationalManifest,
) -> None:
    kinds = Counter(agency.kind for agency in manifest.agencies)
    assert kinds == {"social_care": 20, "gp_practice": 60, "school": 150}
    authorities = {a.code for a in manifest.agencies if a.kind == "social_care"}
    for agency in manifest.agencies:
        assert AGENCY_NAME.fullmatch(agency.name)
        assert agency.name == agency_name(agency.kind, agency.code)
        assert agency.local_authority in authorities
    assert len({agency.name for agency in manifest.agencies}) == len(manifest.agencies)
    assert set(NATIONAL_KINDS) == set(RECORD_FILES)


def test_names_and_route_keys_follow_the_shared_design() -> None:
    assert agency_name("social_care", "E0800001") == "la_e0800001"
    assert agency_name("gp_practice", "Y00001") == "gp_y00001"
    assert agency_name("school", "100001") == "school_100001"
    assert route_key("social_care", "E0800001") == "la:E0800001"
    assert route_key("gp_practice", "y00001") == "ods:Y00001"
    assert route_key("school", "100001") == "urn:100001"
    assert postcode_district("ls1 4ap") == "LS1"
    assert postcode_district("SW1A1AA") == "SW1A"


def test_every_authority_has_districts_of_its_own(manifest: NationalManifest) -> None:
    authorities = {a.code for a in manifest.agencies if a.kind == "social_care"}
    assert set(manifest.postcode_districts.values()) == authorities
    areas = defaultdict(set)
    for district, la in manifest.postcode_districts.items():
        assert normalise_postcode(f"{district} 1AB").startswith(f"{district} ")
        areas[re.sub(r"[0-9]+$", "", district)].add(la)
    assert all(len(las) == 1 for las in areas.values()), "a postcode area spans authorities"


def test_every_home_lies_in_a_district_of_an_authority(
    manifest: NationalManifest, truth: list[ChildTruth], records: dict[str, list[HeldRecord]]
) -> None:
    districts = manifest.postcode_districts
    assert all(postcode_district(row.postcode) in districts for row in truth)
    for _, record in records["health"]:
        assert record.address is not None
        assert normalise_postcode(record.address.postcode) == record.address.postcode
        assert postcode_district(record.address.postcode) in districts


def test_an_open_social_care_record_is_held_by_the_authority_of_the_home(
    manifest: NationalManifest, truth: list[ChildTruth], holdings: dict[str, list]
) -> None:
    names = {a.code: a.name for a in manifest.agencies}
    opened = 0
    for row in truth:
        home = names[manifest.postcode_districts[postcode_district(row.postcode)]]
        for agency, record in holdings[row.child]:
            if agency.startswith("la_") and record.involvements[0].until is None:
                assert agency == home
                opened += 1
    assert opened == round(0.12 * CHILDREN)


def test_holders_are_exactly_the_agencies_whose_records_name_the_child(
    truth: list[ChildTruth], holdings: dict[str, list]
) -> None:
    for row in truth:
        agencies = [agency for agency, _ in holdings[row.child]]
        assert len(agencies) == len(set(agencies)), "two records about one child at one agency"
        assert sorted(agencies) == list(row.holders)


def test_every_child_is_on_the_spine_and_registered_with_the_practice_it_names(
    truth: list[ChildTruth], records: dict[str, list[HeldRecord]], holdings: dict[str, list]
) -> None:
    spine = {record.identifiers.nhs_number: record for _, record in records["health"]}
    assert set(spine) == {row.nhs_number for row in truth}
    for row in truth:
        practice = spine[row.nhs_number].gp_practice
        assert practice is not None
        practices = [agency for agency, _ in holdings[row.child] if agency.startswith("gp_")]
        assert practices == [agency_name("gp_practice", practice.ods_code)]


def test_children_who_moved_authority_left_a_closed_record_only_the_locator_can_find(
    manifest: NationalManifest, truth: list[ChildTruth], holdings: dict[str, list]
) -> None:
    names = {a.code: a.name for a in manifest.agencies}
    movers = [row for row in truth if row.moved_authority]
    assert 0.07 * CHILDREN <= len(movers) <= 0.09 * CHILDREN
    closed = 0
    for row in movers:
        home = names[manifest.postcode_districts[postcode_district(row.postcode)]]
        for agency, record in holdings[row.child]:
            if agency.startswith("la_") and record.involvements[0].until is not None:
                assert agency != home
                assert agency in row.holders
                assert record.address.postcode != row.postcode
                assert not any(record.indicators.model_dump().values())
                closed += 1
    assert closed == pytest.approx(0.3 * len(movers), abs=2)


def test_children_who_moved_school_are_still_on_their_former_schools_file(
    truth: list[ChildTruth], records: dict[str, list[HeldRecord]], holdings: dict[str, list]
) -> None:
    on_roll = {record.identifiers.upn: record.school for _, record in records["education"]}
    moved = [row for row in truth if row.moved_school]
    assert len(moved) == pytest.approx(0.10 * CHILDREN, abs=2)
    for row in moved:
        files = [(a, r) for a, r in holdings[row.child] if a.startswith("school_")]
        former = [(a, r) for a, r in files if r.involvements[0].until is not None]
        current = [a for a, r in files if r.involvements[0].until is None]
        assert len(former) == 1
        assert former[0][0] in row.holders
        assert current == [agency_name("school", on_roll[row.upn].urn)]
        assert former[0][1].involvements[0].practitioner.role == "Designated safeguarding lead"


def test_identifiers_are_valid_synthetic_and_held_by_the_identity_sources(
    truth: list[ChildTruth], records: dict[str, list[HeldRecord]]
) -> None:
    for row in truth:
        assert is_valid_nhs_number(row.nhs_number)
        assert is_synthetic_nhs_number(row.nhs_number)
        if row.upn is not None:
            assert normalise_upn(row.upn) == row.upn
    pupils = {row.upn: row.nhs_number for row in truth if row.upn}
    register = records["education"]
    assert len(register) == len(pupils)
    for _, record in register:
        assert pupils[record.identifiers.upn] == record.identifiers.nhs_number


def test_agency_records_always_carry_an_identifier_a_locator_is_keyed_on(
    records: dict[str, list[HeldRecord]],
) -> None:
    for kind in ("social_care", "gp_practice"):
        assert all(record.identifiers.nhs_number for _, record in records[kind])
    schools = records["school"]
    assert all(record.identifiers.upn for _, record in schools)
    with_nhs = sum(record.identifiers.nhs_number is not None for _, record in schools)
    assert 0.5 < with_nhs / len(schools) < 0.7


def test_records_hold_only_the_fields_their_kind_provides(
    records: dict[str, list[HeldRecord]],
) -> None:
    always = {"record_id", "identifiers", "flags", "as_of"}
    for kind, lines in records.items():
        provided = {str(field) for field in NATIONAL_KINDS[kind]} - {"nhs_number"}
        indicators = {"child_protection_plan", "looked_after", "child_in_need", "early_help"}
        if provided & indicators:
            provided = (provided - indicators) | {"indicators"}
        for _, record in lines:
            held = {name for name, value in record if value is not None} - always
            assert held <= provided, (kind, held - provided)


def test_organisations_and_practitioners_have_drama_phone_numbers(
    records: dict[str, list[HeldRecord]],
) -> None:
    for kind in AGENCY_KINDS:
        for _, record in records[kind][:200]:
            for involvement in record.involvements or ():
                assert DRAMA_PHONE.fullmatch(involvement.practitioner.phone)


def test_shape_must_give_every_authority_a_practice_and_two_schools() -> None:
    with pytest.raises(ValueError, match="practice and two schools"):
        generate_national(1, 10, local_authorities=10, practices=9, schools=40)


def test_synth_national_writes_the_layout_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    argv = ["synth", "--national", "--seed", "3", "--children", "40", "--out", str(tmp_path)]
    shape = ["--local-authorities", "3", "--practices", "4", "--schools", "6"]
    assert main([*argv, *shape]) == 0
    printed = capsys.readouterr().out
    assert "agencies: social_care 3, gp_practice 4, school 6" in printed
    assert "median holders per child" in printed
    assert len(load_national_truth(tmp_path)) == 40
    assert {path.name for path in (tmp_path / "records").iterdir()} == {
        f"{kind}.jsonl" for kind in RECORD_FILES
    }
