"""A practitioner's justification: their free text, normalised and counted.

Some purposes (a section 47 enquiry, break-glass) need a written reason, and how much reason is
enough is the policy's call. Counting raw characters let 21 zero-width spaces through, so the text
is first made to say only what a reader sees:

- NFKC normalisation, so full-width and other compatibility forms read as the letters they are;
- format (Cf), control (Cc) and other default-ignorable characters removed: they print as nothing
  (zero-width spaces, Hangul fillers) or change how the rest reads (a right-to-left override), and
  the audit record must show what was really written; lone surrogates (Cs) too;
- whitespace collapsed to single spaces and trimmed.

What is left is counted: words (whitespace-separated tokens holding at least one letter) and their
letters (Unicode categories L*), each different word once. A word said again adds nothing: "urgent
urgent urgent urgent" is one word, as "aaaaaaaaaaaaaaaaaaaa" is, and neither is a reason to lift a
shield. Words are the same when their letters and digits are, case aside ("Urgent!" and "urgent").
Only the counts reach the policy; the text may name people, so it
goes to the audit record, the owner notifications and the privacy officers' alert feed, never into
a policy input or a log.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) outside Cf and Cc: invisible by
# definition, whatever their category says (Hangul fillers are letters, variation selectors marks).
_IGNORABLE_RANGES: Final = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)
_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Cc", "Cs"})
"""Format and control characters, and lone surrogates (Cs: no character at all, which no UTF-8
record could hold; gateway.middleware.holds_lone_surrogate refuses them at the edge)."""


@dataclass(frozen=True)
class Justification:
    """The justification as it is recorded (`text`) and as the policy judges it (the counts)."""

    text: str
    """NFKC, invisible characters removed, whitespace collapsed; empty when nothing was said."""
    letters: int
    """Characters in a Unicode letter category (L*), in each different word once."""
    words: int
    """Different whitespace-separated tokens holding at least one letter (see `_word_key`)."""

    @classmethod
    def of(cls, raw: str) -> Justification:
        # Invisible characters go before NFKC too, so that one between a letter and its accent
        # cannot keep them apart until a second normalisation joins them.
        visible = _visible(unicodedata.normalize("NFKC", _visible(raw)))
        tokens = visible.split()
        words: dict[str, int] = {}  # each different word, with its letters
        for token in tokens:
            letters = sum(_is_letter(char) for char in token)
            if letters:
                words.setdefault(_word_key(token), letters)
        return cls(text=" ".join(tokens), letters=sum(words.values()), words=len(words))


def _visible(text: str) -> str:
    """Whitespace (even a control character such as a tab or new line) as a space; every other
    invisible character removed."""
    return "".join(" " if char.isspace() else char for char in text if not _is_invisible(char))


def _is_invisible(char: str) -> bool:
    if char.isspace():
        return False
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(first <= code <= last for first, last in _IGNORABLE_RANGES)


def _word_key(token: str) -> str:
    """What makes a word the same word again: its letters and digits, case folded - punctuation
    and capitals do not make "Urgent!" another word than "urgent"."""
    return "".join(char for char in token.casefold() if char.isalnum())


def _is_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L")
