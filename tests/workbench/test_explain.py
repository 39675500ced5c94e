"""`childlookup policy explain`: every catalogued field, released or withheld, reason and rule."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from connectors.protocol import FieldId
from gateway.cli import main
from gateway.policy import load_bundle
from gateway.workbench.explain import (
    PLAN_DENIAL_RULE,
    PLAN_FIELDS_RULE,
    RELEASE_RULE,
    WITHHOLDING_RULES,
)
from tests.factories import POLICY_DIR
from tests.processes import CLI

POLICY = [*CLI, "policy"]

LOCATION = {"address", "school", "gp_practice", "carers", "involvements"}
IDENTITY = {"nhs_number", "name", "date_of_birth", "sex"}


def explain_json(capsys, *args: str) -> dict:
    code = main(["policy", "explain", "--dir", str(POLICY_DIR), "--json", *args])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def by_field(explanation: dict) -> dict[str, tuple[str, str | None]]:
    return {row["field"]: (row["decision"], row["reason"]) for row in explanation["fields"]}


def test_shielded_child_shows_identity_only_with_the_reason_for_everything_else(capsys):
    explanation = explain_json(
        capsys, "--role", "health_visitor", "--purpose", "DIRECT_CARE", "--shielded", "--sensitive"
    )

    fields = by_field(explanation)
    assert explanation["permitted"] is True
    assert explanation["revision"] == load_bundle(POLICY_DIR).revision
    assert {f for f, (decision, _) in fields.items() if decision == "released"} == IDENTITY
    assert {fields[f] for f in LOCATION} == {("withheld", "SHIELDED")}
    # Every field but identity, for the shield's reason: a shielded child's sensitive service is
    # not told by a reason of its own.
    assert fields["sensitive_service_details"] == ("withheld", "SHIELDED")
    assert fields["child_protection_plan"] == ("withheld", "SHIELDED")


def test_each_row_names_the_rule_that_decided_it(capsys):
    explanation = explain_json(
        capsys, "--role", "school_dsl", "--purpose", "SAFEGUARDING_ENQUIRY", "--restricted"
    )

    rules = {row["field"]: row["rule"] for row in explanation["fields"]}
    assert rules["name"] == RELEASE_RULE
    assert rules["school"] == "data.childlookup.release.shield_reason"
    assert rules["child_in_need"] == "data.childlookup.release.shield_reason"


def test_a_clear_child_shows_what_the_grant_names(capsys):
    fields = by_field(
        explain_json(capsys, "--role", "school_dsl", "--purpose", "SAFEGUARDING_ENQUIRY")
    )

    assert fields["school"] == ("released", None)
    assert fields["address"] == ("withheld", "NOT_PERMITTED_FOR_ROLE")
    assert "sensitive_service_details" not in fields


def test_unknown_shield_status_withholds_location(capsys):
    fields = by_field(
        explain_json(
            capsys,
            "--role",
            "social_worker",
            "--purpose",
            "SAFEGUARDING_ENQUIRY",
            "--shield-unknown",
        )
    )

    assert {fields[f] for f in LOCATION} == {("withheld", "SHIELD_STATUS_UNKNOWN")}


def test_a_refused_lookup_gives_the_denial_and_withholds_every_field(capsys):
    explanation = explain_json(capsys, "--role", "gp", "--purpose", "CHILD_PROTECTION_ENQUIRY")

    assert explanation["permitted"] is False
    assert explanation["denial"] == "PURPOSE_NOT_PERMITTED"
    assert explanation["denial_rule"] == PLAN_DENIAL_RULE
    assert {(row["decision"], row["reason"]) for row in explanation["fields"]} == {
        ("withheld", "PURPOSE_NOT_PERMITTED")
    }


def test_a_missing_justification_is_the_denial_only_when_asked_for(capsys):
    given = explain_json(capsys, "--role", "social_worker", "--purpose", "CHILD_PROTECTION_ENQUIRY")
    missing = explain_json(
        capsys,
        "--role",
        "social_worker",
        "--purpose",
        "CHILD_PROTECTION_ENQUIRY",
        "--no-justification",
    )

    assert given["denial"] is None
    assert missing["denial"] == "JUSTIFICATION_REQUIRED"


def test_every_rule_the_explanation_names_is_defined_in_the_bundle():
    defined = {rule.ref for rule in load_bundle(POLICY_DIR).rules()}
    named = {PLAN_DENIAL_RULE, PLAN_FIELDS_RULE, RELEASE_RULE, *WITHHOLDING_RULES.values()}

    assert named - defined == set()


def test_the_table_lists_every_catalogued_field_and_a_summary():
    done = subprocess.run(
        [
            *POLICY,
            "explain",
            "--dir",
            str(POLICY_DIR),
            "--role",
            "ed_clinician",
            "--purpose",
            "DIRECT_CARE",
            "--sensitive",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ed_clinician, DIRECT_CARE - child: sensitive service involvement"
    start = next(index for index, line in enumerate(lines) if line.startswith("field"))
    rows = lines[start + 1 : lines.index("", start)]
    assert lines[start].split() == ["field", "category", "decision", "reason", "rule"]
    assert [row.split()[0] for row in rows] == [field.value for field in FieldId]
    assert lines[-1] == "9 released, 5 withheld"


def test_a_policy_that_does_not_compile_is_a_clear_error(tmp_path, capsys):
    shutil.copytree(POLICY_DIR, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "plan.rego").open("a") as plan:
        plan.write("\nbroken := {\n")

    code = main(["policy", "explain", "--dir", str(tmp_path), "--role", "gp", "--purpose", "X"])

    assert code == 2
    assert "does not compile" in capsys.readouterr().err


@pytest.mark.parametrize("missing", [["--role", "gp"], ["--purpose", "DIRECT_CARE"]])
def test_role_and_purpose_are_required(missing):
    with pytest.raises(SystemExit):
        main(["policy", "explain", *missing])


@pytest.mark.parametrize(
    ("option", "value", "known"),
    [
        ("--role", "nonsense", "health_visitor"),
        ("--role", "auditor", "social_worker"),
        ("--purpose", "direct_care", "DIRECT_CARE"),
        ("--purpose", "CURIOSITY", "EMERGENCY_OVERRIDE"),
    ],
)
def test_an_uncatalogued_role_or_purpose_is_an_error_listing_the_catalogued_ones(
    capsys, option, value, known
):
    scenario = {"--role": "health_visitor", "--purpose": "DIRECT_CARE", option: value}
    args = [item for pair in scenario.items() for item in pair]

    code = main(["policy", "explain", "--dir", str(POLICY_DIR), *args])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert f"'{value}'" in captured.err
    assert "data.json" in captured.err
    assert known in captured.err
