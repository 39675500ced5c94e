"""Running a bundle's Rego tests the way `opa test` does, without OPA.

Policy officers review a change by running its tests, so the results must mean what they mean in
OPA: every rule named `test_*` in any package is one test; it passes only when it evaluates to true;
undefined or false is a failure; an evaluation error is an error. Tests run in-process on rego-cpp,
which is laxer than OPA (it accepts pre-1.0 syntax and unknown functions) and ends the process on
`with input as {...}` (see gateway.policy.interpreter), so a green run here is not a substitute for
OPA's own compiler: tests/policy/test_parity.py runs every test under real OPA as well.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from regopy import Bundle, Interpreter, RegoError

from gateway.policy.bundle import PolicyBundle, RuleRef, load_bundle
from gateway.policy.errors import PolicyCompileError, PolicyError
from gateway.policy.interpreter import answer_text, compile_bundle, new_interpreter

TEST_PREFIX: Final = "test_"
_TRUE: Final = "true"


class PolicyTestOutcome(StrEnum):
    PASS = "PASS"  # noqa: S105 - a test outcome, not a password
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class PolicyTestResult:
    test: RuleRef
    outcome: PolicyTestOutcome
    duration: float
    """Seconds spent evaluating the test."""
    message: str | None = None

    @property
    def package(self) -> str:
        return self.test.package

    @property
    def name(self) -> str:
        return self.test.name


@dataclass(frozen=True)
class PolicyTestReport:
    results: tuple[PolicyTestResult, ...]
    compile_error: str | None = None
    """Why no test could run, when the bundle itself does not compile."""
    compile_problems: tuple[str, ...] = ()
    """The same, one `file:line:col: message` per problem, as rego-cpp reports them."""

    @property
    def passed(self) -> int:
        return self._count(PolicyTestOutcome.PASS)

    @property
    def failed(self) -> int:
        return self._count(PolicyTestOutcome.FAIL)

    @property
    def errored(self) -> int:
        return self._count(PolicyTestOutcome.ERROR)

    @property
    def ok(self) -> bool:
        """True only when there was something to pass: zero tests prove nothing."""
        return bool(self.results) and self.passed == len(self.results)

    def summary(self) -> str:
        """The closing line; for a bundle that does not compile it names the first problem, so
        the one line the reloader logs says where to look."""
        if self.compile_problems:
            return (
                f"The policy does not compile, so none of its {len(self.results)} tests ran: "
                f"{self.compile_problems[0]}"
            )
        line = f"{self.passed} passed, {self.failed} failed"
        return f"{line}, {self.errored} errored" if self.errored else line

    def _count(self, outcome: PolicyTestOutcome) -> int:
        return sum(result.outcome is outcome for result in self.results)


def run_policy_tests(directory: Path) -> PolicyTestReport:
    """Run every test in the bundle at `directory`; PolicyError if the bundle cannot be read."""
    bundle = load_bundle(directory)
    tests = policy_tests(bundle)
    if not tests:
        return PolicyTestReport(results=())
    try:
        compiled = compile_bundle(bundle, bundle.modules, [test.path for test in tests])
    except PolicyCompileError as error:
        return PolicyTestReport(
            results=tuple(PolicyTestResult(test, PolicyTestOutcome.ERROR, 0.0) for test in tests),
            compile_error=str(error),
            compile_problems=error.problems,
        )
    interpreter = new_interpreter()
    return PolicyTestReport(results=tuple(_run(interpreter, compiled, test) for test in tests))


def policy_tests(bundle: PolicyBundle) -> list[RuleRef]:
    """The bundle's tests: every rule named `test_*`, in any package."""
    return [rule for rule in bundle.rules() if rule.name.startswith(TEST_PREFIX)]


def _run(interpreter: Interpreter, compiled: Bundle, test: RuleRef) -> PolicyTestResult:
    started = time.perf_counter()
    try:
        text = answer_text(interpreter.query_bundle_entrypoint(compiled, test.path))
    except (PolicyError, RegoError, ValueError) as error:
        return PolicyTestResult(
            test, PolicyTestOutcome.ERROR, time.perf_counter() - started, str(error)
        )
    duration = time.perf_counter() - started
    if text == _TRUE:
        return PolicyTestResult(test, PolicyTestOutcome.PASS, duration)
    return PolicyTestResult(
        test, PolicyTestOutcome.FAIL, duration, "undefined" if text is None else f"= {text}"
    )


def policy_test_main(directory: Path, verbose: bool) -> int:
    """Print test results (all of them when verbose, else only the ones needing attention) and a
    closing `N passed, N failed` line; the exit code is 0 only when at least one test ran and all
    passed. A bundle that does not compile runs no test: its problems are printed once each, not
    once per test, and the closing line names the first."""
    try:
        report = run_policy_tests(directory)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    if report.compile_problems:
        print("The policy does not compile:")
        for problem in report.compile_problems:
            print(f"  {problem}")
    else:
        for result in report.results:
            if verbose or result.outcome is not PolicyTestOutcome.PASS:
                print(_describe(result))
    if not report.results:
        print(f"No tests (rules named {TEST_PREFIX}*) found in {directory}.")
    print(report.summary())
    return 0 if report.ok else 1


def _describe(result: PolicyTestResult) -> str:
    line = (
        f"{result.test.module}: {result.test.ref}: {result.outcome} "
        f"({result.duration * 1000:.1f} ms)"
    )
    return f"{line}\n    {result.message}" if result.message else line
