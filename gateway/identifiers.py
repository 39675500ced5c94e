"""Validation of the identifiers a lookup can carry.

A malformed identifier must be refused before anything is fanned out: a typo in an NHS number
that happens to belong to another child is exactly the wrong merge this product exists to
prevent, which is why the check digit is verified rather than only the length.
"""

from __future__ import annotations

import re
from typing import Final

NHS_NUMBER_LENGTH: Final = 10
SYNTHETIC_NHS_RANGE: Final = range(9_000_000_000, 10_000_000_000)

_UPN_LETTERS: Final = "ABCDEFGHJKLMNPQRTUVWXYZ"
_UPN_PATTERN: Final = re.compile(r"^[A-Z][0-9]{12}$")


class InvalidIdentifier(ValueError):
    """Raised with a practitioner-readable message when an identifier is malformed."""


def nhs_check_digit(first_nine: str) -> int | None:
    """Modulus-11 check digit for the first nine digits; None when the number cannot be issued."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise_nhs_number(raw: str) -> str:
    """Return the ten-digit form of an NHS number, accepting the usual 3-3-4 spacing.

    Raises InvalidIdentifier naming the first problem found.
    """
    digits = re.sub(r"[\s-]", "", raw)
    if digits and not (digits.isascii() and digits.isdigit()):
        raise InvalidIdentifier("An NHS number contains only digits.")
    if len(digits) != NHS_NUMBER_LENGTH:
        raise InvalidIdentifier(f"An NHS number has 10 digits; this one has {len(digits)}.")
    if nhs_check_digit(digits[:9]) != int(digits[9]):
        raise InvalidIdentifier("This NHS number fails its check digit: please re-check it.")
    return digits


def is_valid_nhs_number(raw: str) -> bool:
    """True when raw is a well-formed NHS number with a correct check digit."""
    try:
        normalise_nhs_number(raw)
    except InvalidIdentifier:
        return False
    return True


def is_synthetic_nhs_number(nhs_number: str) -> bool:
    """True for numbers in the range never issued to real people (9000000000-9999999999)."""
    return nhs_number.isdigit() and int(nhs_number) in SYNTHETIC_NHS_RANGE


def upn_check_letter(twelve_digits: str) -> str:
    """DfE check letter for the 12 digits that follow it (weights 2..13, modulus 23)."""
    total = sum(int(d) * w for d, w in zip(twelve_digits, range(2, 14), strict=True))
    return _UPN_LETTERS[total % 23]


def normalise_upn(raw: str) -> str:
    """Return the upper-case 13-character UPN, verifying its check letter."""
    upn = raw.strip().upper()
    if not _UPN_PATTERN.match(upn):
        raise InvalidIdentifier("A UPN is a letter followed by 12 digits.")
    if upn_check_letter(upn[1:]) != upn[0]:
        raise InvalidIdentifier("This UPN fails its check letter: please re-check it.")
    return upn
