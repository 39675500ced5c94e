"""`childlookup policy diff`: only what a policy change changes, between directories or commits."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.factories import POLICY_DIR


def copy_policies(into: Path, revision: str = "next") -> Path:
    shutil.copytree(POLICY_DIR, into)
    manifest = json.loads((into / ".manifest").read_text())
    (into / ".manifest").write_text(json.dumps({**manifest, "revision": revision}))
    return into


def edit_data(directory: Path, change: Any) -> None:
    data = json.loads((directory / "data.json").read_text())
    change(data["childlookup"])
    (directory / "data.json").write_text(json.dumps(data, indent=2))


def give_police_the_address_below_section_47(catalogue: dict) -> None:
    catalogue["roles"]["police_safeguarding"]["grants"]["SAFEGUARDING_ENQUIRY"]["fields"].append(
        "address"
    )


def diff(capsys, *args: str) -> tuple[int, str]:
    code = main(["policy", "diff", *args])
    return code, capsys.readouterr().out


def test_identical_policies_have_no_changes_and_exit_0(tmp_path, capsys):
    code, out = diff(capsys, str(POLICY_DIR), str(copy_policies(tmp_path / "same")))

    assert code == 0
    assert out.splitlines()[-1] == "no changes"


def test_a_widened_grant_is_one_gain_in_the_situations_where_it_shows(tmp_path, capsys):
    new = copy_policies(tmp_path / "new")
    edit_data(new, give_police_the_address_below_section_47)

    code, out = diff(capsys, str(POLICY_DIR), str(new))

    assert code == 1
    lines = out.splitlines()
    group = lines.index("  police_safeguarding, SAFEGUARDING_ENQUIRY")
    assert lines[group + 1].split()[:2] == ["+", "address"]
    assert "was withheld: NOT_PERMITTED_FOR_PURPOSE" in lines[group + 1]
    assert lines[group + 1].endswith(
        "[not shielded, not restricted, shield status known, restriction status known]"
    )
    assert lines[-1] == (
        "0 lookup changes; fields: 1 gained, 0 lost, 0 withheld for another reason"
    )


def test_json_lists_each_change_with_before_after_and_conditions(tmp_path, capsys):
    new = copy_policies(tmp_path / "new", revision="r2")
    edit_data(new, give_police_the_address_below_section_47)

    code, out = diff(capsys, str(POLICY_DIR), str(new), "--json")

    document = json.loads(out)
    assert code == 1
    assert document["new"]["revision"] == "r2"
    catalogue = json.loads((POLICY_DIR / "data.json").read_text())["childlookup"]
    roles, purposes = len(catalogue["roles"]), len(catalogue["purposes"])
    assert document["scenarios"] == roles * purposes * 32  # every role x purpose x situation
    assert document["fields"] == [
        {
            "role": "police_safeguarding",
            "purpose": "SAFEGUARDING_ENQUIRY",
            "field": "address",
            "change": "gained",
            "before": "NOT_PERMITTED_FOR_PURPOSE",
            "after": "released",
            "when": ["not shielded, not restricted, shield status known, restriction status known"],
        }
    ]


def test_a_withdrawn_grant_is_a_refused_lookup_and_every_field_lost(tmp_path, capsys):
    new = copy_policies(tmp_path / "new")
    edit_data(new, lambda catalogue: catalogue["roles"]["gp"]["grants"].pop("DIRECT_CARE"))

    code, out = diff(capsys, str(POLICY_DIR), str(new), "--json")

    document = json.loads(out)
    assert code == 1
    assert document["refusals"] == [
        {
            "role": "gp",
            "purpose": "DIRECT_CARE",
            "justified": None,
            "before": None,
            "after": "PURPOSE_NOT_PERMITTED",
        }
    ]
    lost = {change["field"] for change in document["fields"] if change["change"] == "lost"}
    assert {"nhs_number", "address", "looked_after"} <= lost
    assert {change["change"] for change in document["fields"]} == {"lost"}


def test_a_new_justification_requirement_refuses_only_unjustified_lookups(tmp_path, capsys):
    new = copy_policies(tmp_path / "new")
    edit_data(
        new,
        lambda catalogue: catalogue["purposes"]["DIRECT_CARE"].update(justification_required=True),
    )

    code, out = diff(capsys, str(POLICY_DIR), str(new), "--markdown")

    assert code == 1
    assert "| gp | DIRECT_CARE | none | permitted | JUSTIFICATION_REQUIRED |" in out
    assert "fields: 0 gained, 0 lost" in out


def test_a_reordered_shield_reason_is_reported_as_withheld_for_another_reason(tmp_path, capsys):
    new = copy_policies(tmp_path / "new")
    release = (new / "release.rego").read_text()
    (new / "release.rego").write_text(
        release.replace('"SHIELDED" if {\n\tis_shielded', '"SHIELDED" if {\n\tis_shielded\n\tfalse')
    )

    code, out = diff(capsys, str(POLICY_DIR), str(new), "--json")

    changes = json.loads(out)["fields"]
    kinds = {(c["change"], c["before"], c["after"]) for c in changes}
    [social_worker_address] = [
        c
        for c in changes
        if (c["role"], c["purpose"], c["field"])
        == ("social_worker", "SAFEGUARDING_ENQUIRY", "address")
        and c["after"] == "released"
    ]
    assert code == 1
    assert ("reason changed", "SHIELDED", "RESTRICTED") in kinds
    assert ("reason changed", "SHIELDED", "SHIELD_STATUS_UNKNOWN") in kinds
    assert social_worker_address["when"] == [
        "shielded, not restricted, shield status known, restriction status known"
    ]


GIT = shutil.which("git")


def git(cwd: Path, *args: str) -> None:
    assert GIT is not None
    subprocess.run(
        [GIT, "-c", "user.name=Test", "-c", "user.email=test@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_git_revisions_are_compared_without_touching_the_working_tree(tmp_path, capsys):
    repo = tmp_path / "repo"
    policies = copy_policies(repo / "policies", revision="committed")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "policy")
    edit_data(policies, give_police_the_address_below_section_47)
    git(repo, "commit", "-q", "-am", "police see the address")

    code, out = diff(capsys, "HEAD~1", "HEAD", "--dir", str(policies), "--json")

    document = json.loads(out)
    assert code == 1
    assert [change["field"] for change in document["fields"]] == ["address"]
    assert (document["old"]["label"], document["new"]["label"]) == ("HEAD~1", "HEAD")
    assert "address" in (policies / "data.json").read_text()


def test_a_name_that_is_neither_a_directory_nor_a_revision_is_a_clear_error(capsys):
    code = main(["policy", "diff", "no-such-revision-xyz", str(POLICY_DIR)])

    assert code == 2
    assert "neither a directory nor a git revision" in capsys.readouterr().err
