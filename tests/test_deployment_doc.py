"""docs/deployment.md's settings tables are the operators' reference: they name every setting."""

import re

from gateway.config import REPO_ROOT, Settings


def test_the_deployment_guide_lists_every_setting_and_no_other():
    text = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `CHILDLOOKUP_([A-Z0-9_]+)` \|", text, flags=re.M))
    assert listed == {name.upper() for name in Settings.model_fields}
