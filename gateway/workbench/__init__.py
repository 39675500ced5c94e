"""The policy officers' workbench: see what a policy does before it goes live.

`explain` answers what one role, for one purpose, sees of a child and why; `diff` compares two
versions (directories or git revisions) by who gains or loses which field; `archive` packs the
bundle for OPA servers. None of it runs in the gateway: it reaches the policy only through
gateway.policy's public names, as the gateway does.
"""

from gateway.workbench.archive import bundle_main, write_bundle_archive, write_whole
from gateway.workbench.diff import diff_main
from gateway.workbench.explain import (
    Catalogue,
    Explanation,
    FieldOutcome,
    Scenario,
    Situation,
    explain,
    explain_main,
)

__all__ = [
    "Catalogue",
    "Explanation",
    "FieldOutcome",
    "Scenario",
    "Situation",
    "bundle_main",
    "diff_main",
    "explain",
    "explain_main",
    "write_bundle_archive",
    "write_whole",
]
