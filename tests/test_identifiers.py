import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.identifiers import (
    InvalidIdentifier,
    is_synthetic_nhs_number,
    is_valid_nhs_number,
    nhs_check_digit,
    normalise_nhs_number,
    normalise_upn,
    upn_check_letter,
)

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)


def test_known_valid_nhs_number_is_accepted_with_spacing():
    assert normalise_nhs_number("943 476 5919") == "9434765919"
    assert normalise_nhs_number("943-476-5919") == "9434765919"


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
def test_malformed_nhs_numbers_are_refused_with_a_reason(raw, message):
    with pytest.raises(InvalidIdentifier, match=message):
        normalise_nhs_number(raw)


@given(nine_digits)
def test_every_issuable_number_validates_and_any_other_last_digit_does_not(first_nine):
    check = nhs_check_digit(first_nine)
    if check is None:
        assert not any(is_valid_nhs_number(first_nine + str(d)) for d in range(10))
        return
    assert is_valid_nhs_number(first_nine + str(check))
    for other in set(range(10)) - {check}:
        assert not is_valid_nhs_number(first_nine + str(other))


@given(nine_digits, st.integers(min_value=0, max_value=8))
def test_a_single_digit_typo_never_yields_another_valid_number(first_nine, position):
    check = nhs_check_digit(first_nine)
    if check is None:
        return
    number = first_nine + str(check)
    for replacement in "0123456789":
        if replacement == number[position]:
            continue
        typo = number[:position] + replacement + number[position + 1 :]
        assert not is_valid_nhs_number(typo)


def test_synthetic_range_is_the_nine_billions():
    assert is_synthetic_nhs_number("9000000000")
    assert is_synthetic_nhs_number("9999999999")
    assert not is_synthetic_nhs_number("8999999999")
    assert not is_synthetic_nhs_number("abc")


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_upn_with_its_check_letter_is_accepted_and_others_refused(digits):
    letter = upn_check_letter(digits)
    assert normalise_upn((letter + digits).lower()) == letter + digits
    wrong = next(c for c in "ABCDEFGHJKLMNPQRTUVWXYZ" if c != letter)
    with pytest.raises(InvalidIdentifier, match="check letter"):
        normalise_upn(wrong + digits)


@pytest.mark.parametrize("raw", ["A12345678901", "112345678901", "A1234567890123", "A12345678901X"])
def test_malformed_upns_are_refused(raw):
    with pytest.raises(InvalidIdentifier):
        normalise_upn(raw)
