import math
import os
import subprocess
import sys
import tomllib
from dataclasses import replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connectors.protocol import (
    Address,
    ConnectorRecord,
    Demographics,
    Identifiers,
    PersonName,
    Sex,
)
from gateway.linkage import Band, Comparison, LinkageConfigError, LinkageModel, Person
from gateway.linkage.compare import FIELD_LEVELS, Level
from gateway.linkage.nicknames import _ENTRIES, _STANDALONE, equivalent_names
from gateway.linkage.person import normalise_name

REPO = Path(__file__).resolve().parent.parent
MODEL = LinkageModel.load()
DEFAULT_CONFIG = tomllib.loads(
    resources.files("gateway.linkage").joinpath("model.toml").read_text(encoding="utf-8")
)
BORN = date(2015, 3, 4)


def person(**changes):
    """Oliver Smith, born 4 March 2015, living at LS6 1AB - or as changed."""
    base = Person("Oliver", "Smith", (), BORN, "LS6 1AB", Sex.MALE)
    return replace(base, **changes)


def levels(a: Person, b: Person) -> dict[str, str]:
    return {c.field: c.level for c in MODEL.score(a, b).comparisons}


# --- normalisation -------------------------------------------------------------------------


def test_names_are_case_folded_without_accents_and_punctuation():
    p = Person("  ZOË ", "O'Brien-Smith", ("D\u2019Arcy",), None, None, None)
    assert (p.given, p.family, p.former_family) == ("zoe", "obrien smith", ("darcy",))


@pytest.mark.parametrize(
    ("raw", "name"),
    [("José-María", "jose maria"), ("Łukasz", "lukasz"), ("Nguyễn", "nguyen"), ("محمد", "محمد")],
)
def test_names_in_other_alphabets_keep_their_letters(raw, name):
    assert normalise_name(raw) == name


@pytest.mark.parametrize("placeholder", ["Baby", "BABY GIRL", "Unknown", "Twin 1", "x"])
def test_placeholder_names_are_missing_not_agreement(placeholder):
    twins = (person(given=placeholder), person(given=placeholder, sex=Sex.FEMALE))
    assert twins[0].given is None
    assert levels(*twins)["given"] == "MISSING"


def test_postcodes_are_normalised_and_non_postcodes_are_missing():
    assert person(postcode=" ls61ab ").postcode == "LS6 1AB"
    assert person(postcode="sw1a1aa").postcode == "SW1A 1AA"
    assert person(postcode="NFA").postcode is None
    assert person(postcode="LS6").postcode is None


def test_unknown_sex_is_missing():
    assert person(sex=Sex.UNKNOWN).sex is None


def test_a_former_name_equal_to_the_current_one_is_dropped():
    assert person(family="Smith", former_family=("SMITH", "Jones")).former_family == ("jones",)


def test_from_record_reads_name_date_address_and_sex():
    record = ConnectorRecord(
        record_id="E1",
        identifiers=Identifiers(),
        name=PersonName(given="Olly", family="Smith", former_family=["Jones"]),
        date_of_birth=BORN,
        sex=Sex.MALE,
        address=Address(lines=["1 Mill Lane"], postcode="ls6 1ab"),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert Person.from_record(record) == Person(
        "olly", "smith", ("jones",), BORN, "LS6 1AB", Sex.MALE, address_lines=("1 Mill Lane",)
    )


def test_from_record_treats_fields_not_sent_as_missing():
    record = ConnectorRecord(
        record_id="E1", identifiers=Identifiers(), as_of=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert Person.from_record(record) == Person(None, None, (), None, None, None)


def test_from_demographics_reads_the_query():
    query = Demographics(
        given="Oliver",
        family="Smith",
        date_of_birth=BORN,
        postcode="LS6 1AB",
        former_family="Jones",
    )
    assert Person.from_demographics(query) == Person(
        "oliver", "smith", ("jones",), BORN, "LS6 1AB", None
    )


def test_known_as_names_are_normalised_like_given_names_with_keys_without_spaces():
    p = Person("Amelia", "Hart", known_as=("Mary-Jane", "Baby", "AMELIA", "Millie", "millie"))

    assert p.known_as == ("mary jane", "millie")
    assert p.known_as_keys == frozenset({"maryjane", "millie"})


def test_known_as_names_come_from_records_and_queries():
    record = ConnectorRecord(
        record_id="E1",
        identifiers=Identifiers(),
        name=PersonName(given="Amelia", family="Hart", known_as=["Millie"]),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    )
    query = Demographics(family="Hart", date_of_birth=BORN, known_as=["Millie"])

    assert Person.from_record(record).known_as_keys == frozenset({"millie"})
    assert Person.from_demographics(query) == Person(
        None, "hart", (), BORN, None, None, known_as=("millie",)
    )


# --- nickname table ------------------------------------------------------------------------


def test_every_table_name_is_a_plain_word_that_normalises_to_its_key():
    names = [n for spellings, short in _ENTRIES for n in (*spellings, *short)]
    names += _STANDALONE
    assert all(n.isascii() and n.isalpha() and normalise_name(n) == n.casefold() for n in names)


def test_name_equivalence_is_symmetric_and_never_reflexive():
    names = {n.casefold() for spellings, short in _ENTRIES for n in (*spellings, *short)}
    for name in names:
        assert name not in equivalent_names(name)
        assert all(name in equivalent_names(other) for other in equivalent_names(name))


def test_short_forms_of_different_sets_of_full_names_are_not_equivalent():
    # Freddie shortens Frederick and Alfred too; twins named Alfie and Freddie are two children.
    assert "freddie" in equivalent_names("alfred")
    assert "freddie" in equivalent_names("frederick")
    assert "freddie" not in equivalent_names("alfie")
    assert "rob" in equivalent_names("bob")


# --- comparison levels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("Oliver", "OLIVER", "EXACT"),
        ("Mary-Jane", "Mary Jane", "EXACT"),
        ("Bob", "Robert", "NICKNAME"),
        ("Alfie", "Alfred", "NICKNAME"),
        ("Ellie", "Eleanor", "NICKNAME"),
        ("Liz", "Elizabeth", "NICKNAME"),
        ("Bob", "Rob", "NICKNAME"),
        ("Katherine", "Catherine", "NICKNAME"),
        ("Christopher", "Christpher", "JW_HIGH"),
        ("Chidinma", "Chidimna", "JW_HIGH"),
        ("Rohan", "Rlhan", "JW_HIGH"),
        ("Kai", "Kak", "JW_MEDIUM"),
        ("Bikl", "William", "JW_MEDIUM"),  # a slip for Bill
        ("Oliver", "Harry", "DIFFERENT"),
        ("Alfie", "Freddie", "DIFFERENT"),
        ("Ella", "Bella", "DIFFERENT"),  # two recognised names, however alike
        ("Oliver", "Olivia", "DIFFERENT"),
        ("Oliver", None, "MISSING"),
    ],
)
def test_given_name_levels(a, b, level):
    assert levels(person(given=a, sex=None), person(given=b, sex=None))["given"] == level


def test_when_the_sexes_differ_only_an_exact_given_name_agrees():
    alex, alexandra = person(given="Alex"), person(given="Alexandra", sex=Sex.FEMALE)
    assert levels(alex, alexandra)["given"] == "DIFFERENT"
    assert levels(replace(alex, sex=None), alexandra)["given"] == "NICKNAME"
    assert levels(alex, replace(alexandra, given="Alex"))["given"] == "EXACT"


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        (("Smith",), ("SMITH",), "EXACT"),
        (("O'Brien",), ("OBrien",), "EXACT"),
        (("Smith-Jones",), ("Smith Jones",), "EXACT"),
        (("Smith", "Jones"), ("Jones",), "FORMER"),
        (("Jones",), ("Smith", "Jones"), "FORMER"),
        (("Smith-Jones",), ("Jones",), "PARTIAL"),
        (("de Souza",), ("de Silva",), "DIFFERENT"),  # "de" alone says nothing
        (("Robinson",), ("Robinsen",), "JW_HIGH"),
        (("Smith",), ("Smyth",), "JW_MEDIUM"),
        (("Smith",), ("Patel",), "DIFFERENT"),
        (("Smith",), (None,), "MISSING"),
    ],
)
def test_family_name_levels(a, b, level):
    first = person(family=a[0], former_family=a[1:])
    second = person(family=b[0], former_family=b[1:])
    assert levels(first, second)["family"] == level


@pytest.mark.parametrize(
    ("other", "level"),
    [
        (date(2015, 3, 4), "EXACT"),
        (date(2015, 4, 3), "TRANSPOSED"),
        (date(2015, 3, 5), "ONE_OFF"),
        (date(2015, 8, 4), "ONE_OFF"),
        (date(2016, 3, 4), "ONE_OFF"),
        (date(2015, 5, 6), "DIFFERENT"),
        (date(2016, 4, 3), "DIFFERENT"),
        (None, "MISSING"),
    ],
)
def test_date_of_birth_levels(other, level):
    assert levels(person(), person(date_of_birth=other))["date_of_birth"] == level


@pytest.mark.parametrize(
    ("other", "level"),
    [
        ("ls61ab", "FULL"),
        ("LS6 1ZZ", "SECTOR"),
        ("LS6 2AB", "DISTRICT"),
        ("LS7 1AB", "DIFFERENT"),
        ("LS16 1AB", "DIFFERENT"),
        (None, "MISSING"),
        ("not a postcode", "MISSING"),
    ],
)
def test_postcode_levels(other, level):
    assert levels(person(), person(postcode=other))["postcode"] == level


@pytest.mark.parametrize(
    ("other", "level"),
    [(Sex.MALE, "SAME"), (Sex.FEMALE, "DIFFERENT"), (None, "MISSING"), (Sex.UNKNOWN, "MISSING")],
)
def test_sex_levels(other, level):
    assert levels(person(), person(sex=other))["sex"] == level


# --- scores and bands ----------------------------------------------------------------------


def test_each_level_weighs_log2_of_m_over_u_from_the_config():
    for field, field_levels in FIELD_LEVELS.items():
        for level in field_levels:
            pair = DEFAULT_CONFIG[field]["levels"][level]
            assert MODEL.weight(field, level) == pytest.approx(math.log2(pair["m"] / pair["u"]))
        assert MODEL.weight(field, Level.MISSING) == 0.0


def test_a_score_sums_its_comparisons_and_reasons_name_levels_only():
    score = MODEL.score(person(), person(given="Olly", postcode="LS7 1AB"))
    assert score.weight == pytest.approx(sum(c.weight for c in score.comparisons))
    assert score.reasons == (
        "given:NICKNAME",
        "family:EXACT",
        "date_of_birth:EXACT",
        "postcode:DIFFERENT",
        "sex:SAME",
        "address:MISSING",
        "carer:MISSING",
    )


def test_probability_is_half_where_the_weight_cancels_the_prior_odds():
    prior = DEFAULT_CONFIG["prior"]
    assert MODEL._probability(math.log2((1 - prior) / prior)) == pytest.approx(0.5)
    assert MODEL._probability(-2000.0) == 0.0
    assert MODEL._probability(2000.0) == 1.0


def test_twins_in_view_are_rejected():
    oliver, harry = person(), person(given="Harry")
    assert MODEL.score(oliver, harry, twins=True).band is Band.REJECTED


def test_boy_girl_twins_in_view_with_one_names_two_forms_are_not_linked_even_without_sex():
    oliver, olivia = person(sex=None), person(given="Olivia", sex=None)
    assert MODEL.score(oliver, olivia, twins=True).band is Band.REJECTED


def test_without_twins_in_view_another_given_name_links_only_with_the_whole_household_agreeing():
    # A middle or known-as name recorded by one source: the rest of the evidence carries it...
    assert MODEL.score(person(), person(given="Harry")).band is Band.LINKED
    # ...but only all of it: moved, or another birthday, and it is someone else.
    assert MODEL.score(person(), person(given="Harry", postcode="LS14 6ZZ")).band is not (
        Band.LINKED
    )
    assert MODEL.score(person(), person(given="Harry", date_of_birth=date(2015, 9, 4))).band is (
        Band.REJECTED
    )


def test_twins_weights_change_only_the_given_names_that_cannot_tell_a_twin_from_a_slip():
    for copy in (person(given="Olly"), person(given="Olivr"), person(family="Smiht")):
        assert MODEL.score(person(), copy, twins=True) == MODEL.score(person(), copy)
    assert (
        MODEL.score(person(), person(given="Harry"), twins=True).weight
        < MODEL.score(person(), person(given="Harry")).weight
    )


@pytest.mark.parametrize(
    ("copy", "expected"),
    [
        (person(given="Smith", family="Oliver"), "SWAPPED"),
        (person(given="Smiht", family="Oliver"), "SWAPPED"),  # with a slip as well
        (person(given="Smith", family="Harris"), None),  # only one name crossed: no swap
        (person(given="Oliver", family="Smith"), None),
        (person(given="Smith", family="Olivia", sex=None), None),  # another recognised name
        (person(given="Smith", family="Oliver", sex=Sex.FEMALE), "SWAPPED"),  # exact crossing
        (person(given="Smith", family="Olivera", sex=Sex.FEMALE), None),  # near, and a girl
    ],
)
def test_given_and_family_names_keyed_the_wrong_way_round_are_swapped(copy, expected):
    got = levels(person(), copy)
    if expected is None:
        assert "SWAPPED" not in (got["given"], got["family"])
    else:
        assert (got["given"], got["family"]) == (expected, expected)
        assert levels(copy, person()) == got


def test_a_swapped_copy_that_moved_is_still_linked_and_a_swapped_date_alone_never_links():
    swapped = person(given="Smith", family="Oliver", postcode="LS14 6ZZ")
    assert MODEL.score(person(), swapped).band is Band.LINKED
    only_the_date = Person(None, None, (), BORN, None, None)
    assert MODEL.score(person(), only_the_date).band is Band.REJECTED


def test_a_sibling_is_rejected():
    assert MODEL.score(person(), person(given="Harry", date_of_birth=date(2017, 6, 1))).band is (
        Band.REJECTED
    )


@pytest.mark.parametrize(
    "copy",
    [
        person(given="Olly", family="Smiht", postcode="LS14 6ZZ"),  # nickname, slip, moved
        person(date_of_birth=date(2015, 4, 3), postcode="LS14 6ZZ"),  # day and month swapped
        person(given="Olivr", postcode="LS14 6ZZ"),  # slip and moved
        person(family="Jones", former_family=("Smith",)),  # a name change the copy records
        person(family="Jones"),  # ... or does not, but the child has not moved
        person(sex=None, postcode=None),
    ],
)
def test_a_drifted_copy_of_the_same_child_is_linked(copy):
    assert MODEL.score(person(), copy).band is Band.LINKED


def test_a_name_changed_and_moved_without_a_former_name_is_not_linked():
    # Indistinguishable from another child with the same given name and birthday.
    assert MODEL.score(person(), person(family="Jones", postcode="LS14 6ZZ")).band is not (
        Band.LINKED
    )


def test_with_thresholds_keeps_the_weights():
    strict = MODEL.with_thresholds(40.0, 30.0)
    pair = (person(), person())
    assert strict.score(*pair).weight == MODEL.score(*pair).weight
    assert strict.score(*pair).band is Band.POSSIBLE


def test_with_thresholds_refuses_a_link_threshold_below_the_possible_one():
    with pytest.raises(LinkageConfigError, match="below possible_threshold"):
        MODEL.with_thresholds(10.0, 12.0)


# --- properties ----------------------------------------------------------------------------

# Small pools make agreements, near-misses and nicknames common enough to exercise every level.
NAMES = st.sampled_from(["Oliver", "Olly", "Olivia", "Bob", "Robert", "Rob", "Ella", "Bella"])
NAMES |= st.text(alphabet="abcdefghij-' ", min_size=1, max_size=8)
FAMILIES = st.sampled_from(["Smith", "Smyth", "Smith-Jones", "Jones", "de Souza"]) | NAMES
DATES = st.sampled_from([date(2015, 3, 4), date(2015, 4, 3), date(2016, 3, 4), date(2012, 1, 9)])
POSTCODES = st.sampled_from(["LS6 1AB", "LS6 1AZ", "LS6 2AB", "LS7 1AB", "NFA"])
SEXES = st.sampled_from([Sex.MALE, Sex.FEMALE, Sex.UNKNOWN])
PEOPLE = st.builds(
    Person,
    given=st.none() | NAMES,
    family=st.none() | FAMILIES,
    former_family=st.lists(FAMILIES, max_size=2).map(tuple),
    date_of_birth=st.none() | DATES,
    postcode=st.none() | POSTCODES,
    sex=st.none() | SEXES,
    address_lines=st.sampled_from([(), ("12 Church Road", "Leeds"), ("Flat 2", "12 Church Rd")]),
    carers=st.sampled_from([(), ("Sophie Okafor",), ("Sophie Okafor", "Mum"), ("Ann Lee",)]),
)
COMPLETE = st.builds(
    Person,
    given=NAMES.filter(lambda n: normalise_name(n) is not None),
    family=FAMILIES.filter(lambda n: normalise_name(n) is not None),
    former_family=st.lists(FAMILIES, max_size=2).map(tuple),
    date_of_birth=DATES,
    postcode=POSTCODES.filter(lambda p: p != "NFA"),
    sex=st.sampled_from([Sex.MALE, Sex.FEMALE]),
)
THRESHOLDS = st.floats(min_value=-40, max_value=60, allow_nan=False)
_RANK = {Band.REJECTED: 0, Band.POSSIBLE: 1, Band.LINKED: 2}


@given(PEOPLE, PEOPLE)
def test_scoring_is_symmetric(a, b):
    assert MODEL.score(a, b) == MODEL.score(b, a)


@given(COMPLETE)
def test_a_complete_record_compared_with_itself_is_linked(p):
    assert MODEL.score(p, p).band is Band.LINKED


@given(COMPLETE, NAMES)
def test_a_twin_in_view_with_another_given_name_is_never_linked(child, twins_name):
    twin = replace(child, given=twins_name)
    assume(twin.given_key not in (child.given_key, None))
    assume(levels(child, twin)["given"] in ("JW_MEDIUM", "DIFFERENT"))
    assert MODEL.score(child, twin, twins=True).band is not Band.LINKED


@given(PEOPLE, PEOPLE, st.sampled_from(list(FIELD_LEVELS)))
def test_a_field_missing_on_one_side_weighs_nothing(a, b, field):
    empty = {"address": {"address_lines": ()}, "carer": {"carers": ()}}
    without = replace(b, **empty.get(field, {field: None}))
    comparison = next(c for c in MODEL.score(a, without).comparisons if c.field == field)
    assert comparison == Comparison(field, "MISSING", 0.0)


@given(PEOPLE)
def test_someone_with_no_attributes_scores_zero(p):
    nobody = Person(None, None, (), None, None, None)
    assert MODEL.score(p, nobody).weight == 0.0


@given(PEOPLE, PEOPLE, THRESHOLDS, THRESHOLDS, THRESHOLDS, THRESHOLDS)
def test_raising_thresholds_never_raises_a_band(a, b, t1, t2, t3, t4):
    low_possible, high_possible = sorted((t1, t2))
    low_link, high_link = sorted((t3, t4))
    assume(low_link >= low_possible and high_link >= high_possible)
    loose = MODEL.with_thresholds(low_link, low_possible).score(a, b).band
    strict = MODEL.with_thresholds(high_link, high_possible).score(a, b).band
    assert _RANK[strict] <= _RANK[loose]


@given(st.floats(-60, 60), st.floats(-60, 60))
def test_a_higher_weight_never_gets_a_lower_band_or_probability(w1, w2):
    low, high = sorted((w1, w2))
    assert _RANK[MODEL.band(low)] <= _RANK[MODEL.band(high)]
    assert 0.0 <= MODEL._probability(low) <= MODEL._probability(high) <= 1.0


# --- configuration -------------------------------------------------------------------------


def _toml(config: dict) -> str:
    """The model config's shape in TOML: top-level numbers, [field.table] of numbers or of
    {m, u} inline tables."""
    lines = [f"{k} = {v!r}" for k, v in config.items() if not isinstance(v, dict)]
    for field, sections in ((k, v) for k, v in config.items() if isinstance(v, dict)):
        for name, table in sections.items():
            lines.append(f"[{field}.{name}]")
            for key, value in table.items():
                if isinstance(value, dict):
                    pairs = ", ".join(f"{k} = {v!r}" for k, v in value.items())
                    lines.append(f"{key} = {{ {pairs} }}")
                else:
                    lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


def _load(tmp_path, edit):
    config = tomllib.loads(_toml(DEFAULT_CONFIG))
    edit(config)
    path = tmp_path / "model.toml"
    path.write_text(_toml(config))
    return LinkageModel.load(path)


def test_the_config_writer_round_trips_the_default(tmp_path):
    assert _load(tmp_path, lambda c: None).score(person(), person()) == MODEL.score(
        person(), person()
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["given"]["levels"].pop("NICKNAME"),
            r"given\.levels\.NICKNAME is missing: every level needs m and u",
        ),
        (lambda c: c.pop("postcode"), r"\[postcode\] is missing"),
        (
            lambda c: c["sex"]["levels"]["SAME"].update(m=0.0),
            r"sex\.levels\.SAME\.m must be in \(0, 1\], not 0\.0",
        ),
        (
            lambda c: c["family"]["levels"]["EXACT"].update(u=1.5),
            r"family\.levels\.EXACT\.u must be in \(0, 1\], not 1\.5",
        ),
        (
            lambda c: c["date_of_birth"]["levels"]["EXACT"].update(m="high"),
            r"date_of_birth\.levels\.EXACT\.m must be a number, not 'high'",
        ),
        (
            lambda c: c.update(link_threshold=12.0, possible_threshold=15.0),
            r"link_threshold \(12\.0\) is below possible_threshold \(15\.0\)",
        ),
        (lambda c: c.update(prior=1.0), r"prior must be in \(0, 1\), not 1\.0"),
        (
            lambda c: c["given"]["levels"].update(SIMILAR={"m": 0.1, "u": 0.1}),
            r"unknown key 'SIMILAR' in \[given\.levels\]",
        ),
        (
            lambda c: c["postcode"]["levels"]["FULL"].update(m=0.99),
            r"postcode: the m probabilities of its levels add up to 1\.11",
        ),
        (
            lambda c: c["family"]["jaro_winkler"].update(medium=0.95),
            r"family\.jaro_winkler: medium \(0\.95\) must not be above high \(0\.9\)",
        ),
        (
            lambda c: c["given"]["twins"]["DIFFERENT"].update(m=0.01),
            r"given\.twins\.DIFFERENT: twins .* would score .* and be merged",
        ),
        (
            lambda c: c["given"]["twins"].pop("JW_MEDIUM"),
            r"given\.twins\.JW_MEDIUM is missing",
        ),
        (
            # Twins who moved together share a carer: the carer's bits count with the postcode's
            # other levels, so a carer worth 26 bits lets a twin at another postcode link.
            lambda c: c["carer"]["levels"]["SAME"].update(u=1e-8),
            r"given\.twins\.JW_MEDIUM: twins .* would score .* and be merged",
        ),
        (
            lambda c: c["sex"].update(twins={"DIFFERENT": {"m": 0.1, "u": 0.1}}),
            r"unknown key 'twins' in \[sex\]",
        ),
    ],
)
def test_a_bad_config_is_refused_with_a_message_naming_the_problem(tmp_path, edit, message):
    with pytest.raises(LinkageConfigError, match=message) as refused:
        _load(tmp_path, edit)
    assert str(refused.value).startswith(str(tmp_path / "model.toml"))


def test_a_config_that_is_not_toml_is_refused(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text("prior = \n")
    with pytest.raises(LinkageConfigError, match="not valid TOML"):
        LinkageModel.load(path)


def test_a_missing_config_file_is_refused(tmp_path):
    with pytest.raises(LinkageConfigError, match="cannot read linkage config"):
        LinkageModel.load(tmp_path / "absent.toml")


def test_the_default_config_is_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "model.toml" in pyproject["tool"]["setuptools"]["package-data"]["gateway.linkage"]


def test_the_installed_package_loads_its_default_model(tmp_path):
    # -I: neither the working directory nor PYTHONPATH is on the path, only what is installed.
    script = (
        "import gateway.linkage as g; m = g.LinkageModel.load(); "
        "print(m.link_threshold, m.possible_threshold)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    threshold = (DEFAULT_CONFIG["link_threshold"], DEFAULT_CONFIG["possible_threshold"])
    assert result.stdout.split() == [str(float(t)) for t in threshold]


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        (person(given="Amelia", known_as=("Mae",)), person(given="Mae"), "NICKNAME"),
        (person(given="Mae"), person(given="Amelia", known_as=("Mae",)), "NICKNAME"),
        (person(given="Robert", known_as=("Sonny",)), person(given="Sonny"), "NICKNAME"),
        (
            person(given="Amelia", known_as=("Mae",)),
            person(given="Rose", known_as=("Mae",)),
            "NICKNAME",
        ),
        (person(given="Amelia", known_as=("Mae",)), person(given="Rose"), "DIFFERENT"),
        # A known-as name of the other sex's record agrees no more than the given name would.
        (
            person(given="Sam", known_as=("Alex",)),
            person(given="Alex", sex=Sex.FEMALE),
            "DIFFERENT",
        ),
    ],
)
def test_a_name_the_child_is_known_by_agrees_like_a_short_form(a, b, level):
    assert levels(a, b)["given"] == level


def _frequencies(given: dict[str, int], family: dict[str, int], records: int):
    from gateway.linkage.frequencies import NameFrequencies

    return NameFrequencies(
        minimum_count=5,
        records={"given": records, "family": records},
        counts={"given": given, "family": family},
    )


def test_name_frequencies_weigh_an_exact_match_on_a_rare_name_more_and_a_common_one_less():
    table = _frequencies({"oliver": 500}, {"smith": 1000, "okonkwo": 5}, records=50_000)
    model = MODEL.with_frequencies(table)
    plain = MODEL.score(person(), person()).weight
    common = model.score(person(), person()).weight  # Oliver 1%, Smith 2%: both common
    rare = model.score(person(family="Okonkwo"), person(family="Okonkwo")).weight
    assert common < plain < rare
    gained = {
        c.field: c.weight
        for c in model.score(person(family="Okonkwo"), person(family="Okonkwo")).comparisons
    }
    # Okonkwo: 5 in 50,000 = 1e-4 against the average 0.005, 5.6 bits, capped at 4.
    assert gained["family"] == pytest.approx(MODEL.weight("family", "EXACT") + 4.0)
    # Only EXACT matches are adjusted: a nickname or slip weighs as configured.
    olly = {c.field: c.weight for c in model.score(person(), person(given="Olly")).comparisons}
    assert olly["given"] == MODEL.weight("given", "NICKNAME")


def test_name_frequencies_that_would_let_twins_link_are_refused(tmp_path):
    weak_veto = _load(
        tmp_path, lambda c: c["given"]["twins"]["JW_MEDIUM"].update(m=0.00000009)
    )  # -16.0 bits: enough without frequencies...
    with pytest.raises(LinkageConfigError, match=r"twins .* with a rare surname's 4\.0 bits"):
        weak_veto.with_frequencies(_frequencies({}, {}, records=100_000))
