"""Loading a policy bundle from disk, and refusing an incomplete one with a useful message."""

from __future__ import annotations

import json

import pytest

from connectors.protocol import FieldId
from gateway.policy import PolicyError, RuleRef, load_bundle
from tests.factories import POLICY_DIR, write_bundle


def test_real_bundle_loads_with_its_revision_modules_and_data():
    bundle = load_bundle(POLICY_DIR)

    assert bundle.revision == json.loads((POLICY_DIR / ".manifest").read_text())["revision"]
    assert {"plan.rego", "release.rego", "plan_test.rego"} <= set(bundle.modules)
    assert "childlookup" in bundle.data


def test_field_catalogue_is_exactly_the_protocols_field_ids():
    bundle = load_bundle(POLICY_DIR)

    assert set(bundle.data["childlookup"]["fields"]) == {field.value for field in FieldId}


def test_policy_modules_leave_tests_out():
    bundle = load_bundle(POLICY_DIR)

    assert "plan.rego" in bundle.policy_modules
    assert not [path for path in bundle.policy_modules if path.endswith("_test.rego")]


def test_modules_in_subdirectories_are_named_by_relative_path(tmp_path):
    write_bundle(tmp_path, {"nested/deeper/a.rego": "package t.a\n"})

    assert list(load_bundle(tmp_path).modules) == ["nested/deeper/a.rego"]


def test_rules_are_found_once_each_in_source_order(tmp_path):
    source = """# METADATA
# title: T
package t.a

import rego.v1

default allow := false

allow if {
	input.x
} else := false

allow if input.y

names contains name if some name in input.names

f(x) := x
"""
    write_bundle(tmp_path, {"a.rego": source})

    assert load_bundle(tmp_path).rules() == (
        RuleRef("a.rego", "t.a", "allow"),
        RuleRef("a.rego", "t.a", "names"),
        RuleRef("a.rego", "t.a", "f"),
    )


def test_rule_ref_names_the_rule_for_a_query_and_for_an_entrypoint():
    rule = RuleRef("plan.rego", "childlookup.plan", "decision")

    assert rule.ref == "data.childlookup.plan.decision"
    assert rule.path == "childlookup/plan/decision"


def test_missing_directory_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        (".manifest", None, r"manifest file .*\.manifest is missing"),
        (".manifest", '{"revision": "1",\n oops}', r"not valid JSON \(line 2, column 2\)"),
        (".manifest", "{}", "must give the revision"),
        (".manifest", '{"revision": ""}', "must give the revision"),
        (".manifest", '{"revision": 7}', "must give the revision"),
        ("data.json", None, r"policy data file .*data\.json is missing"),
        ("data.json", "{'single': 'quotes'}", r"policy data file .* is not valid JSON"),
        ("data.json", "[]", "must hold a JSON object"),
        pytest.param(
            "data.json",
            "[" * 200_000 + "]" * 200_000,
            r"policy data file data\.json nests too deeply",
            id="data.json-nested-200000-deep",
        ),
    ],
)
def test_incomplete_bundle_is_refused_saying_what_to_fix(tmp_path, file, content, reason):
    write_bundle(tmp_path, {})
    if content is None:
        (tmp_path / file).unlink()
    else:
        (tmp_path / file).write_text(content)

    with pytest.raises(PolicyError, match=reason):
        load_bundle(tmp_path)


@pytest.mark.parametrize(
    ("file", "reason"),
    [
        ("data.json", r"^The policy data file data\.json is not UTF-8 text \(byte 7\)\.$"),
        ("a.rego", r"^The policy module file a\.rego is not UTF-8 text \(byte 7\)\.$"),
    ],
)
def test_a_file_that_is_not_utf8_is_refused_by_its_name(tmp_path, file, reason):
    write_bundle(tmp_path, {})
    (tmp_path / file).write_bytes(b'{"a": "\xff"}')

    with pytest.raises(PolicyError, match=reason):
        load_bundle(tmp_path)
