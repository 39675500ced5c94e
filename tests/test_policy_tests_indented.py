"""Policy tests are found as OPA finds them: an indented `test_*` rule head is a test, run by
`policy test` and by the live reloader, so a draft whose indented test fails never goes live."""

from __future__ import annotations

import shutil

import pytest

from gateway.config import DEFAULT_POLICY_DIR
from gateway.policy import PolicyReloader, policy_test_main, run_policy_tests
from tests.factories import write_bundle

_POLICY = "package t.a\n\nimport rego.v1\n\nx := 1\n"


def _draft(tmp_path, tests: str):
    return write_bundle(
        tmp_path / "policies", {"a.rego": _POLICY, "a_test.rego": tests}, revision="draft-1"
    )


# A rule head indented is still a rule: OPA parses it, and `opa test` runs it and fails it.
_INDENTED_FAILING = (
    "package t.a_test\n\nimport rego.v1\n\n"
    "test_ok := true\n\n"
    "  test_x_is_two if {\n\tdata.t.a.x == 2\n}\n"
)


def test_an_indented_failing_test_is_run_and_fails(tmp_path, capsys):
    report = run_policy_tests(_draft(tmp_path, _INDENTED_FAILING))
    assert [result.name for result in report.results] == ["test_ok", "test_x_is_two"]
    assert not report.ok
    assert policy_test_main(tmp_path / "policies", verbose=False) == 1
    assert "test_x_is_two: FAIL" in capsys.readouterr().out


def test_a_test_rule_in_a_body_or_string_is_not_a_test(tmp_path):
    tests = (
        "package t.a_test\n\nimport rego.v1\n\n"
        "test_ok if {\n\ttest_local := data.t.a.x\n\ttest_local == 1\n}\n\n"
        'note := "# test_not_a_rule {"\n\n'
        "raw := `\n test_nor_this`\n"
    )
    report = run_policy_tests(_draft(tmp_path, tests))
    assert [result.name for result in report.results] == ["test_ok"]
    assert report.ok


@pytest.mark.anyio
async def test_live_reload_rejects_a_draft_whose_indented_test_fails(tmp_path):
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    installed: list[object] = []
    reloader = PolicyReloader(policies, installed.append, interval_s=0.1)
    (policies / "extra_test.rego").write_text(
        "package childlookup.extra_test\n\nimport rego.v1\n\n"
        "  test_gp_never_sees_sensitive_services if {\n"
        '\tnot "sensitive_service_details" in data.childlookup.roles.gp.grants.DIRECT_CARE.fields\n'
        "\tfalse\n}\n"
    )
    assert await reloader.check() is False
    assert installed == []
