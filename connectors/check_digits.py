"""The check characters of the two national child identifiers, as their issuers define them.

They live in the connector SDK, not the gateway, because agencies need them without the gateway:
to validate the identifiers in their own records, and to generate synthetic ones (which must carry
valid check characters to be treated exactly as real ones).
"""

from __future__ import annotations

from typing import Final

UPN_LETTERS: Final = "ABCDEFGHJKLMNPQRTUVWXYZ"
"""Check-letter values 0..22: I, O and S are never used."""


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus-11 check digit for the first nine digits; None when the number cannot be issued."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def upn_check_letter(twelve_digits: str) -> str:
    """DfE check letter for the 12 digits that follow it: the digits in character positions 2..13
    weighted by their position, summed modulo 23, mapped to A..Z without I, O and S."""
    total = sum(int(d) * w for d, w in zip(twelve_digits, range(2, 14), strict=True))
    return UPN_LETTERS[total % 23]


def is_nhs_number(value: str) -> bool:
    """Whether `value` is an NHS number as the gateway sends one: ten ASCII digits, the last the
    check digit of the other nine."""
    return (
        len(value) == 10
        and value.isascii()
        and value.isdigit()
        and nhs_check_digit(value[:9]) == int(value[9])
    )


def is_permanent_upn(value: str) -> bool:
    """Whether `value` is a permanent UPN as the gateway sends one: an upper-case check letter,
    then twelve ASCII digits whose check letter it is."""
    return (
        len(value) == 13
        and value[1:].isascii()
        and value[1:].isdigit()
        and upn_check_letter(value[1:]) == value[0]
    )
