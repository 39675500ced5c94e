"""A policy goes live only once its own tests pass, whatever the way in: the live reloader vets a
change (tests/policy/test_reload.py), a production gateway's start-up (a restart, a deploy, crash
recovery, `serve --workers`) vets what is in its policy directory, and `childlookup policy bundle`
vets what it would ship to OPA. Run as real processes: a gateway that did start would serve
until stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connectors.serving import free_port
from gateway.config import DEFAULT_POLICY_DIR
from gateway.tokens import ensure_dev_keys
from tests.processes import CLI, health_source_config, stop, wait_for

BANNER = "childlookup gateway on"
START_UP_S = 180
"""Time for a start-up that runs the shipped policy's tests (~15 s alone, more on a busy host)."""


@pytest.fixture
def failing_policy(tmp_path: Path) -> Path:
    """The review's change: the GP's direct-care grant widened to sensitive service details, which
    four of the policy's own tests catch."""
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "failing-policy")
    data = json.loads((policies / "data.json").read_text())
    grant = data["childlookup"]["roles"]["gp"]["grants"]["DIRECT_CARE"]
    grant["fields"].append("sensitive_service_details")
    (policies / "data.json").write_text(json.dumps(data))
    return policies


@pytest.fixture
def untested_policy(tmp_path: Path) -> Path:
    """The shipped policy without its *_test.rego files: it compiles, and proves nothing."""
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "untested-policy")
    for test in policies.glob("*_test.rego"):
        test.unlink()
    return policies


def _production(tmp_path: Path, production_settings: Any, policy_dir: Path) -> dict[str, str]:
    """This process's environment without its CHILDLOOKUP_ settings, plus a production gateway's
    (tests/conftest.py `production_settings`) on `policy_dir`."""
    ensure_dev_keys(tmp_path)
    settings = production_settings(tmp_path) | {
        "state_dir": tmp_path / "state",
        "policy_dir": policy_dir,
    }
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHILDLOOKUP_")}
    return base | {f"CHILDLOOKUP_{name.upper()}": str(value) for name, value in settings.items()}


def _start(
    tmp_path: Path, env: dict[str, str], *flags: str, port: int = 0
) -> subprocess.Popen[str]:
    config = health_source_config(tmp_path / "sources.toml", free_port(), 300)
    return subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--port", str(port), *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _refused(process: subprocess.Popen[str]) -> str:
    """The one line a refused start-up printed (exit 2, no banner); a gateway that started
    instead is stopped and fails the test at once."""
    assert process.stdout is not None
    try:
        banner = process.stdout.readline()  # the banner, or nothing once it has exited
        if BANNER in banner:
            stop(process)
            pytest.fail(f"the gateway started: {banner}")
        _, err = process.communicate(timeout=START_UP_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("childlookup: "), lines[0]
    return lines[0]


def test_a_production_gateway_refuses_to_start_on_a_policy_whose_tests_fail(
    tmp_path, production_settings, failing_policy
):
    line = _refused(_start(tmp_path, _production(tmp_path, production_settings, failing_policy)))
    assert "CHILDLOOKUP_POLICY_DIR" in line, line
    assert str(failing_policy) in line, line
    assert " 4 failed" in line, line


def test_a_production_gateway_refuses_to_start_on_a_policy_with_no_tests(
    tmp_path, production_settings, untested_policy
):
    line = _refused(_start(tmp_path, _production(tmp_path, production_settings, untested_policy)))
    assert str(untested_policy) in line, line
    assert "no tests" in line, line


def test_production_workers_refuse_to_start_on_a_policy_whose_tests_fail(
    tmp_path, production_settings, failing_policy, redis_prefix
):
    url, prefix = redis_prefix
    env = _production(tmp_path, production_settings, failing_policy) | {
        "CHILDLOOKUP_REDIS_URL": url,
        "CHILDLOOKUP_REDIS_PREFIX": prefix,
    }
    line = _refused(_start(tmp_path, env, "--workers", "2"))
    assert str(failing_policy) in line, line
    assert " 4 failed" in line, line


def test_a_production_gateway_starts_on_the_shipped_policy(tmp_path, production_settings):
    port = free_port()
    process = _start(
        tmp_path, _production(tmp_path, production_settings, DEFAULT_POLICY_DIR), port=port
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", process, START_UP_S).status_code == 200
    finally:
        stop(process)


def _bundle(directory: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "policy", "bundle", "--dir", str(directory), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=START_UP_S,
    )


@pytest.mark.parametrize("policy", ["failing_policy", "untested_policy"])
def test_policy_bundle_refuses_a_policy_whose_tests_do_not_pass_and_writes_nothing(
    tmp_path, request, policy
):
    directory = request.getfixturevalue(policy)
    out = tmp_path / "out" / "bundle.tar.gz"
    out.parent.mkdir()

    done = _bundle(directory, out)

    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert str(directory) in done.stderr
    assert (" 4 failed" if policy == "failing_policy" else "no tests") in done.stderr
    assert list(out.parent.iterdir()) == []
