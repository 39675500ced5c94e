"""What a check finds, one line each, and the run's tally."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    PASS = "PASS"  # noqa: S105 - an outcome, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Verdict:
    """A check's finding: passed, or failed or skipped with the reason why."""

    outcome: Outcome
    reason: str = ""

    @classmethod
    def passed(cls) -> Verdict:
        return cls(Outcome.PASS)

    @classmethod
    def failed(cls, reason: str) -> Verdict:
        return cls(Outcome.FAIL, reason)

    @classmethod
    def skipped(cls, reason: str) -> Verdict:
        return cls(Outcome.SKIP, reason)


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    def line(self) -> str:
        """`PASS name`, or `FAIL name: why` / `SKIP name: why`."""
        if self.verdict.outcome is Outcome.PASS:
            return f"PASS {self.name}"
        return f"{self.verdict.outcome} {self.name}: {self.verdict.reason}"


@dataclass(frozen=True)
class Report:
    results: tuple[CheckResult, ...]

    def count(self, outcome: Outcome) -> int:
        return sum(result.outcome is outcome for result in self.results)

    def named(self, outcome: Outcome) -> set[str]:
        return {result.name for result in self.results if result.outcome is outcome}

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAIL) == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        """`N passed, N failed`, and how many were skipped when any were."""
        text = f"{self.count(Outcome.PASS)} passed, {self.count(Outcome.FAIL)} failed"
        skipped = self.count(Outcome.SKIP)
        return f"{text}, {skipped} skipped" if skipped else text
