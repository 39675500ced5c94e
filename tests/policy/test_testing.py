"""The Rego test runner: `opa test` semantics, the summary line CI reads, and the exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gateway.policy import PolicyTestOutcome, policy_test_main, run_policy_tests
from tests.factories import POLICY_DIR, write_bundle

POLICY = """package t.policy

import rego.v1

allow if input.role == "gp"
"""

TESTS = """package t.policy_test

import rego.v1

import data.t.policy

test_gp_allowed if {
	policy.allow with input.role as "gp"
}

test_dsl_allowed if {
	policy.allow with input.role as "school_dsl"
}

test_false := false

test_conflict := 1

test_conflict := 2

helper_not_a_test := true
"""


def outcomes(report):
    return {result.name: result.outcome for result in report.results}


def test_each_test_rule_is_judged_as_opa_test_would(tmp_path):
    write_bundle(tmp_path, {"policy.rego": POLICY, "policy_test.rego": TESTS})

    report = run_policy_tests(tmp_path)

    assert outcomes(report) == {
        "test_gp_allowed": PolicyTestOutcome.PASS,
        "test_dsl_allowed": PolicyTestOutcome.FAIL,
        "test_false": PolicyTestOutcome.FAIL,
        "test_conflict": PolicyTestOutcome.ERROR,
    }
    assert (report.passed, report.failed, report.errored) == (1, 2, 1)
    assert all(result.package == "t.policy_test" for result in report.results)
    assert all(result.duration >= 0 for result in report.results)


def test_tests_are_found_in_every_package_and_folder(tmp_path):
    write_bundle(
        tmp_path,
        {
            "a_test.rego": "package t.a\n\nimport rego.v1\n\ntest_a if true\n",
            "deep/b_test.rego": "package t.b.c\n\nimport rego.v1\n\ntest_b if true\n",
        },
    )

    report = run_policy_tests(tmp_path)

    assert [(result.package, result.name) for result in report.results] == [
        ("t.a", "test_a"),
        ("t.b.c", "test_b"),
    ]


def test_quiet_run_prints_only_what_needs_attention_then_the_summary(tmp_path, capsys):
    write_bundle(tmp_path, {"policy.rego": POLICY, "policy_test.rego": TESTS})

    exit_code = policy_test_main(tmp_path, verbose=False)

    lines = capsys.readouterr().out.splitlines()
    assert exit_code == 1
    assert not [line for line in lines if "test_gp_allowed" in line]
    assert [line for line in lines if "data.t.policy_test.test_dsl_allowed: FAIL" in line]
    assert [line for line in lines if "data.t.policy_test.test_conflict: ERROR" in line]
    assert lines[-1] == "1 passed, 2 failed, 1 errored"


def test_verbose_run_prints_passes_too(tmp_path, capsys):
    write_bundle(tmp_path, {"policy.rego": POLICY, "policy_test.rego": TESTS})

    policy_test_main(tmp_path, verbose=True)

    assert "policy_test.rego: data.t.policy_test.test_gp_allowed: PASS" in capsys.readouterr().out


def test_all_passing_exits_zero_with_a_plain_summary(tmp_path, capsys):
    write_bundle(tmp_path, {"a_test.rego": "package t.a\n\nimport rego.v1\n\ntest_a if true\n"})

    exit_code = policy_test_main(tmp_path, verbose=False)

    assert exit_code == 0
    assert capsys.readouterr().out.splitlines() == ["1 passed, 0 failed"]


def test_no_tests_is_a_failure(tmp_path, capsys):
    write_bundle(tmp_path, {"policy.rego": POLICY})

    exit_code = policy_test_main(tmp_path, verbose=False)

    lines = capsys.readouterr().out.splitlines()
    assert exit_code == 1
    assert "No tests" in lines[0]
    assert lines[-1] == "0 passed, 0 failed"


def test_bundle_that_does_not_compile_errors_every_test(tmp_path, capsys):
    broken = TESTS.replace("test_false := false", "test_false := ")
    write_bundle(tmp_path, {"policy.rego": POLICY, "policy_test.rego": broken})

    report = run_policy_tests(tmp_path)
    exit_code = policy_test_main(tmp_path, verbose=False)

    assert set(outcomes(report).values()) == {PolicyTestOutcome.ERROR}
    assert report.compile_error is not None
    assert re.search(r"policy_test\.rego:\d+:\d+: Syntax error", report.compile_error)
    assert exit_code == 1
    assert re.fullmatch(
        r"The policy does not compile, so none of its 4 tests ran: "
        r"policy_test\.rego:\d+:\d+: Syntax error.*",
        capsys.readouterr().out.splitlines()[-1],
    )


def test_a_syntax_error_is_shown_once_with_its_place_not_once_per_test(tmp_path, capsys):
    # The mistake from the outside review: a stray bracket in a comprehension.
    unclosed = (
        "package t.broken\n\nimport rego.v1\n\n"
        'rows := [{("record": record.id} |\n\tsome record in input.records\n]\n'
    )
    write_bundle(
        tmp_path, {"policy.rego": POLICY, "policy_test.rego": TESTS, "broken.rego": unclosed}
    )

    exit_code = policy_test_main(tmp_path, verbose=False)

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert exit_code == 1
    assert "ERROR" not in out
    assert str(tmp_path) not in out
    assert lines[0] == "The policy does not compile:"
    assert "  broken.rego:5:11: this is unclosed" in lines
    assert lines[-1] == (
        "The policy does not compile, so none of its 4 tests ran: "
        "broken.rego:5:11: this is unclosed"
    )
    assert len(lines) < 8


def test_data_that_is_not_json_is_named_by_its_file_in_the_bundle(tmp_path, capsys):
    write_bundle(tmp_path, {"policy.rego": POLICY, "policy_test.rego": TESTS})
    (tmp_path / "data.json").write_text('{"childlookup": {"roles": }}')

    exit_code = policy_test_main(tmp_path, verbose=False)

    err = capsys.readouterr().err
    assert exit_code == 2
    assert str(tmp_path) not in err
    assert err.startswith("The policy data file data.json is not valid JSON (line 1, column 27)")


def test_unreadable_bundle_exits_two_with_the_reason(tmp_path, capsys):
    exit_code = policy_test_main(tmp_path / "missing", verbose=False)

    assert exit_code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fifo", "exit_code", "last_line"),
    [
        ("pipe.rego", 0, "1 passed, 0 failed"),
        ("data.json", 2, "The policy data file data.json is not a regular file."),
    ],
)
def test_a_fifo_in_the_bundle_does_not_hang_the_run(tmp_path, fifo, exit_code, last_line):
    """Opening a FIFO waits for a writer for ever; a module that is no regular file is not read,
    as the live reloader does not copy it, and data that is none is refused."""
    write_bundle(tmp_path, {"a_test.rego": "package t.a\n\nimport rego.v1\n\ntest_a if true\n"})
    (tmp_path / fifo).unlink(missing_ok=True)
    os.mkfifo(tmp_path / fifo)

    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "policy", "test", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == exit_code
    assert (done.stdout + done.stderr).strip().splitlines()[-1] == last_line


def test_the_real_policies_pass(capsys):
    exit_code = policy_test_main(POLICY_DIR, verbose=False)

    assert exit_code == 0, capsys.readouterr().out
