"""A practitioner's justification, normalised: invisible characters count for nothing, look-alike
forms read as the letters they are, and what is left is counted in letters and words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.justification import Justification
from gateway.types import LookupQuery, Purpose
from tests.factories import NHS

SENTENCE = "Child reported missing; police need the current address now."


def test_a_plain_sentence_is_kept_and_counted():
    justification = Justification.of(f"  {SENTENCE}\n")

    assert justification.text == SENTENCE
    assert justification.words == 9
    assert justification.letters == 50


def test_zero_width_spaces_alone_are_no_justification():
    justification = Justification.of("\u200b" * 21)

    assert justification == Justification(text="", letters=0, words=0)


def test_zero_width_and_direction_characters_are_removed_from_the_text():
    # U+202E (right-to-left override) would make a reviewer read the words backwards.
    justification = Justification.of("\u202eurgent\u200b visit\u2066 \ufeffnow\u200d")

    assert justification.text == "urgent visit now"
    assert (justification.words, justification.letters) == (3, 14)


def test_full_width_and_other_compatibility_forms_read_as_plain_letters():
    justification = Justification.of("\uff55\uff52\uff47\uff45\uff4e\uff54\u3000\ufb01le")

    assert justification.text == "urgent file"
    assert (justification.words, justification.letters) == (2, 10)


def test_control_characters_are_removed_and_whitespace_collapsed():
    justification = Justification.of("home\x00\x07 visit\t\t\r\nurgent\x1b[31m  now\u2028")

    assert justification.text == "home visit urgent[31m now"
    assert justification.words == 4


def test_a_lone_surrogate_is_removed_so_the_text_can_be_recorded():
    """The edge refuses them (gateway.middleware.holds_lone_surrogate); the text the audit record
    holds must be writable as UTF-8 whatever reached it."""
    justification = Justification.of("child at risk \ud800of harm \udfff today")
    assert justification.text == "child at risk of harm today"
    assert justification.text.encode("utf-8")


def test_invisible_letters_count_for_nothing():
    # Hangul fillers are letters by category but print as nothing (Default_Ignorable_Code_Point).
    fillers = " ".join(["\u3164\u3164\u3164\u3164\u3164"] * 4)

    assert Justification.of(fillers) == Justification(text="", letters=0, words=0)


def test_a_repeated_letter_is_one_word():
    assert (Justification.of("a" * 20).words, Justification.of("a" * 20).letters) == (1, 20)


@pytest.mark.parametrize("token", ["47", "--", "!!!", "\u0301\u0301"])
def test_a_token_without_a_letter_is_not_a_word(token):
    justification = Justification.of(f"section {token}")

    assert justification.words == 1


def test_letters_of_any_script_count():
    justification = Justification.of("Plentyn ar goll, ffôn: καλέστε αμέσως")

    assert justification.words == 6
    assert justification.letters == 30


@given(st.text())
def test_normalising_twice_changes_nothing(raw):
    once = Justification.of(raw)

    assert Justification.of(once.text) == once


@pytest.mark.parametrize("raw", ["", "  two  spaces", "zero\u200bwidth"])
def test_a_lookup_holds_a_justification_only_as_normalised(raw):
    with pytest.raises(ValueError, match="normalised"):
        LookupQuery(purpose=Purpose.EMERGENCY_OVERRIDE, nhs_number=NHS, justification=raw)

    assert LookupQuery(
        purpose=Purpose.EMERGENCY_OVERRIDE,
        nhs_number=NHS,
        justification=Justification.of(raw).text or None,
    )
