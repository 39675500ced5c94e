"""The one failure the policy package raises.

Every way a decision can go wrong - a bundle that will not load or compile, an evaluation error,
an undefined or malformed answer - ends in `PolicyError`, so the gateway needs a single `except`
to fail closed and release nothing.
"""

from __future__ import annotations


class PolicyError(Exception):
    """The policy could not give a usable answer; the caller must treat it as a refusal."""


class PolicyCompileError(PolicyError):
    """The bundle does not parse or compile; `problems` says where and why, one
    `file:line:col: message` each, files named relative to the policy directory."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__(f"The policy does not compile: {'; '.join(problems)}")
        self.problems = problems
