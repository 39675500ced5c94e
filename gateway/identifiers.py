"""Validation of what a lookup identifies a child by: an NHS number, a UPN, or demographics.

Bad input is refused here, before anything is fanned out: a typo in an NHS number that happens to
belong to another child is exactly the wrong merge this product exists to prevent, which is why
check digits are verified rather than only lengths, and why demographics are checked for shape
(a postcode the Royal Mail could issue, a date of birth a child in this service could have) and
for being enough to tell one child from another (`check_could_link`).

Every refusal is an `InvalidIdentifier` carrying a stable `ErrorCode` and a message written for a
practitioner. Messages say what is wrong and never repeat the input: it is a child's personal data,
and it may be arbitrarily long.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from typing import Final, Literal

from connectors.check_digits import nhs_check_digit, upn_check_letter
from connectors.protocol import KNOWN_AS_MAX, NO_FIXED_ABODE, Demographics, Sex
from gateway.errors import ErrorCode
from gateway.linkage import LinkageModel

NHS_NUMBER_LENGTH: Final = 10
SYNTHETIC_NHS_RANGE: Final = range(9_000_000_000, 10_000_000_000)

ISSUED_NHS_RANGES: Final = (
    # CHI numbers, Scotland (to 311 299 9999); 3xx numbers issued in England; H&C numbers,
    # Northern Ireland (from 320 000 001): one span, since the edges between them are not all
    # published, and refusing a real child's number is worse than accepting one never issued.
    range(101_000_000, 4_000_000_000),
    range(4_000_000_000, 5_000_000_000),  # NHS numbers, England, Wales and the Isle of Man
    range(6_000_000_000, 8_000_000_000),  # NHS numbers, England, Wales and the Isle of Man
    SYNTHETIC_NHS_RANGE,
)
"""The ten-digit numbers the UK's health services issue from, one numbering scheme that keeps the
three apart. Sources: the NHS Data Model and Dictionary (NHS England) - HEALTH AND CARE NUMBER,
"a range of numbers reserved for Northern Ireland (320 000 001 to 399 999 999 plus check digit)";
COMMUNITY HEALTH INDEX NUMBER, Scotland, whose first six digits are the date of birth (DDMMYY), so
010 100 0000 to 311 299 9999. England, Wales and the Isle of Man: 400 000 0000 to 499 999 9999
and 600 000 0000 to 799 999 9999, as NHS FHIR profiles citing the Dictionary give them (e.g. NHS
North West Genomics' NHSNumber profile) and the UK Faculty of Clinical Informatics' `nhs-number`
package tabulates them (it lists 500... as NHS Care Records Service testing, 800... to 859... as
the Republic of Ireland's IHI, the rest as unallocated). 900 000 0000 to 999 999 9999 are never
issued to a person (999 000 0000 upwards are NHS England's test numbers; this project's synthetic
children use the rest): accepted, so tests and the demo run. A CHI or H&C number is accepted
because a child who moved from Scotland or Northern Ireland may still be recorded under it. England
also issues from 3xx (listed as such by the `nhs-number` crate and Wikipedia, not confirmed from the
Dictionary itself), between the CHI and H&C ranges: that gap is accepted too (the first range)."""

OLDEST_AGE: Final = 25
"""The oldest age a lookup may be about. Children's services support care leavers until they reach
25 (Children and Social Work Act 2017, s.3), so a record can be live for a 25-year-old; anyone
older is almost always a slip in the year of birth (1908 for 2008), which must not fan out."""

NAME_MAX_CHARS: Final = 100
ADDRESS_LINES_MAX: Final = 5
CARER_NAMES_MAX: Final = 4
ADDRESS_LINE_MAX_CHARS: Final = 100

_UPN_DIGITS: Final = 12
_UPN_PATTERN: Final = re.compile(rf"[A-Z][0-9]{{{_UPN_DIGITS}}}")
_TEMPORARY_UPN_PATTERN: Final = re.compile(r"[A-Z][0-9]{11}[A-Z]")

# Royal Mail's outward-code shapes with the letters each position may hold: never Q, V or X
# first; never I, J or Z second; a closing letter after one digit (A9A) from ABCDEFGHJKPSTUW,
# after two letters and a digit (AA9A) from ABEHMNPRVWXY.
_OUTWARD: Final = re.compile(
    r"[A-PR-UWYZ](?:[0-9]{1,2}|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9]{1,2}|[A-HK-Y][0-9][ABEHMNPRVWXY])"
)
_INWARD: Final = re.compile(r"[0-9][ABD-HJLNP-UW-Z]{2}")  # never C, I, K, M, O or V
_INWARD_LENGTH: Final = 3

_NAME_PUNCTUATION: Final = frozenset(" -'\u2019")  # space, hyphen, apostrophe, typographic one

_ONE_WAY_LABELS: Final = ("an NHS number", "a UPN", "demographics")


class InvalidIdentifier(ValueError):
    """An identifier or demographic detail that cannot be used for a lookup.

    `code` is the stable machine code the caller sees; the message (`str(exc)`) is safe to show to a
    practitioner as it is.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_one_way(*, nhs_number: object, upn: object, demographics: object) -> None:
    """Refuse a lookup that does not identify the child in exactly one way.

    Two ways at once could each reach a different child, and the answer would merge them; none at
    all would be a search of everyone. A value counts as given when it is not None.
    """
    given = [
        label
        for label, value in zip(_ONE_WAY_LABELS, (nhs_number, upn, demographics), strict=True)
        if value is not None
    ]
    if not given:
        raise InvalidIdentifier(
            ErrorCode.IDENTIFY_ONE_WAY,
            "Identify the child by an NHS number, a UPN, or details such as name, date of birth"
            " and postcode.",
        )
    if len(given) > 1:
        raise InvalidIdentifier(
            ErrorCode.IDENTIFY_ONE_WAY,
            f"Identify the child in one way only; this lookup gives {' and '.join(given)}.",
        )


ChildKind = Literal["nhs", "upn"]
"""The identifiers the audit log names a child by (`linked_refs`), and so reads it back by."""


def named_child(*, nhs_number: str | None, upn: str | None) -> tuple[ChildKind, str]:
    """The one identifier a child's audit trail or access history is read by, normalised; raises
    InvalidIdentifier unless exactly one of the two is given, and valid."""
    if (nhs_number is None) == (upn is None):
        raise InvalidIdentifier(
            ErrorCode.IDENTIFY_ONE_WAY, "Name the child by an NHS number or by a UPN: one of them."
        )
    if nhs_number is not None:
        return "nhs", normalise_nhs_number(nhs_number)
    return "upn", normalise_upn(upn or "")


_NHS_NUMBER_WRITTEN: Final = re.compile(r"([0-9]{3})[\s-]?([0-9]{3})[\s-]?([0-9]{4})")
"""An NHS number as people write it: ten digits, or 3-3-4 with a space or hyphen between groups."""


def normalise_nhs_number(raw: str) -> str:
    """Return the ten-digit form of an NHS number, accepting the usual 3-3-4 spacing.

    Only that spacing: digits broken up anywhere else ("94 34 76 59 19", "-9434765919") are
    refused rather than read, since dropping every space and hyphen would also read text that was
    never written as one NHS number.

    The weights make every single-digit error and every swap of two adjacent digits fail the check.
    A number with a correct check digit outside every issued range (ISSUED_NHS_RANGES), such as
    0000000000, is refused too: it is nobody's, so it is a slip or a placeholder.
    """
    written = _NHS_NUMBER_WRITTEN.fullmatch(raw.strip())
    if written is None:
        digits = re.sub(r"[\s-]", "", raw)
        if digits and not (digits.isascii() and digits.isdigit()):
            raise InvalidIdentifier(
                ErrorCode.INVALID_NHS_NUMBER, "An NHS number contains only digits."
            )
        if len(digits) != NHS_NUMBER_LENGTH:
            raise InvalidIdentifier(
                ErrorCode.INVALID_NHS_NUMBER,
                f"An NHS number has 10 digits; this one has {len(digits)}.",
            )
        raise InvalidIdentifier(
            ErrorCode.INVALID_NHS_NUMBER,
            "Write an NHS number as its 10 digits, together or spaced 3-3-4 (943 476 5919).",
        )
    digits = "".join(written.groups())
    if nhs_check_digit(digits[:9]) != int(digits[9]):
        raise InvalidIdentifier(
            ErrorCode.INVALID_NHS_NUMBER,
            "This NHS number fails its check digit: please re-check it.",
        )
    if not any(int(digits) in issued for issued in ISSUED_NHS_RANGES):
        raise InvalidIdentifier(
            ErrorCode.INVALID_NHS_NUMBER,
            "This number is not in any range NHS numbers are issued from (nor those of Scottish"
            " CHI or Northern Irish H&C numbers): please re-check it.",
        )
    return digits


def is_valid_nhs_number(raw: str) -> bool:
    """True when raw is a well-formed NHS number with a correct check digit, in an issued range."""
    try:
        normalise_nhs_number(raw)
    except InvalidIdentifier:
        return False
    return True


def is_normal(normalise: Callable[[str], str], value: str) -> bool:
    """Whether `value` is an identifier `normalise` (`normalise_nhs_number`, `normalise_upn`)
    accepts, written as it writes one: how a record carries a child's identifier. A mistyped or
    made-up one is not asked with, nor shown as the child's."""
    try:
        return normalise(value) == value
    except InvalidIdentifier:
        return False


def is_synthetic_nhs_number(nhs_number: str) -> bool:
    """True for numbers in the range never issued to real people (9000000000-9999999999)."""
    return nhs_number.isdigit() and int(nhs_number) in SYNTHETIC_NHS_RANGE


def normalise_upn(raw: str) -> str:
    """Return the upper-case 13-character permanent UPN, verifying its check letter.

    Because 23 is prime and no weight is a multiple of it, any single changed character fails the
    check. Temporary UPNs (ending in a letter) are refused: the DfE allows them only until the
    permanent UPN is known, they are meaningful to one school alone, and a temporary UPN whose last
    letter has the value of a permanent UPN's last digit (K for 9) shares its check letter - one
    changed character would then reach another pupil.
    """
    upn = raw.strip().upper()
    if _TEMPORARY_UPN_PATTERN.fullmatch(upn):
        raise InvalidIdentifier(
            ErrorCode.INVALID_UPN,
            "This is a temporary UPN (it ends in a letter), which is not accepted for a lookup: "
            "use the pupil's permanent UPN, or their name, date of birth and postcode.",
        )
    if not _UPN_PATTERN.fullmatch(upn):
        raise InvalidIdentifier(ErrorCode.INVALID_UPN, "A UPN is a letter followed by 12 digits.")
    if upn_check_letter(upn[1:]) != upn[0]:
        raise InvalidIdentifier(
            ErrorCode.INVALID_UPN, "This UPN fails its check letter: please re-check it."
        )
    return upn


_GAP: Final = r"[^A-Za-z0-9]{0,3}"
"""What people put between an identifier's groups: a space, a hyphen, a dot, a slash, " - "."""
# Each a lookahead, so that every place a number could start is tried: a candidate that fails
# its check must not consume the start of a valid one after it ("111 943 476 5919").
_NHS_NUMBER_AS_GROUPED: Final = re.compile(
    rf"(?<![0-9])(?=([0-9]{{3}}){_GAP}([0-9]{{3}}){_GAP}([0-9]{{4}})(?![0-9]))"
)
_UPN_AS_GROUPED: Final = re.compile(
    rf"(?<![A-Za-z0-9])(?=([A-Za-z]){_GAP}([0-9]{{4}}){_GAP}([0-9]{{4}}){_GAP}([0-9]{{4}})(?![0-9]))"
)
_DIGITS_IN_TEXT: Final = re.compile(r"[0-9]+(?:[\s\-\u2010-\u2015\u2212\ufe58\ufe63]{1,3}[0-9]+)*")
"""Digits grouped any other way, as a number is read out or typed: runs set apart by spaces or
hyphens only - any hyphen or dash (U+2010 HYPHEN, the en dash a word processor makes of one, the
minus sign), not just the ASCII one, which NFKC does not make of them. Dots, slashes and colons do
not join runs here - dates and times ("29/11/2026 10:40") would otherwise make ten digits that
pass the check one time in eleven; the usual groupings above allow them."""
_DIGIT_RUN: Final = re.compile(r"[0-9]+")
_UPN_LETTER: Final = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z]{_GAP}(?=[0-9])")
"""A UPN's check letter where a UPN could start: its digits follow it."""

_PHONE_PREFIX: Final = re.compile(rf"(?:\+\s?44|\(0\)){_GAP}$")
"""What comes just before a UK phone number written internationally: a number after it is one."""


def holds_child_identifier(text: str) -> bool:
    """Whether free text an operator or practitioner wrote holds a valid NHS number or permanent
    UPN, however its groups are set apart and in whatever digits it is written (full-width,
    Arabic-Indic): text kept where no child's identifier may be - a justification, a note on the
    notification outbox - is refused rather than kept with one.

    The usual groupings ("943 476 5919", "943/476/5919"; a UPN's letter and three fours) with any
    gap; any other grouping ("94 34 76 59 19", "9434 765 919", digit by digit) with spaces or
    hyphens: every 10 digits that whole runs make together is tried, so a failing candidate does
    not hide a valid one after it ("111 943 476 5919"). A run is never cut: eleven digits together
    are not an NHS number."""
    folded = _ascii_digits(unicodedata.normalize("NFKC", text))
    return _holds_nhs_number(folded) or _holds_upn(folded)


def _holds_nhs_number(text: str) -> bool:
    candidates = [
        (found.start(), "".join(found.groups())) for found in _NHS_NUMBER_AS_GROUPED.finditer(text)
    ]
    for written in _DIGITS_IN_TEXT.finditer(text):
        runs = list(_DIGIT_RUN.finditer(text, written.start(), written.end()))
        for first, run in enumerate(runs):
            digits = _leading_digits(runs[first:], NHS_NUMBER_LENGTH)
            if digits is not None:
                candidates.append((run.start(), digits))
    return any(
        is_valid_nhs_number(digits)
        # "+44 (0)161 496 0003": a phone number, whatever its digits check
        and not _PHONE_PREFIX.search(text, 0, start)
        for start, digits in candidates
    )


def _holds_upn(text: str) -> bool:
    candidates = ["".join(found.groups()).upper() for found in _UPN_AS_GROUPED.finditer(text)]
    for letter in _UPN_LETTER.finditer(text):
        written = _DIGITS_IN_TEXT.match(text, letter.end())
        assert written is not None  # the letter's lookahead saw a digit
        runs = list(_DIGIT_RUN.finditer(text, written.start(), written.end()))
        digits = _leading_digits(runs, _UPN_DIGITS)
        if digits is not None:
            candidates.append(letter.group()[0].upper() + digits)
    return any(is_normal(normalise_upn, candidate) for candidate in candidates)


def _leading_digits(runs: Sequence[re.Match[str]], length: int) -> str | None:
    """The first `length` digits of these runs when whole runs make exactly that many, set apart
    by one and the same gap: a number is typed with one separator ("94 34 76 59 19",
    "943-4765-919"), where a date and a time ("2026-11-29 10") mix them."""
    digits = ""
    gaps = set()
    for previous, run in zip((None, *runs), runs, strict=False):
        if previous is not None:
            gaps.add(run.string[previous.end() : run.start()])
        digits += run.group()
        if len(digits) >= length:
            break
    return digits if len(digits) == length and len(gaps) <= 1 else None


def _ascii_digits(text: str) -> str:
    """`text` with every decimal digit of any script written as its ASCII digit."""
    return "".join(
        str(unicodedata.decimal(char)) if char.isdecimal() and not char.isascii() else char
        for char in text
    )


def normalise_postcode(raw: str) -> str:
    """Return a UK postcode upper-case with one space before the inward code ("SW1A 1AA").

    Accepts any case and spacing, including none ("sw1a1aa"), and the six Royal Mail shapes A9 9AA,
    A99 9AA, A9A 9AA, AA9 9AA, AA99 9AA and AA9A 9AA with the letters each position may hold.
    Guernsey, Jersey and the Isle of Man (GY, JE, IM) and British Forces postcodes (BF1) fit these
    shapes and are accepted. Refused on purpose: GIR 0AA (a bank's business postcode, nobody's
    home), BFPO numbers (not postcodes), and the overseas territories' codes (ASCN 1ZZ, FIQQ 1ZZ,
    KY1-1234), which lie outside the services this gateway federates.
    """
    compact = "".join(raw.split())
    if not compact:
        raise InvalidIdentifier(ErrorCode.INVALID_POSTCODE, "Enter the postcode.")
    upper = compact.upper()
    if upper.startswith("BFPO"):
        raise InvalidIdentifier(
            ErrorCode.INVALID_POSTCODE,
            "A BFPO number is not a postcode: enter the family's UK postcode (a BF1 postcode "
            "for forces addresses), or look the child up by NHS number or UPN.",
        )
    outward, inward = upper[:-_INWARD_LENGTH], upper[-_INWARD_LENGTH:]
    # ASCII first: upper-casing a ligature ("\ufb00" to "FF") must not complete a postcode.
    if not (compact.isascii() and _OUTWARD.fullmatch(outward) and _INWARD.fullmatch(inward)):
        raise InvalidIdentifier(
            ErrorCode.INVALID_POSTCODE,
            "This is not a UK postcode: one looks like SW1A 1AA or M1 1AE.",
        )
    return f"{outward} {inward}"


def normalise_home_postcode(raw: str) -> str:
    """The postcode of a child's home for a demographic lookup: a UK postcode as normalise_postcode
    returns it, or NO_FIXED_ABODE ("NFA", in any case and spacing) for a child with no fixed abode.

    Only the NFA marker stands for no fixed abode, as records hold it; a refusal says so, since a
    practitioner looking for a homeless child would otherwise be stopped by the postcode field.
    """
    if "".join(raw.split()).upper() == NO_FIXED_ABODE:
        return NO_FIXED_ABODE
    try:
        return normalise_postcode(raw)
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(
            exc.code, f"{exc.message} For a child with no fixed abode, enter NFA."
        ) from exc


def postcode_district(postcode: str) -> str:
    """The outward code ("SW1A" of "SW1A 1AA"): the postal district, some 10,000 addresses."""
    return normalise_postcode(postcode).split(" ")[0]


def postcode_sector(postcode: str) -> str:
    """The district and the inward digit ("SW1A 1" of "SW1A 1AA"): some 3,000 addresses, close
    enough to be partial agreement when a family moved nearby or one letter of a postcode is off."""
    district, inward = normalise_postcode(postcode).split(" ")
    return f"{district} {inward[0]}"


def check_date_of_birth(born: date, today: date) -> date:
    """Return `born` when it could be the date of birth of someone this service works with.

    Refuses a date after `today` and anyone aged over OLDEST_AGE on `today`. `today` is a parameter,
    not read from the clock, so that the caller decides the calendar (the gateway's local date) and
    tests can pin the boundary. Someone born on 29 February turns a year older on 1 March in a
    common year.
    """
    if born > today:
        raise InvalidIdentifier(
            ErrorCode.INVALID_DATE_OF_BIRTH, "A date of birth cannot be in the future."
        )
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age > OLDEST_AGE:
        raise InvalidIdentifier(
            ErrorCode.INVALID_DATE_OF_BIRTH,
            f"This date of birth makes the person {OLDEST_AGE + 1} or older; this service covers "
            f"children and care leavers up to {OLDEST_AGE}: please re-check the year.",
        )
    return born


def normalise_person_name(raw: str, what: str) -> str:
    """Return a name trimmed, with each run of white space (tabs and line breaks from a paste
    too) made one space, in Unicode NFC.

    A name may hold letters in any script, with their accents, and spaces, hyphens and apostrophes
    (straight or typographic). Casing is kept for display; matching folds case itself. NFC makes an
    accented letter typed as letter-plus-accent equal to the same letter typed precomposed. `what`
    names the field in messages ("given name").
    """
    name = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not name:
        raise InvalidIdentifier(ErrorCode.INVALID_NAME, f"Enter the {what}.")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidIdentifier(
            ErrorCode.INVALID_NAME,
            f"A {what} is at most {NAME_MAX_CHARS} characters; this one has {len(name)}.",
        )
    refused = next((c for c in name if not _allowed_in_name(c)), None)
    if refused is not None:
        raise InvalidIdentifier(
            ErrorCode.INVALID_NAME,
            f"A {what} may contain only letters, spaces, hyphens and apostrophes; "
            f"this one contains {_describe(refused)}.",
        )
    if not any(unicodedata.category(c).startswith("L") for c in name):
        raise InvalidIdentifier(ErrorCode.INVALID_NAME, f"A {what} needs at least one letter.")
    return name


def demographics(
    *,
    given: str | None = None,
    family: str | None = None,
    date_of_birth: date | None = None,
    postcode: str | None = None,
    sex: Sex | None = None,
    former_family: str | None = None,
    known_as: Sequence[str] = (),
    today: date,
) -> Demographics:
    """Validate and normalise a demographic lookup, raising on the first problem in form order.

    Every detail is optional here (whether enough were given is `check_could_link`'s question),
    and a blank one counts as not given: portals send empty optional fields. A missing postcode
    only means the practitioner did not give it; NFA states that the child has no fixed abode.
    Names the child is known by are kept once each, in the order given, and at most KNOWN_AS_MAX.
    """
    return Demographics(
        given=_optional_name(given, "given name"),
        family=_optional_name(family, "family name"),
        date_of_birth=None if date_of_birth is None else check_date_of_birth(date_of_birth, today),
        postcode=None
        if postcode is None or not postcode.strip()
        else normalise_home_postcode(postcode),
        sex=sex,
        former_family=_optional_name(former_family, "former family name"),
        known_as=_known_as(known_as),
    )


def _optional_name(raw: str | None, what: str) -> str | None:
    if raw is None or not raw.strip():
        return None
    return normalise_person_name(raw, what)


def _known_as(raw: Sequence[str]) -> list[str]:
    return list(
        _distinct_names(
            raw, "name the child is known by", KNOWN_AS_MAX, "names the child is known by"
        )
    )


def _distinct_names(raw: Sequence[str], what: str, most: int, counted: str) -> tuple[str, ...]:
    """Names as `normalise_person_name` accepts them (`what` names one in messages), blank ones
    dropped, repeats kept once in the order given, refused beyond `most` (`counted` names
    them in the message)."""
    names = [_optional_name(name, what) for name in raw]
    distinct = tuple(dict.fromkeys(name for name in names if name is not None))
    if len(distinct) > most:
        raise InvalidIdentifier(
            ErrorCode.INVALID_NAME,
            f"Give at most {most} {counted}; this lookup gives {len(distinct)}.",
        )
    return distinct


def address_lines(raw: Sequence[str]) -> tuple[str, ...]:
    """Validate the lines of a home address given with a demographic lookup: each trimmed with
    its white space made single, blank ones dropped (portals send empty inputs), at most
    ADDRESS_LINES_MAX lines of ADDRESS_LINE_MAX_CHARS characters, printable text only.

    The postcode goes in its own field; lines are matched by house number and street words, so
    their form (abbreviations, commas, case) does not matter.
    """
    lines = [" ".join(line.split()) for line in raw]
    kept = tuple(line for line in lines if line)
    if len(kept) > ADDRESS_LINES_MAX:
        raise InvalidIdentifier(
            ErrorCode.INVALID_ADDRESS,
            f"Give at most {ADDRESS_LINES_MAX} address lines; this lookup gives {len(kept)}.",
        )
    for line in kept:
        if len(line) > ADDRESS_LINE_MAX_CHARS:
            raise InvalidIdentifier(
                ErrorCode.INVALID_ADDRESS,
                f"An address line is at most {ADDRESS_LINE_MAX_CHARS} characters; one has"
                f" {len(line)}.",
            )
        refused = next((c for c in line if not c.isprintable()), None)
        if refused is not None:
            raise InvalidIdentifier(
                ErrorCode.INVALID_ADDRESS,
                f"An address line may not contain {_describe(refused)}.",
            )
    return kept


def carer_names(raw: Sequence[str]) -> tuple[str, ...]:
    """Validate the names of a child's parents or carers given with a demographic lookup: each
    a person's name as `normalise_person_name` accepts it, blank ones dropped, repeats kept
    once, at most CARER_NAMES_MAX. Only a full name (given and family) can agree with a record."""
    return _distinct_names(raw, "parent's or carer's name", CARER_NAMES_MAX, "parents or carers")


_STRONGEST_LEVELS: Final = (
    ("given", "EXACT", "the given name"),
    ("family", "EXACT", "the family name"),
    ("date_of_birth", "EXACT", "the date of birth"),
    ("postcode", "FULL", "the postcode"),
    ("sex", "SAME", "the sex"),
)
"""Each detail a demographic lookup can be scored on, the level at which it agrees most strongly,
and how a message names it. A former family name and names the child is known by are not here:
they stand in for a name that differs, and add nothing beyond what the name itself could."""


def check_could_link(found: Demographics, model: LinkageModel) -> None:
    """Refuse a demographic lookup whose details could not link any record even if the record
    agreed with every one of them: the sum of each given detail's strongest weight must reach
    the model's link threshold.

    Such a lookup could find only near misses, never the child, while every source is asked and
    sends back the children who share those details: given and family name alone are a list of
    namesakes. A postcode of NFA and sex unknown are given but agree with nothing, so they add no
    weight. The message names what to add: each detail that would be enough on its own, or else
    the strongest ones that together would.

    A lookup must also name the child: a date of birth with a postcode would reach the threshold
    (a child born that day at that address), but asked without a name it is a question about who
    lives there, not about a child the practitioner knows.
    """
    stated = {
        "given": found.given,
        "family": found.family,
        "date_of_birth": found.date_of_birth,
        "postcode": found.postcode,
        "sex": found.sex,
    }
    weighs_nothing = {"postcode": NO_FIXED_ABODE, "sex": Sex.UNKNOWN}
    weights = {field: model.weight(field, level) for field, level, _ in _STRONGEST_LEVELS}
    reached = sum(
        weights[field]
        for field, value in stated.items()
        if value is not None and value != weighs_nothing.get(field)
    )
    if reached >= model.link_threshold:
        if any((found.given, found.family, found.known_as)):
            return
        raise InvalidIdentifier(
            ErrorCode.INSUFFICIENT_DETAILS,
            "A lookup by demographics needs the child's given or family name (or a name they are"
            " known by): a date of birth and an address alone would list the children living"
            " there. Add a name, or look the child up by NHS number or UPN.",
        )
    missing = sorted(
        ((weights[field], label) for field, _, label in _STRONGEST_LEVELS if stated[field] is None),
        key=lambda entry: -entry[0],
    )
    to_add = _what_to_add(missing, model.link_threshold - reached)
    raise InvalidIdentifier(
        ErrorCode.INSUFFICIENT_DETAILS,
        "These details are not enough to tell one child from others even if a record agreed"
        f" with all of them: {f'add {to_add}, or ' if to_add else ''}look the child up by NHS"
        " number or UPN.",
    )


def _what_to_add(missing: list[tuple[float, str]], short_by: float) -> str:
    """Each missing detail (weight, label; strongest first) that is enough alone, as choices;
    else the fewest strongest that are enough together; "" when not even all of them are."""
    alone = [label for weight, label in missing if weight >= short_by]
    if alone:
        return ", or ".join(alone)
    together = []
    for weight, label in missing:
        together.append(label)
        short_by -= weight
        if short_by <= 0:
            return " and ".join(together)
    return ""


def _allowed_in_name(char: str) -> bool:
    # L*: letters of every script; M*: combining accents and vowel signs.
    return char in _NAME_PUNCTUATION or unicodedata.category(char)[0] in "LM"


def _describe(char: str) -> str:
    """What kind of character was refused, without echoing it (it may be invisible or hostile)."""
    category = unicodedata.category(char)
    if char.isdigit():
        return "a digit"
    if category[0] == "C":
        return "a control or invisible character"
    return "a symbol or punctuation mark"
