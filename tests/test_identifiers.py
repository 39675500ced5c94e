import string
import unicodedata
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connectors.check_digits import nhs_check_digit, upn_check_letter
from connectors.protocol import KNOWN_AS_MAX, Demographics, Sex
from gateway.errors import ErrorCode
from gateway.identifiers import (
    ADDRESS_LINE_MAX_CHARS,
    NAME_MAX_CHARS,
    OLDEST_AGE,
    InvalidIdentifier,
    address_lines,
    carer_names,
    check_could_link,
    check_date_of_birth,
    check_one_way,
    demographics,
    holds_child_identifier,
    is_synthetic_nhs_number,
    is_valid_nhs_number,
    normalise_nhs_number,
    normalise_person_name,
    normalise_postcode,
    normalise_upn,
    postcode_district,
    postcode_sector,
)
from gateway.linkage import LinkageModel
from tests.factories import NHS

DIGITS = string.digits
MODEL = LinkageModel.load()
TODAY = date(2026, 3, 14)

# --- NHS numbers ----------------------------------------------------------------------------------

# The first nine digits (inclusive) of the numbers issued, restated from the NHS Data Model and
# Dictionary rather than read from gateway.identifiers, so the tests do not grade the code with
# its own table: Scotland's CHI numbers, Northern Ireland's H&C numbers, England, Wales and the Isle
# of Man, and the nine billions, never issued to a person (synthetic and test patients).
ISSUED_STEMS = [
    (10_100_000, 311_299_999),
    (311_300_000, 319_999_999),  # England's 3xx numbers, between CHI and H&C
    (320_000_001, 399_999_999),
    (400_000_000, 499_999_999),
    (600_000_000, 799_999_999),
    (900_000_000, 999_999_999),
]
UNISSUED_STEMS = [
    (0, 10_099_999),
    (500_000_000, 599_999_999),
    (800_000_000, 899_999_999),
]


def _stems(ranges: list[tuple[int, int]]) -> st.SearchStrategy[str]:
    return st.sampled_from(ranges).flatmap(lambda r: st.integers(*r)).map(lambda n: f"{n:09d}")


nine_digits = _stems(ISSUED_STEMS)


def _with_check_digit(first_nine: str) -> str | None:
    """The ten digits whose weighted sum (weights 10..1) is a multiple of 11: the NHS rule stated
    independently of nhs_check_digit, so the tests do not grade the code with itself."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    checks = [c for c in range(10) if (total + c) % 11 == 0]
    return first_nine + str(checks[0]) if checks else None


@st.composite
def valid_nhs_numbers(draw: st.DrawFn) -> str:
    """An issued stem with its check digit."""
    number = _with_check_digit(draw(nine_digits))
    assume(number is not None)
    assert number is not None
    return number


def test_known_valid_nhs_number_is_accepted_with_spacing():
    assert normalise_nhs_number("943 476 5919") == "9434765919"
    assert normalise_nhs_number("943-476-5919") == "9434765919"
    assert normalise_nhs_number(" 9434765919\t") == "9434765919"
    assert normalise_nhs_number("943476 5919") == "9434765919"


@pytest.mark.parametrize(
    "raw", ["-9434765919", "94 34 76 59 19", "9434-765919", "943  476 5919", "943 476 5919-"]
)
def test_nhs_number_split_other_than_3_3_4_is_refused(raw):
    with pytest.raises(InvalidIdentifier, match="spaced 3-3-4") as caught:
        normalise_nhs_number(raw)
    assert caught.value.code is ErrorCode.INVALID_NHS_NUMBER


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("943476591", "10 digits"),
        ("94347659190", "10 digits"),
        ("94347659l9", "only digits"),
        ("9434765918", "check digit"),
        ("", "10 digits"),
        ("٩٤٣٤٧٦٥٩١٩", "only digits"),
    ],
)
def test_malformed_nhs_numbers_are_refused_with_a_reason_and_code(raw, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        normalise_nhs_number(raw)
    assert caught.value.code is ErrorCode.INVALID_NHS_NUMBER


def test_invalid_identifier_is_a_value_error_whose_text_is_the_message():
    with pytest.raises(ValueError, match="check digit") as caught:
        normalise_nhs_number("9434765918")
    assert isinstance(caught.value, InvalidIdentifier)
    assert str(caught.value) == caught.value.message


@given(nine_digits)
def test_every_issuable_number_validates_and_any_other_last_digit_does_not(first_nine):
    check = nhs_check_digit(first_nine)
    if check is None:
        assert not any(is_valid_nhs_number(first_nine + str(d)) for d in range(10))
        return
    assert is_valid_nhs_number(first_nine + str(check))
    for other in set(range(10)) - {check}:
        assert not is_valid_nhs_number(first_nine + str(other))


@given(valid_nhs_numbers())
def test_generated_valid_nhs_numbers_are_accepted(number):
    assert normalise_nhs_number(number) == number
    assert nhs_check_digit(number[:9]) == int(number[9])


@given(valid_nhs_numbers(), st.integers(min_value=0, max_value=9))
def test_any_single_digit_change_of_a_valid_nhs_number_fails(number, position):
    for replacement in DIGITS:
        if replacement != number[position]:
            typo = number[:position] + replacement + number[position + 1 :]
            assert not is_valid_nhs_number(typo)


@given(valid_nhs_numbers(), st.integers(min_value=0, max_value=8))
def test_swapping_two_adjacent_different_digits_of_a_valid_nhs_number_fails(number, position):
    first, second = number[position], number[position + 1]
    assume(first != second)
    swapped = number[:position] + second + first + number[position + 2 :]
    assert not is_valid_nhs_number(swapped)


@given(_stems(UNISSUED_STEMS))
def test_a_number_outside_every_issued_range_is_refused_though_its_check_digit_is_right(stem):
    number = _with_check_digit(stem)
    assume(number is not None)
    with pytest.raises(InvalidIdentifier, match="not in any range") as caught:
        normalise_nhs_number(number)
    assert caught.value.code is ErrorCode.INVALID_NHS_NUMBER


@pytest.mark.parametrize(
    ("edge", "step", "issued"),
    [
        ("000000000", +1, False),  # 0000000000: the number the check digit alone let through
        ("010099999", -1, False),
        ("010100000", +1, True),  # the first CHI number
        ("311299999", -1, True),  # the last CHI number
        ("311300000", +1, True),  # England's 3xx numbers, up to the H&C range
        ("320000001", +1, True),  # the first H&C number
        ("399999999", -1, True),
        ("400000000", +1, True),
        ("499999999", -1, True),
        ("500000000", +1, False),
        ("599999999", -1, False),
        ("600000000", +1, True),
        ("799999999", -1, True),
        ("800000000", +1, False),
        ("899999999", -1, False),
        ("900000000", +1, True),
        ("999999999", -1, True),
    ],
)
def test_the_edges_of_the_issued_ranges(edge, step, issued):
    """The number with a valid check digit nearest each edge, on the edge's side of it."""
    stems = (f"{int(edge) + step * i:09d}" for i in range(5))
    number = next(n for n in map(_with_check_digit, stems) if n is not None)
    assert is_valid_nhs_number(number) is issued


def test_the_number_of_zeros_is_refused_with_a_message_for_a_practitioner():
    with pytest.raises(InvalidIdentifier) as caught:
        normalise_nhs_number("000 000 0000")
    assert caught.value.code is ErrorCode.INVALID_NHS_NUMBER
    assert "please re-check it" in caught.value.message


def test_synthetic_range_is_the_nine_billions():
    assert is_synthetic_nhs_number("9000000000")
    assert is_synthetic_nhs_number("9999999999")
    assert not is_synthetic_nhs_number("8999999999")
    assert not is_synthetic_nhs_number("abc")


# --- UPNs -----------------------------------------------------------------------------------------

# The DfE table: remainder 0 -> A ... 22 -> Z, skipping I, O and S.
DFE_LETTERS = "ABCDEFGH" + "JKLMN" + "PQR" + "TUVWXYZ"
twelve_digits = st.text(alphabet=DIGITS, min_size=12, max_size=12)


def dfe_check_letter(digits: str) -> str:
    """The DfE rule as written: character n (n = 2..13) times n, summed, modulo 23."""
    return DFE_LETTERS[sum(int(d) * n for n, d in enumerate(digits, start=2)) % 23]


valid_upns = twelve_digits.map(lambda digits: dfe_check_letter(digits) + digits)


@pytest.mark.parametrize(
    "upn",
    [
        "B801200005001",  # python-stdnum's documented example
        "H801200001001",  # 8x2 + 1x4 + 2x5 + 1x10 + 1x13 = 53 = 2x23 + 7 -> H
        "P207000016049",  # 2x2 + 7x4 + 1x9 + 6x10 + 4x12 + 9x13 = 266 = 11x23 + 13 -> P
    ],
)
def test_known_upns_are_accepted(upn):
    assert normalise_upn(upn) == upn


def test_check_letter_alphabet_is_the_dfe_table():
    assert len(DFE_LETTERS) == 23
    assert not set("IOS") & set(DFE_LETTERS)


@given(valid_upns)
def test_generated_valid_upns_are_accepted_in_any_case_and_with_surrounding_spaces(upn):
    assert upn_check_letter(upn[1:]) == upn[0]
    assert normalise_upn(f"  {upn.lower()} ") == upn


@given(valid_upns, st.integers(min_value=0, max_value=12))
def test_any_single_character_change_of_a_valid_upn_fails(upn, position):
    for replacement in string.ascii_uppercase + DIGITS:
        if replacement != upn[position]:
            typo = upn[:position] + replacement + upn[position + 1 :]
            with pytest.raises(InvalidIdentifier) as caught:
                normalise_upn(typo)
            assert caught.value.code is ErrorCode.INVALID_UPN


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("A12345678901", "letter followed by 12 digits"),
        ("112345678901", "letter followed by 12 digits"),
        ("A1234567890123", "letter followed by 12 digits"),
        ("A80120000A001", "letter followed by 12 digits"),
        ("", "letter followed by 12 digits"),
        ("A801200001001", "check letter"),
        # Temporary UPN: its K (value 9) gives it the same check letter as P207000016049.
        ("P20700001604K", "temporary UPN"),
    ],
)
def test_malformed_upns_are_refused_with_a_reason_and_code(raw, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        normalise_upn(raw)
    assert caught.value.code is ErrorCode.INVALID_UPN


# --- Postcodes ------------------------------------------------------------------------------------

# Royal Mail's letter rules per position, written out from the published list.
AREA_FIRST = "ABCDEFGHIJKLMNOPRSTUWYZ"  # not Q, V, X
AREA_SECOND = "ABCDEFGHKLMNOPQRSTUVWXY"  # not I, J, Z
AFTER_A9 = "ABCDEFGHJKPSTUW"
AFTER_AA9 = "ABEHMNPRVWXY"
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # not C, I, K, M, O, V

letter = st.sampled_from
digit = st.sampled_from(DIGITS)
outward_codes = st.one_of(
    st.tuples(letter(AREA_FIRST), digit),
    st.tuples(letter(AREA_FIRST), digit, digit),
    st.tuples(letter(AREA_FIRST), digit, letter(AFTER_A9)),
    st.tuples(letter(AREA_FIRST), letter(AREA_SECOND), digit),
    st.tuples(letter(AREA_FIRST), letter(AREA_SECOND), digit, digit),
    st.tuples(letter(AREA_FIRST), letter(AREA_SECOND), digit, letter(AFTER_AA9)),
).map("".join)
inward_codes = st.tuples(digit, letter(INWARD_LETTERS), letter(INWARD_LETTERS)).map("".join)
valid_postcodes = st.tuples(outward_codes, inward_codes).map(" ".join)


@given(valid_postcodes)
def test_every_valid_postcode_is_its_own_normal_form(postcode):
    assert normalise_postcode(postcode) == postcode
    assert normalise_postcode(normalise_postcode(postcode)) == postcode


@given(valid_postcodes, st.data())
def test_case_and_spacing_variants_normalise_to_the_same_postcode(postcode, data):
    compact = postcode.replace(" ", "")
    cases = data.draw(st.lists(st.booleans(), min_size=len(compact), max_size=len(compact)))
    gaps = data.draw(
        st.lists(
            st.text(alphabet=" \t\u00a0", max_size=3),
            min_size=len(compact) + 1,
            max_size=len(compact) + 1,
        )
    )
    variant = gaps[0] + "".join(
        (c.lower() if lower else c) + gap
        for c, lower, gap in zip(compact, cases, gaps[1:], strict=True)
    )
    assert normalise_postcode(variant) == postcode


@given(valid_postcodes)
def test_district_and_sector_are_the_outward_code_and_the_inward_digit(postcode):
    outward, inward = postcode.split(" ")
    assert postcode_district(postcode.lower()) == outward
    assert postcode_sector(postcode.replace(" ", "")) == f"{outward} {inward[0]}"


def _replace(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


invalid_postcodes = st.one_of(
    # An area never starts with Q, V or X.
    st.tuples(valid_postcodes, letter("QVX")).map(lambda pc: _replace(pc[0], 0, pc[1])),
    # A two-letter area never has I, J or Z second.
    st.tuples(letter(AREA_FIRST), letter("IJZ"), digit, inward_codes).map(
        lambda p: f"{p[0]}{p[1]}{p[2]} {p[3]}"
    ),
    # A9A and AA9A close with letters from their own short lists.
    st.tuples(letter(AREA_FIRST), digit, letter("ILMNOQRVXYZ"), inward_codes).map(
        lambda p: f"{p[0]}{p[1]}{p[2]} {p[3]}"
    ),
    st.tuples(
        letter(AREA_FIRST), letter(AREA_SECOND), digit, letter("CDFGIJKLOQSTUZ"), inward_codes
    ).map(lambda p: f"{p[0]}{p[1]}{p[2]}{p[3]} {p[4]}"),
    # The inward code is a digit and two letters, never C, I, K, M, O or V.
    st.tuples(valid_postcodes, letter("CIKMOV"), st.sampled_from([-1, -2])).map(
        lambda p: _replace(p[0], len(p[0]) + p[2], p[1])
    ),
    st.tuples(valid_postcodes, letter(string.ascii_uppercase)).map(
        lambda p: _replace(p[0], len(p[0]) - 3, p[1])
    ),
    # Anything after a whole postcode leaves the last three characters without a digit first.
    st.tuples(valid_postcodes, letter(string.ascii_uppercase + DIGITS)).map("".join),
    # Only an outward code, or only an inward one.
    outward_codes,
    inward_codes,
    # A full-width look-alike is not the ASCII letter.
    valid_postcodes.map(lambda pc: chr(ord(pc[0]) + 0xFEE0) + pc[1:]),
)


@given(invalid_postcodes)
def test_invalid_postcode_shapes_are_refused(raw):
    with pytest.raises(InvalidIdentifier, match="not a UK postcode") as caught:
        normalise_postcode(raw)
    assert caught.value.code is ErrorCode.INVALID_POSTCODE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("m1 1ae", "M1 1AE"),
        ("B338TH", "B33 8TH"),
        ("cr2 6xh", "CR2 6XH"),
        ("DN55   1PT", "DN55 1PT"),
        ("w1a1hq", "W1A 1HQ"),
        ("EC1A 1BB", "EC1A 1BB"),
        ("GY1 1AA", "GY1 1AA"),  # Guernsey
        ("JE2 3AB", "JE2 3AB"),  # Jersey
        ("IM1 1AA", "IM1 1AA"),  # Isle of Man
        ("BF1 4FB", "BF1 4FB"),  # British Forces
    ],
)
def test_each_uk_shape_and_the_crown_dependencies_are_accepted(raw, expected):
    assert normalise_postcode(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Enter the postcode"),
        (" \t ", "Enter the postcode"),
        ("BFPO 123", "BFPO number is not a postcode"),
        ("bfpo123", "BFPO number is not a postcode"),
        ("GIR 0AA", "not a UK postcode"),  # Girobank's business postcode, nobody's home
        ("ASCN 1ZZ", "not a UK postcode"),  # Ascension Island
        ("FIQQ 1ZZ", "not a UK postcode"),  # Falkland Islands
        ("KY1-1234", "not a UK postcode"),  # Cayman Islands
        ("LS1O 1AB", "not a UK postcode"),  # letter O typed for a zero
        ("LS1 OAB", "not a UK postcode"),
        ("ls1 1\ufb00", "not a UK postcode"),  # the ligature "ff" upper-cases to "FF"
    ],
)
def test_non_postcodes_are_refused_with_a_reason_and_code(raw, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        normalise_postcode(raw)
    assert caught.value.code is ErrorCode.INVALID_POSTCODE


# --- Dates of birth -------------------------------------------------------------------------------

todays = st.dates(min_value=date(1960, 1, 1), max_value=date(2200, 12, 31))


def years_before(day: date, years: int) -> date:
    """The same day `years` earlier; 29 February falls back to 28 February."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


@given(todays, st.integers(min_value=1, max_value=3650))
def test_a_date_of_birth_in_the_future_is_refused(today, days_ahead):
    with pytest.raises(InvalidIdentifier, match="future") as caught:
        check_date_of_birth(today + timedelta(days=days_ahead), today)
    assert caught.value.code is ErrorCode.INVALID_DATE_OF_BIRTH


@given(todays, st.data())
def test_anyone_from_newborn_to_the_oldest_age_is_accepted(today, data):
    earliest = years_before(today, OLDEST_AGE + 1) + timedelta(days=1)
    born = data.draw(st.dates(min_value=earliest, max_value=today))
    assert check_date_of_birth(born, today) == born


@given(todays)
def test_the_age_bound_falls_exactly_on_the_birthday_after_the_oldest_age(today):
    assume((today.month, today.day) != (2, 29))
    turns_too_old_today = today.replace(year=today.year - (OLDEST_AGE + 1))
    assert check_date_of_birth(today, today) == today
    youngest_too_old = turns_too_old_today + timedelta(days=1)
    assert check_date_of_birth(youngest_too_old, today) == youngest_too_old
    with pytest.raises(InvalidIdentifier, match="26 or older") as caught:
        check_date_of_birth(turns_too_old_today, today)
    assert caught.value.code is ErrorCode.INVALID_DATE_OF_BIRTH


def test_someone_born_on_29_february_turns_a_year_older_on_1_march_in_a_common_year():
    leap_born = date(2000, 2, 29)
    assert check_date_of_birth(leap_born, date(2026, 2, 28)) == leap_born
    with pytest.raises(InvalidIdentifier):
        check_date_of_birth(leap_born, date(2026, 3, 1))


def test_a_mistyped_century_is_refused_with_a_hint_to_re_check_the_year():
    with pytest.raises(InvalidIdentifier, match="re-check the year"):
        check_date_of_birth(date(1912, 5, 1), TODAY)


# --- Names ----------------------------------------------------------------------------------------

NAME_LETTERS = string.ascii_letters + "àáâäãåçèéêëìíîïñòóôöøùúûüýÿßæœłÀÉÎÖÜÇÑØÅÆŁŞşĞğ"
name_words = st.text(alphabet=NAME_LETTERS, min_size=1, max_size=12)
name_joins = st.sampled_from([" ", "-", "'", "\u2019", "  ", "\t", " - "])


@st.composite
def names(draw: st.DrawFn) -> str:
    words = draw(st.lists(name_words, min_size=1, max_size=4))
    text = words[0]
    for word in words[1:]:
        text += draw(name_joins) + word
    return draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", "  "]))


@given(names())
def test_names_keep_their_letters_and_casing_with_white_space_collapsed(raw):
    assume(len(" ".join(raw.split())) <= NAME_MAX_CHARS)
    name = normalise_person_name(raw, "given name")
    assert name == " ".join(raw.split())
    assert normalise_person_name(name, "given name") == name


@given(st.text(st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo"]), min_size=1, max_size=40))
def test_letters_of_any_script_are_accepted(raw):
    assert normalise_person_name(raw, "family name") == unicodedata.normalize("NFC", raw)


@given(names(), st.sampled_from("0123456789٣²"), st.data())
def test_a_name_with_a_digit_is_refused(raw, bad, data):
    at = data.draw(st.integers(min_value=0, max_value=len(raw)))
    with pytest.raises(InvalidIdentifier, match="contains a digit") as caught:
        normalise_person_name(raw[:at] + bad + raw[at:], "given name")
    assert caught.value.code is ErrorCode.INVALID_NAME


@given(names(), st.sampled_from(["\x00", "\x1b", "\x7f", "\u200b", "\u202e"]), st.data())
def test_a_name_with_a_control_or_invisible_character_is_refused(raw, bad, data):
    at = data.draw(st.integers(min_value=1, max_value=len(raw.strip())))
    stripped = raw.strip()
    with pytest.raises(InvalidIdentifier, match="control or invisible") as caught:
        normalise_person_name(stripped[:at] + bad + stripped[at:], "family name")
    assert caught.value.code is ErrorCode.INVALID_NAME


def test_accents_typed_as_combining_marks_equal_the_precomposed_letter():
    assert normalise_person_name("Jose\u0301", "given name") == "Jos\u00e9"


def test_the_name_length_bound_is_exact():
    assert normalise_person_name("a" * NAME_MAX_CHARS, "given name") == "a" * NAME_MAX_CHARS
    with pytest.raises(InvalidIdentifier, match="at most 100 characters; this one has 101"):
        normalise_person_name("a" * (NAME_MAX_CHARS + 1), "given name")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Enter the given name"),
        ("  \t ", "Enter the given name"),
        ("-'", "at least one letter"),
        ("Ann.", "a symbol or punctuation mark"),
        ("Ann@", "a symbol or punctuation mark"),
        ("Ann\u2160", "a symbol or punctuation mark"),  # Roman numeral one
    ],
)
def test_names_are_refused_with_a_reason_and_code(raw, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        normalise_person_name(raw, "given name")
    assert caught.value.code is ErrorCode.INVALID_NAME


# --- Messages -------------------------------------------------------------------------------------

HUGE = "Z9" * 50_000


@pytest.mark.parametrize(
    "validate",
    [
        normalise_nhs_number,
        normalise_upn,
        normalise_postcode,
        lambda raw: normalise_person_name(raw, "given name"),
    ],
)
def test_messages_are_short_and_never_repeat_the_input(validate):
    with pytest.raises(InvalidIdentifier) as caught:
        validate(HUGE)
    assert len(caught.value.message) < 200
    assert "Z9Z9" not in caught.value.message


# --- One way of identifying -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nhs_number", "upn", "demographic", "message"),
    [
        (None, None, None, "by an NHS number, a UPN, or details such as name"),
        ("9434765919", "H801200001001", None, "an NHS number and a UPN"),
        ("9434765919", None, object(), "an NHS number and demographics"),
        ("9434765919", "H801200001001", object(), "an NHS number and a UPN and demographics"),
    ],
)
def test_a_lookup_must_identify_the_child_in_exactly_one_way(nhs_number, upn, demographic, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        check_one_way(nhs_number=nhs_number, upn=upn, demographics=demographic)
    assert caught.value.code is ErrorCode.IDENTIFY_ONE_WAY


@pytest.mark.parametrize(
    ("nhs_number", "upn", "demographic"),
    [("9434765919", None, None), (None, "H801200001001", None), (None, None, object())],
)
def test_any_single_way_of_identifying_is_enough(nhs_number, upn, demographic):
    check_one_way(nhs_number=nhs_number, upn=upn, demographics=demographic)


# --- Demographics ---------------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "given": "  Zoë ",
    "family": "O\u2019Brien-Smith",
    "date_of_birth": date(2015, 6, 1),
    "postcode": "ls62qt",
}


def test_demographics_are_validated_and_normalised_into_the_protocol_model():
    found = demographics(**VALID, sex=Sex.FEMALE, former_family=" Jones ", today=TODAY)

    assert found == Demographics(
        given="Zoë",
        family="O\u2019Brien-Smith",
        date_of_birth=date(2015, 6, 1),
        postcode="LS6 2QT",
        sex=Sex.FEMALE,
        former_family="Jones",
    )


@pytest.mark.parametrize("marker", ["NFA", "nfa", " N F A ", "Nfa", "n\tfa"])
def test_no_fixed_abode_is_accepted_for_the_postcode_in_any_case_and_spacing(marker):
    assert demographics(**{**VALID, "postcode": marker}, today=TODAY).postcode == "NFA"


@pytest.mark.parametrize("raw", ["NFA1", "N.F.A.", "NF", "no fixed abode"])
def test_only_the_nfa_marker_stands_for_no_fixed_abode(raw):
    with pytest.raises(InvalidIdentifier, match="NFA") as caught:
        demographics(**{**VALID, "postcode": raw}, today=TODAY)
    assert caught.value.code is ErrorCode.INVALID_POSTCODE


@pytest.mark.parametrize("former", [None, "", "   "])
def test_a_blank_former_family_name_counts_as_not_given(former):
    assert demographics(**VALID, former_family=former, today=TODAY).former_family is None


@pytest.mark.parametrize(
    ("field", "value", "code", "message"),
    [
        ("given", "J0hn", ErrorCode.INVALID_NAME, "given name"),
        ("family", "Sm!th", ErrorCode.INVALID_NAME, "family name"),
        ("known_as", ["Millie", "M1llie"], ErrorCode.INVALID_NAME, "name the child is known by"),
        ("former_family", "Sm1th", ErrorCode.INVALID_NAME, "former family name"),
        ("date_of_birth", date(2026, 3, 15), ErrorCode.INVALID_DATE_OF_BIRTH, "future"),
        ("date_of_birth", date(1990, 1, 1), ErrorCode.INVALID_DATE_OF_BIRTH, "26 or older"),
        ("postcode", "LS6", ErrorCode.INVALID_POSTCODE, "not a UK postcode"),
    ],
)
def test_each_demographic_problem_is_reported_with_its_code(field, value, code, message):
    with pytest.raises(InvalidIdentifier, match=message) as caught:
        demographics(**{**VALID, field: value}, today=TODAY)
    assert caught.value.code is code


def test_the_first_problem_in_form_order_is_the_one_reported():
    with pytest.raises(InvalidIdentifier, match="family name") as caught:
        demographics(
            given="Zoë",
            family="J0nes",
            date_of_birth=date(2030, 1, 1),
            postcode="nowhere",
            former_family="9",
            today=TODAY,
        )
    assert caught.value.code is ErrorCode.INVALID_NAME


@pytest.mark.parametrize("field", ["given", "family", "date_of_birth", "postcode"])
def test_each_detail_may_be_left_out_or_blank(field):
    blank = None if field == "date_of_birth" else "  "

    assert getattr(demographics(**{**VALID, field: None}, today=TODAY), field) is None
    assert getattr(demographics(**{**VALID, field: blank}, today=TODAY), field) is None


def test_known_as_names_are_normalised_kept_once_and_blanks_dropped():
    found = demographics(**VALID, known_as=[" Millie ", "", "Millie", "Mia"], today=TODAY)

    assert found.known_as == ["Millie", "Mia"]


def test_more_known_as_names_than_the_maximum_are_refused():
    names = [f"Name{'a' * i}" for i in range(KNOWN_AS_MAX + 1)]

    with pytest.raises(InvalidIdentifier, match=f"at most {KNOWN_AS_MAX} names") as caught:
        demographics(**VALID, known_as=names, today=TODAY)
    assert caught.value.code is ErrorCode.INVALID_NAME


# --- Enough details to link -----------------------------------------------------------------------

BORN = date(2015, 6, 1)


@pytest.mark.parametrize(
    "details",
    [
        pytest.param({"family": "Hart", "date_of_birth": BORN}, id="family name, date of birth"),
        pytest.param({"given": "Amelia", "date_of_birth": BORN}, id="given name, date of birth"),
        pytest.param(
            {"given": "Amelia", "family": "Hart", "postcode": "LS6 3AB"},
            id="names and postcode",
        ),
        pytest.param(
            {"given": "Amelia", "family": "Hart", "date_of_birth": BORN, "postcode": "NFA"},
            id="names, date of birth, no fixed abode",
        ),
    ],
)
def test_details_that_could_link_if_all_agreed_are_enough(details):
    check_could_link(Demographics(**details), MODEL)


@pytest.mark.parametrize(
    ("details", "to_add"),
    [
        pytest.param(
            {"given": "Amelia", "family": "Hart"},
            "add the date of birth, or the postcode, or look",
            id="two names",
        ),
        pytest.param(
            {"given": "Amelia", "family": "Hart", "postcode": "NFA", "sex": Sex.FEMALE},
            "add the date of birth, or look",
            id="two names, sex, no fixed abode",
        ),
        pytest.param(
            {"family": "Hart", "former_family": "Walsh", "known_as": ["Millie"]},
            "add the date of birth, or look",
            id="former and known-as names add nothing",
        ),
        pytest.param(
            {"postcode": "LS6 3AB"}, "add the date of birth, or look", id="postcode alone"
        ),
        pytest.param(
            {"sex": Sex.FEMALE},
            "add the date of birth and the (given|family) name, or look",
            id="sex alone",
        ),
    ],
)
def test_details_that_could_never_link_are_refused_naming_what_to_add(details, to_add):
    with pytest.raises(InvalidIdentifier, match=to_add) as caught:
        check_could_link(Demographics(**details), MODEL)
    assert caught.value.code is ErrorCode.INSUFFICIENT_DETAILS


def test_a_date_of_birth_and_an_address_without_any_name_are_refused():
    # Enough weight (a child born that day at that address), but a question about who lives
    # there rather than about a child the practitioner knows.
    no_name = Demographics(date_of_birth=BORN, postcode="LS6 3AB", sex=Sex.FEMALE)
    assert (
        MODEL.weight("date_of_birth", "EXACT") + MODEL.weight("postcode", "FULL")
        >= MODEL.link_threshold
    )
    with pytest.raises(InvalidIdentifier, match="needs the child's given or family name") as caught:
        check_could_link(no_name, MODEL)
    assert caught.value.code is ErrorCode.INSUFFICIENT_DETAILS
    check_could_link(no_name.model_copy(update={"known_as": ["Millie"]}), MODEL)


def test_whether_details_are_enough_follows_the_model_s_threshold():
    two_names = Demographics(given="Amelia", family="Hart")
    names_weight = MODEL.weight("given", "EXACT") + MODEL.weight("family", "EXACT")

    check_could_link(two_names, MODEL.with_thresholds(names_weight, names_weight - 1))
    with pytest.raises(InvalidIdentifier, match="NHS number or UPN"):
        check_could_link(two_names, MODEL.with_thresholds(names_weight + 0.1, names_weight - 1))


# --- Corroborating details: address lines and carers' names ---------------------------------


def test_address_lines_are_trimmed_and_blank_ones_dropped():
    assert address_lines(["  Flat 2,\t12 Church Rd ", "", "  ", "Leeds"]) == (
        "Flat 2, 12 Church Rd",
        "Leeds",
    )


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(["a"] * 6, id="six lines"),
        pytest.param(["x" * (ADDRESS_LINE_MAX_CHARS + 1)], id="a long line"),
        pytest.param(["12 Church\x00Road"], id="a control character"),
    ],
)
def test_address_lines_that_cannot_be_an_address_are_refused(lines):
    with pytest.raises(InvalidIdentifier) as refused:
        address_lines(lines)
    assert refused.value.code == ErrorCode.INVALID_ADDRESS


def test_carer_names_are_names_kept_once_each():
    assert carer_names([" Grace  Quist", "", "Grace Quist", "Kwame Quist"]) == (
        "Grace Quist",
        "Kwame Quist",
    )


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(["A Bee", "C Dee", "E Eff", "G Gee", "H Aitch"], id="five carers"),
        pytest.param(["Grace Quist 2"], id="a digit"),
    ],
)
def test_carer_names_that_are_not_names_are_refused(names):
    with pytest.raises(InvalidIdentifier) as refused:
        carer_names(names)
    assert refused.value.code == ErrorCode.INVALID_NAME


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        (f"Told the duty manager about {NHS}", True),
        (f"told them: {NHS[:3]} {NHS[3:6]} {NHS[6:]}.", True),
        (f"ref {NHS[:3]}-{NHS[3:6]}-{NHS[6:]}", True),
        ("pupil H801200001001 at Test Primary", True),
        ("Phoned 0113 496 0000 at 10:40 on 29/11/2026", False),  # a phone number fails the check
        (f"{NHS}1 is not one", False),  # eleven digits
        ("H8012000010019", False),  # a letter and 13 digits
        ("Phoned the duty manager at 10:40, audit ref 3f9a1c2b", False),
        (f"phoned about {NHS[:3]}.{NHS[3:6]}.{NHS[6:]}", True),
        (f"ref {NHS[:3]}/{NHS[3:6]}/{NHS[6:]}", True),
        (f"ref {NHS[:3]} - {NHS[3:6]} - {NHS[6:]}", True),
        (f"111 {NHS[:3]} {NHS[3:6]} {NHS[6:]}", True),  # a failing candidate starts first
        ("".join(chr(0xFF10 + int(d)) if d.isdigit() else d for d in NHS), True),  # full-width
        ("".join(chr(0x0660 + int(d)) for d in NHS), True),  # Arabic-Indic digits
        ("pupil h 8012 0000 1001", True),
        ("Phoned 020 7946 0123 and 07700 900123 on 29/11/2026", False),
        ("Called the duty team on +44 (0)161 496 0003", False),  # its last ten digits check
        ("Called the duty team on +44 161 496 0003", False),
        (f"Phoned +44 (0)161 496 0003 about {NHS}", True),
        ("pupil H 801 200 001 001", True),  # a UPN grouped another way
        ("H80 1200 0010 01", True),
        # Runs of a date and a time: "2026010102" passes the NHS number's check, but a number is
        # not typed with a hyphen and then a space between its groups.
        ("Seen at 2026-01-01 02:40 in ED", False),
        ("Seen on 01/01/2026 02:40 in ED", False),
    ],
)
def test_free_text_holding_a_child_identifier_is_found(text, holds):
    assert holds_child_identifier(text) is holds
