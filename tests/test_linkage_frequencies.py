import dataclasses
import json
import math
from typing import Any

import pytest

from gateway.linkage import Person
from gateway.linkage.frequencies import FrequenciesError, NameFrequencies, adjustment_bits


def people(**names: int) -> list[Person]:
    """`count` records for each given name (family names "Smith" throughout)."""
    return [Person(given, "Smith") for given, count in names.items() for _ in range(count)]


def test_a_name_held_by_fewer_than_k_records_gets_no_entry():
    table = NameFrequencies.from_people(people(Oliver=95, Ptolemy=4, Zeb=1), minimum_count=5)
    assert table.frequency("given", "oliver") == pytest.approx(0.95)
    assert table.frequency("given", "ptolemy") is None
    assert "ptolemy" not in table.to_json()
    assert table.records["given"] == 100  # the unlisted still count in the denominator


def test_k_is_configurable():
    table = NameFrequencies.from_people(people(Oliver=95, Ptolemy=4, Zeb=1), minimum_count=1)
    assert table.frequency("given", "zeb") == pytest.approx(0.01)


def test_keys_are_the_normalised_name_keys_and_missing_names_are_not_counted():
    table = NameFrequencies.from_people(
        [*(Person("Mary-Jane", "O'Brien") for _ in range(5)), Person("Baby", None)]
    )
    assert table.frequency("given", "maryjane") == 1.0
    assert table.frequency("family", "obrien") == 1.0
    assert table.records == {"given": 5, "family": 5}


def test_the_adjustment_is_log2_of_average_u_over_the_names_share():
    assert adjustment_bits(0.005, 0.02) == pytest.approx(-2.0)
    assert adjustment_bits(0.005, 0.00125) == pytest.approx(2.0)
    assert adjustment_bits(0.005, 0.0, minimum_u=0.005) == 0.0  # floored


def test_a_rare_name_gains_bits_and_a_very_common_one_loses_them():
    table = NameFrequencies.from_people(people(Oliver=300, Ptolemy=5, Zeb=3, Other=9692))
    assert table.adjustment_bits("given", "ptolemy", average_u=0.005) > 0  # 0.0005: +3.3
    assert table.adjustment_bits("given", "oliver", average_u=0.005) < 0  # 0.03: -2.6
    unlisted = table.adjustment_bits("given", "zeb", average_u=0.005)
    assert unlisted == pytest.approx(math.log2(0.005 / (4 / 10_000)))  # at the bound 4 / 10,000
    assert unlisted >= table.adjustment_bits("given", "ptolemy", average_u=0.005)
    assert table.largest_adjustment_bits("given", average_u=0.005) == unlisted


def test_an_unlisted_name_never_costs_bits_when_the_table_is_too_small_to_vouch_for_it():
    table = NameFrequencies.from_people(people(Oliver=20))  # unlisted: under 4 / 20 = 0.2
    assert table.adjustment_bits("given", "zeb", average_u=0.005) == 0.0


def test_only_name_fields_have_frequencies():
    table = NameFrequencies.from_people(people(Oliver=5))
    with pytest.raises(ValueError, match="no name frequencies for field 'postcode'"):
        table.frequency("postcode", "ls61ab")


def test_a_table_is_immutable():
    table = NameFrequencies.from_people(people(Oliver=5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.minimum_count = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.counts["given"]["zeb"] = 9  # type: ignore[index]


def test_a_saved_table_loads_as_the_same_table(tmp_path):
    table = NameFrequencies.from_people(people(Oliver=7, Amelia=12, Zeb=2), minimum_count=5)
    path = tmp_path / "names.json"
    table.save(path)
    assert NameFrequencies.load(path) == table


def valid_file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(NameFrequencies.from_people(people(Oliver=7)).to_json())
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["given"].update(zeb=2), r"given\.zeb: count must be .* >= minimum_count"),
        (lambda d: d.update(surname={}), "unknown key 'surname'"),
        (lambda d: d.pop("family"), "'family' is missing"),
        (lambda d: d.update(format="something-else"), "not a name-frequency table"),
        (lambda d: d.update(minimum_count=0), "minimum_count must be a whole number >= 1"),
        (lambda d: d["records"].update(given=-1), r"records\.given must be a whole number"),
        (lambda d: d["given"].update(oliver=700), "more than the 7 records counted"),
        (lambda d: d["given"].update({"mary jane": 5}), "is not a name key"),
        (lambda d: d["given"].update(oliver="7"), r"given\.oliver: count must be a whole number"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(tmp_path, change, message):
    data = valid_file()
    change(data)
    path = tmp_path / "names.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FrequenciesError, match=message) as refused:
        NameFrequencies.load(path)
    assert str(path) in str(refused.value)


def test_a_file_that_is_not_json_or_not_there_is_refused(tmp_path):
    path = tmp_path / "names.json"
    path.write_text("given = {}")
    with pytest.raises(FrequenciesError, match="not valid JSON"):
        NameFrequencies.load(path)
    with pytest.raises(FrequenciesError, match="cannot read name-frequency table"):
        NameFrequencies.load(tmp_path / "absent.json")
