"""Live policy reload, against real policy directories and the real evaluator in a child process."""

import asyncio
import json
import logging
import shutil
import tempfile
import time

import httpx
import pytest

from gateway.config import DEFAULT_POLICY_DIR
from gateway.policy import PolicyReloader, load_engine
from tests.factories import NHS, health_record, write_bundle
from tests.stack import reference_stack


@pytest.fixture
def policies(tmp_path):
    return shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")


def _bump_revision(policies, revision):
    manifest = policies / ".manifest"
    data = json.loads(manifest.read_text())
    data["revision"] = revision
    manifest.write_text(json.dumps(data))


def _reloader(policies):
    installed = []
    return PolicyReloader(policies, installed.append, interval_s=0.1), installed


@pytest.mark.anyio
async def test_an_unchanged_directory_installs_nothing(policies):
    reloader, installed = _reloader(policies)
    assert await reloader.check() is None
    assert installed == []


@pytest.mark.anyio
async def test_a_good_change_goes_live_with_a_revision_naming_its_content(policies):
    reloader, installed = _reloader(policies)
    _bump_revision(policies, "2099-01-01.1")
    assert await reloader.check() is True
    assert installed[0].revision.startswith("2099-01-01.1@")
    assert await reloader.check() is None


@pytest.mark.anyio
async def test_the_same_manifest_with_different_rules_gets_a_different_revision(policies):
    before = load_engine(policies).revision
    data = policies / "data.json"
    data.write_text(data.read_text().replace('"description": "', '"description": "Edited. ', 1))
    after = load_engine(policies).revision
    assert before.split("@")[0] == after.split("@")[0]
    assert before != after


@pytest.mark.anyio
async def test_a_syntax_error_is_rejected_and_not_retried_until_the_next_change(policies):
    reloader, installed = _reloader(policies)
    (policies / "release.rego").write_text("package childlookup.release\n\ndecision := {\n")
    assert await reloader.check() is False
    assert await reloader.check() is None
    assert installed == []


def _rejections(caplog) -> list[str]:
    return [
        record.context["reason"]
        for record in caplog.records
        if getattr(record, "event", None) == "policy_rejected"
    ]


@pytest.mark.anyio
async def test_a_syntax_error_is_logged_with_its_file_line_and_message(policies, caplog):
    reloader, _ = _reloader(policies)
    # The mistake from the outside review: a stray bracket in a comprehension.
    (policies / "broken.rego").write_text(
        "package childlookup.broken\n\nimport rego.v1\n\n"
        'rows := [{("record": record.id} |\n\tsome record in input.records\n]\n'
    )

    with caplog.at_level(logging.ERROR, logger="childlookup.policy"):
        assert await reloader.check() is False

    (reason,) = _rejections(caplog)
    assert reason.endswith(" tests ran: broken.rego:5:11: this is unclosed")
    assert "childlookup-policy-" not in reason


@pytest.mark.anyio
async def test_data_that_is_not_json_is_logged_by_its_name_not_the_snapshot_path(policies, caplog):
    reloader, _ = _reloader(policies)
    (policies / "data.json").write_text('{"childlookup": {"roles": }}')

    with caplog.at_level(logging.ERROR, logger="childlookup.policy"):
        assert await reloader.check() is False

    (reason,) = _rejections(caplog)
    assert "data.json is not valid JSON (line 1, column 27)" in reason
    assert "childlookup-policy-" not in reason
    assert tempfile.gettempdir() not in reason


@pytest.mark.anyio
async def test_a_policy_that_passes_its_tests_but_cannot_serve_names_no_snapshot(policies, caplog):
    reloader, _ = _reloader(policies)
    for name, old, new in (
        ("release.rego", "\ndecision := ", "\nrenamed_decision := "),
        ("release_test.rego", "release.decision ", "release.renamed_decision "),
    ):
        module = policies / name
        module.write_text(module.read_text().replace(old, new))

    with caplog.at_level(logging.ERROR, logger="childlookup.policy"):
        assert await reloader.check() is False

    (reason,) = _rejections(caplog)
    assert "does not define childlookup/release/decision" in reason
    assert "childlookup-policy-" not in reason


@pytest.mark.anyio
async def test_a_change_that_fails_its_own_tests_is_rejected(policies):
    reloader, installed = _reloader(policies)
    data = json.loads((policies / "data.json").read_text())
    grant = data["childlookup"]["roles"]["health_visitor"]["grants"]["SAFEGUARDING_ENQUIRY"]
    grant["fields"].append("school")
    (policies / "data.json").write_text(json.dumps(data))
    assert await reloader.check() is False
    assert installed == []


@pytest.mark.anyio
async def test_a_change_that_crashes_the_evaluator_is_rejected_and_the_gateway_survives(policies):
    reloader, installed = _reloader(policies)
    # rego-cpp aborts the process when a rule calling a built-in runs under `with input as {...}`.
    (policies / "crash_test.rego").write_text(
        "package childlookup.crash_test\n\nimport rego.v1\n\nn := count(input.x)\n\n"
        'test_crash if {\n\tn == 1 with input as {"x": [1]}\n}\n'
    )
    assert await reloader.check() is False
    assert installed == []


@pytest.mark.anyio
async def test_a_change_whose_tests_hold_too_much_memory_is_stopped_and_rejected(tmp_path, caplog):
    """rego-cpp grows ~330 MB/s on a huge range and no rlimit works with its allocator: the test
    process is stopped at the bound, long before it could exhaust the gateway's host."""
    policies = write_bundle(tmp_path, {"ok_test.rego": "package t.ok_test\n\ntest_ok := true\n"})
    installed: list[object] = []
    reloader = PolicyReloader(
        policies, installed.append, interval_s=0.1, vet_max_bytes=300 * 1024 * 1024
    )
    # About 1 GB if nothing stops it: past the bound, yet safe should the bound not hold.
    (policies / "big_test.rego").write_text(
        "package t.big_test\n\nimport rego.v1\n\ntest_big if count(numbers.range(1, 2000000)) > 0\n"
    )

    with caplog.at_level(logging.ERROR, logger="childlookup.policy"):
        assert await reloader.check() is False

    assert _rejections(caplog) == ["policy tests used more than 300 MiB of memory"]
    assert installed == []


def test_the_gateway_swaps_policy_between_requests_and_keeps_the_last_good_one(tmp_path, policies):
    records = {"health": [health_record()]}
    with reference_stack(tmp_path, records, policy_dir=policies, policy_reload_s=0.2) as gateway:
        first = gateway.lookup("health_visitor", NHS)["data"]["child"]["policyRevision"]

        _bump_revision(policies, "2099-02-02.1")
        # A new version is installed only once its own tests pass: ~21 s of Rego tests on one
        # core, far longer on a loaded CI machine.
        deadline = time.monotonic() + 120
        revision = first
        while revision == first and time.monotonic() < deadline:
            revisions = _concurrent_lookups(gateway, 8)
            assert all(r in (first, revisions[-1]) for r in revisions)
            revision = revisions[-1]
        assert revision.startswith("2099-02-02.1@")
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5).json()
        assert ready["policy_revision"] == revision

        (policies / "plan.rego").write_text("package childlookup.plan\n\ndecision := \n")
        time.sleep(2)  # several reload intervals: the broken version is seen and rejected
        assert _concurrent_lookups(gateway, 4) == [revision] * 4

        audit = gateway.components.audit.records(limit=100_000)
        assert {r["policy_revision"] for r in audit} <= {first, revision}


def _concurrent_lookups(gateway, n):
    async def run():
        async with httpx.AsyncClient(timeout=10) as client:
            token = gateway.token("health_visitor")
            query = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ policyRevision }} }}'
            body = {"query": query}
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{gateway.url}/graphql",
                        json=body,
                        headers={"authorization": f"Bearer {token}"},
                    )
                    for _ in range(n)
                )
            )
        return [r.json()["data"]["child"]["policyRevision"] for r in responses]

    return asyncio.run(run())


def _failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "policy_reload_failed"]


@pytest.mark.anyio
async def test_a_directory_not_read_whole_is_logged_and_read_again_at_the_next_check(
    policies, caplog
):
    """A file gone between listing and reading (an editor's temporary file, rsync, git) or not
    readable: the check had raised, which ended the watcher, silently, for good."""
    reloader, installed = _reloader(policies)
    gone = policies / "zz_unreadable.rego"
    gone.symlink_to("/proc/self/mem")  # a file, whose reading fails (EIO)
    _bump_revision(policies, "2099-01-02.1")

    assert await reloader.check() is None
    (failed,) = _failures(caplog)
    assert failed.context["error"] == "OSError"
    gone.unlink()
    assert await reloader.check() is True
    assert installed[0].revision.startswith("2099-01-02.1@")


@pytest.mark.anyio
async def test_the_watch_goes_on_whatever_a_check_meets(policies, caplog):
    reloader, _ = _reloader(policies)
    checked = asyncio.Event()
    outcomes = iter([RuntimeError("unforeseen"), None])

    async def check() -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        checked.set()

    reloader.check = check  # type: ignore[method-assign]
    watching = asyncio.create_task(reloader.watch())
    try:
        async with asyncio.timeout(30):
            await checked.wait()
    finally:
        watching.cancel()
    (failed,) = _failures(caplog)
    assert failed.context["error"] == "RuntimeError"
