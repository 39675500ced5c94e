import json
from datetime import date

import pytest
from pydantic import ValidationError

from connectors.protocol import KNOWN_AS_MAX, Demographics, PersonName, random_id

# A demographic search as gateways sent it before any detail was optional or `known_as` existed.
FULL = {
    "given": "Amelia",
    "family": "Hart",
    "date_of_birth": "2015-03-07",
    "postcode": "LS6 3AB",
    "sex": "female",
    "former_family": None,
}


def test_a_full_search_from_before_partial_searches_is_read_and_written_unchanged():
    demographics = Demographics.model_validate_json(json.dumps(FULL))

    assert json.loads(demographics.model_dump_json()) == FULL


def test_a_search_may_give_only_some_details():
    partial = Demographics.model_validate({"family": "Hart", "date_of_birth": "2015-03-07"})

    assert (partial.given, partial.postcode, partial.known_as) == (None, None, [])
    assert partial.date_of_birth == date(2015, 3, 7)


def test_known_as_names_are_sent_when_there_are_some():
    demographics = Demographics.model_validate({**FULL, "known_as": ["Millie"]})

    assert json.loads(demographics.model_dump_json())["known_as"] == ["Millie"]


@pytest.mark.parametrize(
    "known_as",
    [
        pytest.param([""], id="empty name"),
        pytest.param(["a" * 101], id="name too long"),
        pytest.param(["Millie"] * (KNOWN_AS_MAX + 1), id="too many"),
    ],
)
def test_known_as_names_are_bounded(known_as):
    with pytest.raises(ValidationError):
        Demographics.model_validate({**FULL, "known_as": known_as})


def test_a_record_name_without_known_as_names_is_written_as_before():
    name = PersonName(given="Amelia", family="Hart")

    assert json.loads(name.model_dump_json()) == {
        "given": "Amelia",
        "family": "Hart",
        "former_family": [],
    }
    known = PersonName(given="Amelia", family="Hart", known_as=["Millie"])
    assert PersonName.model_validate_json(known.model_dump_json()) == known


def test_random_ids_are_128_bits_of_hex_and_fresh_each_time():
    ids = {random_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    assert len({i[12] for i in ids}) > 1  # no fixed version digit: every bit is random
