"""docs/policy-decisions.md's release input example is one the gateway could send: a policy
officer tries the policy on it, and a stale example (one missing `restriction_status_known`, which
the policy reads as false) shows them an output the policy would not give."""

import json
import re
from pathlib import Path

from gateway.policy import ReleaseInput

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy-decisions.md"


def test_the_documented_release_input_is_a_valid_release_input():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("Decides, per record and field") :]
    example = re.search(r"Input:\s*```json\n(.*?)```", section, re.S).group(1)
    ReleaseInput.model_validate(json.loads(example))
