import re
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.protocol import (
    LOOKUP_PATH,
    Address,
    Caller,
    ConnectorRecord,
    Demographics,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
    PersonName,
    RecordFlags,
    School,
    Sex,
)
from connectors.records import FileBackend
from connectors.reference import create_reference_app
from connectors.search import (
    DEFAULT_LIMIT,
    CandidateIndex,
    blocking_keys,
    query_blocking_keys,
    rank_candidates,
    soundex,
)
from connectors.serving import BackgroundServer
from connectors.synthetic import NoiseProfile, generate_population

AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
NHS = "9434765919"
BORN = date(2015, 3, 7)

# Amelia Hart, as the practitioner describes her (from her health record).
QUERY = Demographics(
    given="Amelia", family="Hart", date_of_birth=BORN, postcode="LS6 3AB", sex=Sex.FEMALE
)


def child(
    record_id: str,
    given: str = "Amelia",
    family: str = "Hart",
    born: date = BORN,
    postcode: str = "LS6 3AB",
    sex: Sex = Sex.FEMALE,
    former_family: Sequence[str] = (),
    identifiers: Identifiers | None = None,
    known_as: Sequence[str] = (),
    **extra: Any,
) -> ConnectorRecord:
    return ConnectorRecord(
        record_id=record_id,
        identifiers=identifiers or Identifiers(),
        name=PersonName(
            given=given,
            family=family,
            former_family=list(former_family),
            known_as=list(known_as),
        ),
        date_of_birth=born,
        sex=sex,
        address=Address(lines=["12 Oak Road", "Leeds"], postcode=postcode),
        as_of=AS_OF,
        **extra,
    )


NEIGHBOUR = child("neighbour", "Oscar", "Webb", date(2012, 10, 20), sex=Sex.MALE)
SAME_BIRTHDAY = child("same-birthday", "Isla", "Moore", postcode="LS14 2QQ")
SIBLING = child("sibling", "Leo", "Hart", date(2012, 5, 1), sex=Sex.MALE)
NAMESAKE = child("namesake", born=date(2009, 11, 30), postcode="LS27 9ZZ")
# Born a day that differs from the child's in one part only (17 for 7): a mistyped date, maybe.
NEAR_NAMESAKE = child("near-namesake", born=date(2015, 3, 17), postcode="LS27 9ZZ")
BACKGROUND = [NEIGHBOUR, SAME_BIRTHDAY, SIBLING, NAMESAKE]


def ids(records: Sequence[ConnectorRecord]) -> list[str]:
    return [record.record_id for record in records]


def search(*records: ConnectorRecord, query: Demographics = QUERY) -> list[str]:
    return ids(CandidateIndex([*BACKGROUND, *records]).search(query))


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Robert", "R163"),
        ("Rupert", "R163"),
        ("Rubin", "R150"),
        ("Ashcraft", "A261"),
        ("Tymczak", "T522"),
        ("Pfister", "P236"),
        ("Honeyman", "H555"),
        ("Lee", "L000"),
        ("O'Brien", "O165"),
        ("", ""),
        ("Łódź", "D000"),
    ],
)
def test_soundex_gives_the_standard_codes(name, code):
    assert soundex(name) == code


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_soundex_is_a_letter_and_three_digits_whatever_the_case(name):
    code = soundex(name)

    assert code == "" or re.fullmatch(r"[A-Z][0-9]{3}", code)
    assert soundex(name.upper()) == soundex(name.lower())


def test_an_exact_copy_of_the_child_is_the_first_candidate():
    assert search(child("copy"))[0] == "copy"


# Each kind of drift on top of a nickname and a house move, so that the detail under test is one
# of the only two details that can still agree.
@pytest.mark.parametrize(
    ("record", "query"),
    [
        pytest.param(
            child("drifted", given="Millie", postcode="LS9 8RA"), QUERY, id="nickname and move"
        ),
        pytest.param(
            child("drifted", given="Millie", born=date(2015, 7, 3), postcode="LS9 8RA"),
            QUERY,
            id="day and month swapped",
        ),
        pytest.param(
            child("drifted", given="Amilea", family="Walsh", postcode="LS9 8RA"),
            QUERY,
            id="given name spelt as it sounds, family name changed",
        ),
        pytest.param(
            child("drifted", given="Millie", family="Walsh", postcode="LS9 8RA"),
            QUERY.model_copy(update={"former_family": "Walsh"}),
            id="copy still has the former family name",
        ),
        pytest.param(
            child("drifted", given="Millie", former_family=["Walsh"], postcode="LS9 8RA"),
            QUERY.model_copy(update={"family": "Walsh"}),
            id="practitioner knows the former family name",
        ),
    ],
)
def test_a_drifted_copy_of_the_child_is_the_first_candidate(record, query):
    assert search(record, query=query)[0] == "drifted"


def test_a_family_name_one_slip_away_still_agrees():
    # "Ahrt" and "Hart" have different Soundex codes: only the slip rule makes them agree.
    slipped = child("slipped", given="Millie", family="Ahrt", postcode="LS9 8RA")

    assert "slipped" in search(slipped)


@st.composite
def _slipped(draw: st.DrawFn) -> tuple[str, str]:
    """A name of three letters or more and a copy of it with one keying slip."""
    name = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=10))
    at = draw(st.integers(0, len(name) - 2))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    slip = draw(st.sampled_from(["replace", "drop", "add", "swap"]))
    copy = {
        "replace": name[:at] + letter + name[at + 1 :],
        "drop": name[:at] + name[at + 1 :],
        "add": name[:at] + letter + name[at:],
        "swap": name[:at] + name[at + 1] + name[at] + name[at + 2 :],
    }[slip]
    return name, copy


@given(_slipped())
def test_any_family_name_one_slip_away_agrees(names):
    name, copy = names
    drifted = child("drifted", given="Millie", family=copy, postcode="LS9 8RA")

    assert "drifted" in search(drifted, query=QUERY.model_copy(update={"family": name}))


def test_a_stored_name_thousands_of_letters_long_is_indexed_in_bounded_memory():
    # Bad upstream data: one Forename of 10,000 letters. Its one-slip forms alone would be
    # 10,000 strings of 9,999 letters (100 MB); the index keys a name by its first 100 characters.
    long_given = "".join("abcdefghijklmnopqrstuvwxyz"[i * 7 % 26] for i in range(10_000))
    held = child("long", given=long_given)

    tracemalloc.start()
    try:
        index = CandidateIndex([*BACKGROUND, held])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 10_000_000
    assert ids(index.search(QUERY))[0] == "long"  # family name, date of birth and postcode


def test_a_record_holding_thousands_of_names_is_filed_under_a_bounded_number_of_blocks():
    # Bad upstream data: a SQL column of 3,000 known-as and former names split on ';' would be
    # filed under every given-family pair of them - nine million blocks.
    letters = "abcdefghijklmnopqrstuvwxyz"
    many = [letters[i % 26] + letters[i // 26 % 26] + letters[i // 676 % 26] for i in range(3_000)]
    held = child("many", known_as=many, former_family=many)

    blocks = blocking_keys(held)

    assert len(blocks) < 1_000
    assert "many" in search(held)  # its own names, date of birth and postcode still agree


def test_a_name_as_long_as_a_search_can_give_still_agrees_one_slip_away():
    name = "".join("abcdefghijklmnopqrstuvwxyz"[i * 7 % 26] for i in range(100))
    slipped = name[:50] + name[51] + name[50] + name[52:]
    held = child("long", given="Millie", family=slipped, postcode="LS9 8RA")

    assert "long" in search(held, query=QUERY.model_copy(update={"family": name}))


def test_a_copy_wrong_in_three_details_is_not_offered():
    # Nickname, a house move and a family name change the query does not know about: only the
    # date of birth still agrees, which a stranger born the same day shares too.
    drifted = child("drifted", given="Millie", family="Walsh", postcode="LS9 8RA")

    assert "drifted" not in search(drifted)


def test_one_shared_detail_or_a_shared_name_alone_never_makes_a_candidate():
    found = search(child("amelia"))

    assert "neighbour" not in found
    assert "same-birthday" not in found
    assert "namesake" not in found


def test_siblings_and_namesakes_born_nearly_the_same_day_are_candidates_below_the_child():
    # Two details agree for each (family name and address; both names, with a date of birth one
    # slip away): telling them apart is the gateway's job, and it can only do it if it sees them.
    assert search(child("amelia"), NEAR_NAMESAKE) == ["amelia", "near-namesake", "sibling"]


NFA_QUERY = QUERY.model_copy(update={"postcode": "NFA"})


def test_a_search_for_a_child_of_no_fixed_abode_finds_them_on_names_and_date_of_birth():
    homeless = child("homeless", postcode="NFA")
    housed = child("housed", postcode="LS6 3AB")
    assert search(homeless, query=NFA_QUERY)[0] == "homeless"
    assert search(housed, query=NFA_QUERY)[0] == "housed"
    assert search(child("drifted", "Amelie", postcode="nfa"), query=NFA_QUERY) == ["drifted"]


def test_no_fixed_abode_is_never_an_agreement_so_one_other_shared_detail_is_not_a_candidate():
    others = [
        child("same-birthday-nfa", "Isla", "Moore", postcode="NFA"),
        child("same-family-nfa", "Leo", born=date(2012, 5, 1), postcode=" n f a "),
        child("same-given-nfa", family="Webb", born=date(2012, 5, 1), postcode="NFA"),
    ]
    assert search(*others, query=NFA_QUERY) == []
    # Nor is a child recorded NFA sharing one detail with a search that gives a postcode.
    assert "same-birthday-nfa" not in search(*others, query=QUERY)


# --- Partial queries: the practitioner knows only some of the details ---------------------------

FAMILY_AND_BIRTH = Demographics(family="Hart", date_of_birth=BORN)
NAMES_AND_POSTCODE = Demographics(given="Amelia", family="Hart", postcode="LS6 3AB")


def test_a_family_name_and_date_of_birth_find_the_child_and_no_one_sharing_only_one():
    # The sibling shares the family name and the address, but the query gives no address: a
    # detail the query leaves out agrees with nothing.
    assert search(child("amelia"), query=FAMILY_AND_BIRTH) == ["amelia"]


def test_a_family_name_and_date_of_birth_find_a_copy_with_another_given_name_and_address():
    moved = child("moved", given="Millie", postcode="LS9 8RA")

    assert search(moved, query=FAMILY_AND_BIRTH) == ["moved"]


def test_names_and_postcode_find_the_child_and_the_sibling_at_that_address_not_the_namesake():
    found = search(child("amelia"), query=NAMES_AND_POSTCODE)

    assert found == ["amelia", "sibling"]


def test_a_record_without_a_date_of_birth_is_a_candidate_on_the_names_alone():
    # It cannot differ on a date it does not hold: the family moved, and the school never had
    # the date. A namesake whose date is held and wholly different is still left out.
    undated = child("undated", postcode="LS9 8RA", born=None)
    namesake = child("namesake-dated", postcode="LS9 8RA", born=date(2011, 8, 23))

    assert search(undated, namesake) == ["undated", "sibling"]


def test_names_without_a_date_of_birth_never_count_alone():
    # The names-only rule needs a date one part off, and a query without a date has none: the
    # namesake living elsewhere is another child.
    moved = child("moved", postcode="LS9 8RA")

    assert search(moved, query=NAMES_AND_POSTCODE) == ["sibling"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(Demographics(date_of_birth=BORN), id="date of birth"),
        pytest.param(Demographics(postcode="LS6 3AB"), id="postcode"),
        pytest.param(Demographics(family="Hart", sex=Sex.FEMALE), id="family name and sex"),
        pytest.param(Demographics(family="Hart", postcode="NFA"), id="family name, NFA"),
        pytest.param(Demographics(), id="nothing"),
    ],
)
def test_a_query_giving_fewer_than_two_details_that_can_agree_finds_no_one(query):
    assert search(child("amelia"), query=query) == []


# --- Names a child is known by ------------------------------------------------------------------

# Amelia's copy with her given name unlike any she is looked up by, a family name changed and a
# house move: only the date of birth agrees, unless a known-as name makes the given name agree.
KNOWN_AS_DRIFT = {"given": "Lottie", "family": "Walsh", "postcode": "LS9 8RA"}


def test_a_record_s_known_as_name_agrees_with_the_query_s_given_name():
    known = child("known", **KNOWN_AS_DRIFT, known_as=["Amelia"])
    unknown = child("unknown", **KNOWN_AS_DRIFT)

    found = search(known, unknown)

    assert "known" in found
    assert "unknown" not in found


def test_a_query_s_known_as_name_agrees_with_a_record_s_given_name():
    record = child("lottie", **KNOWN_AS_DRIFT)

    assert "lottie" not in search(record)
    assert "lottie" in search(record, query=QUERY.model_copy(update={"known_as": ["Lottie"]}))


def test_a_known_as_name_alone_stands_for_the_given_name():
    query = Demographics(known_as=["Lottie"], date_of_birth=BORN)

    assert search(child("lottie", **KNOWN_AS_DRIFT), query=query) == ["lottie"]


def test_a_record_found_by_names_alone_is_found_through_its_known_as_name():
    # Born a day off and living elsewhere: only the name block can reach it.
    record = child(
        "far", given="Lottie", known_as=["Amelia"], born=date(2015, 3, 17), postcode="LS27 9ZZ"
    )

    assert "far" in search(record)


# --- Given and family name keyed into each other's boxes -----------------------------------------


def test_swapped_names_count_as_both_names():
    # Swapped and moved: only the date of birth agrees the right way round.
    swapped = child("swapped", given="Hart", family="Amelia", postcode="LS9 8RA")

    assert search(swapped)[0] == "swapped"


def test_swapped_names_are_forgiven_a_slip_on_top():
    slipped = child("slipped", given="Hrat", family="Amelia", postcode="LS9 8RA")

    assert "slipped" in search(slipped)


def test_one_name_in_the_other_s_box_is_not_a_swap():
    # Given name "Hart" agrees with the query's family name, but the family name is another.
    half = child("half", given="Hart", family="Moore", postcode="LS9 8RA")

    assert "half" not in search(half)


def test_a_swapped_record_found_by_names_alone_is_reached_through_the_name_block():
    # Born a day off and living elsewhere: no date or postcode block holds it.
    far = child("far", given="Hart", family="Amelia", born=date(2015, 3, 17), postcode="LS27 9ZZ")

    assert "far" in search(far)


def test_names_and_postcodes_are_compared_without_case_accents_or_spacing():
    keyed = child("keyed", given="AMÉLIA", family="hart", postcode="ls63ab")
    clean = child("clean")

    # As strong as a clean copy, so the two come back in index order whichever is first.
    assert search(keyed, clean)[:2] == ["keyed", "clean"]
    assert search(clean, keyed)[:2] == ["clean", "keyed"]


def test_a_double_barrelled_family_name_agrees_with_either_part():
    double = child("double", given="Millie", family="Hart-Walsh", postcode="LS9 8RA")

    assert search(double)[0] == "double"


def test_same_sex_and_postcode_sector_rank_equally_named_candidates():
    elsewhere = {"born": date(2016, 3, 7), "postcode": "LS1 1AA"}
    boy = child("boy", sex=Sex.MALE, **elsewhere)
    girl = child("girl", **elsewhere)
    girl_nearby = child("girl-nearby", born=date(2016, 3, 7), postcode="LS6 3ZZ")

    found = ids(CandidateIndex([boy, girl, girl_nearby]).search(QUERY))

    assert found == ["girl-nearby", "girl", "boy"]


def test_the_cap_keeps_the_strongest_candidates_then_index_order():
    namesakes = [child(f"n{i:02d}", born=date(2016, 3, 7), postcode="LS1 1AA") for i in range(15)]
    index = CandidateIndex([*namesakes, child("amelia")])

    found = ids(index.search(QUERY))

    assert len(found) == DEFAULT_LIMIT
    assert found == ["amelia", *[f"n{i:02d}" for i in range(DEFAULT_LIMIT - 1)]]
    assert ids(index.search(QUERY, limit=3)) == ["amelia", "n00", "n01"]
    assert ids(index.search(QUERY)) == found


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        CandidateIndex(BACKGROUND).search(QUERY, limit=0)


def test_shielded_and_restricted_records_are_candidates_with_their_flags():
    shielded = child("shielded", flags=RecordFlags(shielded=True))
    restricted = child("restricted", postcode="LS9 8RA", flags=RecordFlags(restricted=True))

    found = CandidateIndex([shielded, restricted]).search(QUERY)

    assert [(r.record_id, r.flags) for r in found] == [
        ("shielded", RecordFlags(shielded=True)),
        ("restricted", RecordFlags(restricted=True)),
    ]


def test_records_without_demographics_are_indexed_but_never_candidates():
    bare = ConnectorRecord(record_id="bare", identifiers=Identifiers(nhs_number=NHS), as_of=AS_OF)

    assert search(bare, child("amelia"))[0] == "amelia"
    assert "bare" not in search(bare)


def test_every_child_in_a_clean_population_is_found_first_among_siblings_and_twins():
    population = generate_population(seed=5, children=400, noise=NoiseProfile.preset("none"))
    health = {population.truth["health", r.record_id]: r for r in population.health}
    index = CandidateIndex(population.education)

    misplaced = []
    for record in population.education:
        held = health[population.truth["education", record.record_id]]
        assert held.name is not None
        assert held.address is not None
        assert held.date_of_birth is not None
        query = Demographics(
            given=held.name.given,
            family=held.name.family,
            date_of_birth=held.date_of_birth,
            postcode=held.address.postcode,
            sex=held.sex,
            former_family=next(iter(held.name.former_family), None),
        )
        found = ids(index.search(query))
        if not found or found[0] != record.record_id:
            misplaced.append(record.record_id)

    assert misplaced == []


def test_blocks_as_strings_are_the_index_s_blocks():
    """What a database stores per record, and looks up per query, reproduces the in-memory
    search: rank the records sharing a query block and the answer is `CandidateIndex.search`'s."""
    population = generate_population(seed=3, children=300)
    records = population.education
    index = CandidateIndex(records)
    keys = [blocking_keys(record) for record in records]
    queries = [
        Demographics(
            given=r.name.given,
            family=r.name.family,
            date_of_birth=r.date_of_birth,
            postcode=None if r.address is None else r.address.postcode,
        )
        for r in population.health
        if r.name is not None
    ][:150]

    differing = []
    for query in queries:
        wanted = query_blocking_keys(query)
        blocked = [r for r, held in zip(records, keys, strict=True) if held & wanted]
        if ids(rank_candidates(query, blocked)) != ids(index.search(query)):
            differing.append(query)

    assert differing == []
    assert sum(len(index.search(q)) for q in queries) > len(queries)


def test_blocking_keys_name_each_kind_of_block():
    record = child("amelia")
    query = Demographics(given="Hart", family="Amelia", date_of_birth=date(2015, 7, 3))

    assert blocking_keys(record) == {
        "born:2015-03-07",
        "postcode:LS6 3AB",
        "names:A540|H630",
    }
    # The query's date read day-for-month, and its names either way round.
    assert query_blocking_keys(query) == {
        "born:2015-07-03",
        "born:2015-03-07",
        "names:H630|A540",
        "names:A540|H630",
    }


def test_rank_candidates_refuses_a_limit_below_one():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        rank_candidates(QUERY, [child("amelia")], limit=0)


def request(demographics: Demographics | None = None, **identifiers: str) -> LookupRequest:
    return LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA1"),
        identifiers=Identifiers(**identifiers),
        demographics=demographics,
        fields=[FieldId.NAME, FieldId.DATE_OF_BIRTH],
    )


@pytest.mark.anyio
async def test_file_backend_answers_identifier_matches_first_then_candidates_each_once():
    backend = FileBackend(
        [
            child(
                "by-nhs",
                "Oscar",
                "Webb",
                date(2012, 10, 20),
                identifiers=Identifiers(nhs_number=NHS),
            ),
            child("both", postcode="LS9 8RA", identifiers=Identifiers(nhs_number=NHS)),
            child("by-demographics"),
        ]
    )

    found = await backend.lookup(request(QUERY, nhs_number=NHS))

    assert ids(found) == ["by-nhs", "both", "by-demographics"]


@pytest.mark.anyio
async def test_file_backend_without_demographics_looks_up_identifiers_only():
    backend = FileBackend(
        [child("amelia"), child("by-nhs", identifiers=Identifiers(nhs_number=NHS))]
    )

    assert ids(await backend.lookup(request(nhs_number=NHS))) == ["by-nhs"]
    assert ids(await backend.lookup(request(QUERY))) == ["amelia", "by-nhs"]


def test_a_connector_answers_a_demographic_lookup_with_minimised_candidates(tmp_path: Path):
    pupil = child(
        "pupil",
        given="Millie",
        identifiers=Identifiers(upn="A801200001001"),
        school=School(urn="100001", name="Northtown Academy"),
        flags=RecordFlags(shielded=True),
    )
    path = tmp_path / "education.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in [NEIGHBOUR, pupil]))

    with BackgroundServer(create_reference_app("education", path)) as server:
        response = httpx.post(
            server.url + LOOKUP_PATH, content=request(QUERY).model_dump_json(), timeout=10
        )

    answer = LookupResponse.model_validate_json(response.content)
    [candidate] = answer.records
    assert candidate.record_id == "pupil"
    assert (candidate.name, candidate.date_of_birth) == (pupil.name, pupil.date_of_birth)
    assert (candidate.address, candidate.school, candidate.sex) == (None, None, None)
    assert candidate.identifiers == pupil.identifiers
    assert candidate.flags == RecordFlags(shielded=True)
