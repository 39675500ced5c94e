"""Gaps between what a policy officer tests or reviews and what goes live: rules hidden in test
modules, a version deployed while the gateway starts, and changes `policy diff` did not report.
Real policy directories, the real evaluator and the real reloader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.policy import (
    PolicyEngine,
    PolicyError,
    PolicyReloader,
    RegoPolicyEngine,
    ReleaseChild,
    load_engine,
    run_policy_tests,
)
from gateway.workbench import explain_main
from gateway.workbench.diff import diff_main
from gateway.workbench.explain import Scenario
from tests.factories import POLICY_DIR, release_input

SHIELDED = ReleaseChild(
    shielded=True, restricted=False, shield_status_known=True, restriction_status_known=True
)
IS_SHIELDED = "is_shielded if not input.child.shielded == false\n"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return shutil.copytree(POLICY_DIR, tmp_path / "policies")


def _move_is_shielded_into_a_test_module(policies: Path) -> None:
    """A policy officer's edit: the rule deciding that a child is shielded moves into a test
    file, in the policy's own package. Every test still passes (the tests see the rule)."""
    release = policies / "release.rego"
    source = release.read_text()
    assert IS_SHIELDED in source
    release.write_text(source.replace(IS_SHIELDED, ""))
    (policies / "shielding_test.rego").write_text(
        f"package childlookup.release\n\nimport rego.v1\n\n{IS_SHIELDED}"
    )


# --- 1. tests are vetted with rules the served policy never has -------------------------------


@pytest.mark.anyio
async def test_a_rule_moved_into_a_test_module_never_goes_live_releasing_a_shielded_child(policies):
    """Live reload vets a change by its tests, which compile test modules with the policy; the
    gateway then serves the policy modules alone. A rule that lives only in a test module is
    defined when the tests pass and undefined when the gateway decides."""
    installed: list[PolicyEngine] = []
    reloader = PolicyReloader(policies, installed.append, interval_s=0.1)
    _move_is_shielded_into_a_test_module(policies)

    went_live = await reloader.check()

    leaked: list[str] = []
    for engine in installed:
        request = release_input("social_worker", "SAFEGUARDING_ENQUIRY", SHIELDED)
        decision = await engine.release(request)
        leaked += [item.field.value for item in decision.released if item.field.value == "address"]
    assert leaked == [], "a shielded child's address is released by the reloaded policy"
    assert went_live is False
    assert installed == []


def test_a_bundle_whose_test_module_shares_a_policy_package_is_refused_everywhere(policies):
    _move_is_shielded_into_a_test_module(policies)

    with pytest.raises(PolicyError, match=r"shielding_test\.rego"):
        RegoPolicyEngine.from_directory(policies)
    with pytest.raises(PolicyError, match=r"shielding_test\.rego"):
        run_policy_tests(policies)


def test_a_policy_module_reading_a_test_package_is_refused(policies):
    (policies / "helpers_test.rego").write_text(
        "package childlookup.helpers_test\n\nimport rego.v1\n\nlifted := true\n\n"
        "test_lifted if lifted\n"
    )
    release = policies / "release.rego"
    release.write_text(
        release.read_text().replace(
            "is_shielded if not input.child.shielded == false",
            "is_shielded if {\n\tnot input.child.shielded == false\n"
            "\tnot data.childlookup.helpers_test.lifted\n}",
        )
    )

    with pytest.raises(PolicyError, match="helpers_test"):
        RegoPolicyEngine.from_directory(policies)


def test_the_shipped_policy_keeps_loading():
    assert RegoPolicyEngine.from_directory(POLICY_DIR).revision


# --- 2. `policy diff` says "no changes" when owners stop being told -----------------------------


def _edit_data(policies: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data_file = policies / "data.json"
    data = json.loads(data_file.read_text())
    edit(data["childlookup"])
    data_file.write_text(json.dumps(data, indent=1))


def test_diff_reports_a_change_that_stops_telling_owners_of_a_protection_plan(policies, capsys):
    """DOMAIN.md: when a child on a protection plan or looked after is looked up, the local
    authority is told (as CP-IS does). A change that stops every such notice, and every
    break-glass notice to record holders, is a change of what the policy decides; the reviewer's
    tool must not call it "no changes" and exit 0."""
    _edit_data(
        policies,
        lambda catalogue: catalogue["owner_notification"].update(indicators={}, purposes={}),
    )

    code = diff_main(str(POLICY_DIR), str(policies), POLICY_DIR, "text")

    out = capsys.readouterr().out
    assert "no changes" not in out
    assert "CHILD_PROTECTION_PLAN" in out
    assert "EMERGENCY_OVERRIDE" in out
    assert code == 1


def test_diff_json_names_the_notifications_a_change_stops(policies, capsys):
    _edit_data(
        policies,
        lambda catalogue: catalogue["owner_notification"]["indicators"].pop("looked_after"),
    )

    assert diff_main(str(POLICY_DIR), str(policies), POLICY_DIR, "json") == 1

    document = json.loads(capsys.readouterr().out)
    lost = {
        (change["role"], change["purpose"], reason)
        for change in document["notifications"]
        for reason in change["before"]
        if reason not in change["after"]
    }
    assert ("social_worker", "SAFEGUARDING_ENQUIRY", "LOOKED_AFTER") in lost
    assert not [reason for *_, reason in lost if reason != "LOOKED_AFTER"]
    assert document["counts"]["notifications"] == len(document["notifications"])


def test_an_unchanged_policy_still_diffs_to_no_changes(capsys):
    assert diff_main(str(POLICY_DIR), str(POLICY_DIR), POLICY_DIR, "text") == 0
    assert "no changes" in capsys.readouterr().out


# --- 3. the workbench crashes on a catalogue of the wrong shape ----------------------------------


def _field_entry_as_a_string(catalogue) -> None:  # type: ignore[no-untyped-def]
    catalogue["fields"]["early_help"] = "indicator"


@pytest.mark.parametrize(
    "edit",
    [
        _field_entry_as_a_string,
        lambda catalogue: catalogue.update(fields=["nhs_number"]),
    ],
    ids=["field-entry-a-string", "fields-a-list"],
)
def test_a_catalogue_of_the_wrong_shape_is_exit_2_with_one_line_not_a_traceback(
    policies, capsys, edit
):
    """`policy diff` exits 0 no changes, 1 changes, 2 a version could not be read: a crash
    (traceback, exit 1) reads as "something changed" in CI, and explain's promise is exit 2."""
    _edit_data(policies, edit)

    assert diff_main(str(POLICY_DIR), str(policies), POLICY_DIR, "text") == 2
    assert explain_main(policies, Scenario("gp", "DIRECT_CARE"), as_json=False) == 2
    err = capsys.readouterr().err
    assert "data.json" in err
    assert "Traceback" not in err


# --- 4. a deploy landing while the gateway starts is never taken up -----------------------------


@pytest.mark.anyio
async def test_a_change_landing_between_loading_the_policy_and_starting_the_reloader_goes_live(
    policies,
):
    """gateway.components loads the policy in build_components and starts the reloader later, in
    the app's lifespan. The reloader took the directory as it found it then as "what is serving",
    so a version deployed in between was never vetted nor installed: that host kept deciding by
    the old revision, silently, until the next change."""
    serving = load_engine(policies)  # build_components
    manifest = policies / ".manifest"
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "revision": "2099-01-01.1"})
    )
    installed: list[PolicyEngine] = []
    reloader = PolicyReloader(  # the lifespan, told what build_components compiled
        policies, installed.append, interval_s=0.1, serving=serving.content
    )

    assert await reloader.check() is True
    assert [engine.revision.split("@")[0] for engine in installed] == ["2099-01-01.1"]
    assert not serving.revision.startswith("2099-01-01.1")


@pytest.mark.anyio
async def test_a_symlink_swap_deploy_landing_while_the_gateway_starts_goes_live(tmp_path, policies):
    """deployment.md: switch the whole directory at once, "for example a new directory and a
    symlink swap"."""
    live = tmp_path / "live"
    live.symlink_to(policies)
    serving = load_engine(live)  # build_components
    next_version = shutil.copytree(policies, tmp_path / "next")
    manifest = next_version / ".manifest"
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "revision": "2099-02-02.1"})
    )
    swap = tmp_path / "swap"
    swap.symlink_to(next_version)
    swap.replace(live)
    installed: list[PolicyEngine] = []
    reloader = PolicyReloader(  # the lifespan, told what build_components compiled
        live, installed.append, interval_s=0.1, serving=serving.content
    )

    assert await reloader.check() is True
    assert [engine.revision.split("@")[0] for engine in installed] == ["2099-02-02.1"]


# --- 5. `policy diff` says "no changes" when a shielding authority stops being asked ------------

SHIELD_AUTHORITY_ASKED = "is_worth_asking(source) if source.shield_authority == true\n"


def test_diff_reports_a_change_that_stops_asking_the_shielding_authority(policies, capsys):
    """The gateway takes shielding as known when every shield authority it asked answered
    (gateway.decide.child_flags): one the plan no longer asks is not doubt, it is absent. This
    change passes every shipped Rego test, and `policy diff` - the reviewer's view of it - said
    "no changes" and exited 0."""
    plan = policies / "plan.rego"
    assert SHIELD_AUTHORITY_ASKED in plan.read_text()
    plan.write_text(plan.read_text().replace(SHIELD_AUTHORITY_ASKED, ""))

    code = diff_main(str(POLICY_DIR), str(policies), POLICY_DIR, "json")

    document = json.loads(capsys.readouterr().out)
    stopped = {
        (change["role"], change["purpose"])
        for change in document["sources"]
        if "shield_authority" in change["before"] and "shield_authority" not in change["after"]
    }
    assert ("health_visitor", "DIRECT_CARE") in stopped
    assert code == 1
