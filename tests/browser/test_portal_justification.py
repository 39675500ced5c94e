"""The portal's justification counter (portal/static/js/justification.js) counts as the gateway
does (gateway.justification), so it never tells a practitioner "Yours meets it" for a reason the
policy refuses: each different word once, case and punctuation aside, over the same whitespace
and invisible characters. The module runs in Node (no browser needed); the gateway's counts are
Justification.of's."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.justification import Justification

MODULE = Path(__file__).parents[2] / "portal" / "static" / "js" / "justification.js"
OVERRIDE_RULE = {"justificationRequired": True, "minWords": 4, "minLetters": 20}

# Each counts once at the gateway however it is written again, or is one word there however it
# looks in a browser.
CASES = [
    "urgent urgent urgent urgent",
    "Urgent! urgent. URGENT, (urgent)",
    "aaaaaaaaaaaaaaaaaaaa",
    "Child brought to ED unconscious at 2am, no carer present, police requesting checks",
    "Straße STRASSE strasse stra\u1e9ee",  # ẞ and ß fold to ss, as STRASSE does
    "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2 \u03bf\u03b4\u03bf\u03c3",  # final sigma
    "\u13a0\u13a1 \uab70\uab71",  # Cherokee capitals and small letters fold together
    "\u0131l \u0130l il Il",  # a dotless i stays itself; a dotted capital I folds to i
    "ur\ufeffgent visit",  # U+FEFF is invisible, not a space
    "urgent\x1cvisit\x85now",  # U+001C and U+0085 are spaces
    "\uff55\uff52\uff47\uff45\uff4e\uff54 urgent",  # full-width letters read as plain ones
    "\u200b" * 21,
    "child 2 child2 2child",
]
POOL = [
    *"aAbBsSzZ",
    *"\u00df\u1e9e\u03c3\u03c2\u03a3\u0131\u0130iI",  # sharp s, sigmas, dotless and dotted i
    "\u13a0",
    "\uab70",
    "\u00e9",
    "e\u0301",
    "\u1f80",
    "\u1f88",
    "\u0390",
    *"1٣!.,'-",
    " ",
    "\t",
    "\x1c",
    "\x85",
    "\u3000",
    "\ufeff",
    "\u200b",
    "\u202e",
    "\uff41",
    "\ufb01",
]


def _portal_counts(texts: list[str]) -> list[dict[str, object]]:
    """count() and ruleWords() under the override rule, as the portal's module answers them."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: install Node.js 20+ to run this test")
    script = (
        f"import {{ count, ruleWords }} from {json.dumps(MODULE.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const texts = JSON.parse(readFileSync(0, 'utf8'));\n"
        f"const rule = {json.dumps(OVERRIDE_RULE)};\n"
        "const said = texts.map((t) => ({ ...count(t), says: ruleWords(rule, t) }));\n"
        "console.log(JSON.stringify(said));"
    )
    run = subprocess.run(
        [node, "--input-type=module", "--eval", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _random_texts(n: int) -> list[str]:
    rng = random.Random(20261130)
    return ["".join(rng.choices(POOL, k=rng.randint(1, 24))) for _ in range(n)]


def test_the_portal_counts_each_different_word_once_as_the_gateway_does():
    texts = CASES + _random_texts(3000)

    portal = _portal_counts(texts)

    gateway = [Justification.of(text) for text in texts]
    differences = [
        (text, (said["words"], said["letters"]), (counted.words, counted.letters))
        for text, said, counted in zip(texts, portal, gateway, strict=True)
        if (said["words"], said["letters"]) != (counted.words, counted.letters)
    ]
    assert differences == []


def test_a_word_said_four_times_does_not_meet_the_override_rule_in_the_portal():
    (said,) = _portal_counts(["urgent urgent urgent urgent urgent urgent"])

    assert (said["words"], said["letters"]) == (1, 6)
    assert "Yours meets it" not in said["says"]
    assert said["says"].endswith("So far: 1 word, 6 letters.")
