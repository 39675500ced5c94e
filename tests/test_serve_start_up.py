"""How `childlookup serve` starts, run as a real process: with one worker or several, a start-up
that cannot succeed stops promptly with one line naming what to fix and a non-zero exit - never
workers crashing and being restarted forever, a banner announcing a gateway that refuses to start,
or a bare `[Errno 2]` line that leaves the operator guessing which setting named the file."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from connectors.serving import free_port
from tests.processes import CLI, health_source_config


def _environment(state: Path, **settings: str) -> dict[str, str]:
    """This process's environment without its CHILDLOOKUP_ settings, plus `settings`."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHILDLOOKUP_")}
    return base | {"CHILDLOOKUP_STATE_DIR": str(state)} | settings


def _serve(tmp_path: Path, *flags: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`serve` with `settings` and `flags`, which must stop it at start-up well within a minute
    (a supervisor restarting failing workers forever times out here)."""
    config = health_source_config(tmp_path / "sources.toml", free_port(), 300)
    return subprocess.run(
        [*CLI, "serve", "--config", str(config), "--port", "0", *flags],
        env=_environment(tmp_path / "state", **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(run: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused start-up printed (exit 2, nothing on stdout)."""
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert "childlookup gateway on" not in run.stdout, run.stdout
    assert lines[0].startswith("childlookup: "), lines[0]
    return lines[0]


def _shared(redis_prefix: tuple[str, str]) -> dict[str, str]:
    url, prefix = redis_prefix
    return {"CHILDLOOKUP_REDIS_URL": url, "CHILDLOOKUP_REDIS_PREFIX": prefix}


def test_workers_with_an_unusable_policy_directory_stop_with_the_one_line(tmp_path, redis_prefix):
    missing = tmp_path / "no-policy"
    run = _serve(
        tmp_path, "--workers", "2", CHILDLOOKUP_POLICY_DIR=str(missing), **_shared(redis_prefix)
    )
    line = _one_line(run)
    assert "CHILDLOOKUP_POLICY_DIR" in line, line
    assert str(missing) in line, line


def test_workers_whose_start_fails_in_the_workers_stop_the_supervisor(tmp_path, redis_prefix):
    """A failure only a worker meets while starting (here OPA, asked on start, is not there) stops
    the supervisor with a non-zero exit rather than restarting the workers over and over."""
    run = _serve(
        tmp_path,
        "--workers",
        "2",
        CHILDLOOKUP_OPA_URL=f"http://127.0.0.1:{free_port()}",
        **_shared(redis_prefix),
    )
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("childlookup: "), run.stderr
    assert "worker" in last, last


def test_workers_without_redis_are_refused_before_any_banner(tmp_path):
    line = _one_line(_serve(tmp_path, "--workers", "2"))
    assert "CHILDLOOKUP_REDIS_URL" in line, line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_redis_url_of_no_known_scheme_names_the_variable_and_every_scheme(tmp_path, workers):
    secret = "s3cret-password"
    line = _one_line(
        _serve(
            tmp_path,
            "--workers",
            workers,
            CHILDLOOKUP_REDIS_URL=f"http://user:{secret}@127.0.0.1:6379/0",
        )
    )
    assert "CHILDLOOKUP_REDIS_URL" in line, line
    for scheme in ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://"):
        assert scheme in line, line
    assert secret not in line, line


@pytest.mark.parametrize(
    ("variable", "also"),
    [
        ("CHILDLOOKUP_REQUEST_SIGNING_KEY_FILE", {}),
        ("CHILDLOOKUP_PSEUDONYM_KEYS_FILE", {"CHILDLOOKUP_LOCATOR_URL": "http://127.0.0.1:9"}),
        ("CHILDLOOKUP_TOKEN_PUBLIC_KEY_FILE", {}),
        ("CHILDLOOKUP_LINKAGE_MODEL_FILE", {}),
        ("CHILDLOOKUP_NAME_FREQUENCIES_FILE", {}),
        ("CHILDLOOKUP_METRICS_TOKEN_FILE", {}),
        ("CHILDLOOKUP_TRUSTED_DOCUMENTS", {}),
    ],
)
def test_a_file_setting_naming_no_file_names_its_variable(tmp_path, variable, also):
    missing = tmp_path / "absent" / "file"
    line = _one_line(_serve(tmp_path, **{variable: str(missing)}, **also))
    assert line == f"childlookup: {variable}: cannot read {missing}: No such file or directory"


def test_a_state_directory_that_cannot_be_made_names_its_variable(tmp_path):
    (tmp_path / "a-file").write_text("")
    state = tmp_path / "a-file" / "state"
    line = _one_line(_serve(tmp_path, CHILDLOOKUP_STATE_DIR=str(state)))
    assert line.startswith(f"childlookup: CHILDLOOKUP_STATE_DIR: cannot make {state}"), line


def test_serve_help_explains_every_option_plainly():
    shown = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(shown.split())
    assert "(or CHILDLOOKUP_SERVER_TLS) to present" not in flat, shown
    assert "require portals to present a certificate" in flat, shown
    assert "CHILDLOOKUP_SERVER_TLS" in flat, shown
    for option, setting, until in (
        ("--host HOST", "CHILDLOOKUP_HOST", "--port"),
        ("--port PORT", "CHILDLOOKUP_PORT", "--workers"),
    ):
        entry = re.findall(rf"{option} (.*?) {until}", flat)[-1]  # past the usage line's
        assert setting in entry, shown
