"""The gateway's configuration as an operator meets it: `childlookup serve` run as a real process
with a setting wrong stops with one line naming the CHILDLOOKUP_ variable (or the flag) and what
is wrong, never a pydantic report, a traceback or the value given (a secret would reach the
logs); a variable that is no setting is reported, not silently ignored; and settings that cannot
work together are refused."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.serving import free_port
from gateway.config import Settings, unknown_variables
from tests.processes import CLI, health_source_config, serve_gateway, stop, wait_for


def _environment(state: Path, **settings: str) -> dict[str, str]:
    """This process's environment without its CHILDLOOKUP_ settings, plus `settings`."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHILDLOOKUP_")}
    return base | {"CHILDLOOKUP_STATE_DIR": str(state)} | settings


def _refused(tmp_path: Path, *flags: str, **settings: str) -> str:
    """Run `serve` with `settings` and `flags`, which must stop it at start-up: its stderr."""
    config = health_source_config(tmp_path / "sources.toml", free_port(), 300)
    run = subprocess.run(
        [*CLI, "serve", "--config", str(config), "--port", "0", *flags],
        env=_environment(tmp_path / "state", **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    return run.stderr


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    assert "pydantic" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CHILDLOOKUP_LOOKUP_DEADLINE_MS", "-5", "greater than 0"),
        ("CHILDLOOKUP_LOOKUP_DEADLINE_MS", "0", "greater than 0"),
        ("CHILDLOOKUP_CACHE_TTL_S", "abc", "integer"),
        ("CHILDLOOKUP_MODE", "prod", "'dev' or 'production'"),
        ("CHILDLOOKUP_JWKS_URL", "idp.example/jwks", "URL"),
        ("CHILDLOOKUP_LOOKUPS_PER_USER_PER_MINUTE_BY_ROLE", "{gp: 30", "JSON"),
        ("CHILDLOOKUP_TOKEN_ALGORITHMS", "ES256", "JSON"),
        ("CHILDLOOKUP_FIELD_AUTHORITY", '{"adress": ["health"]}', "adress"),
        ("CHILDLOOKUP_SERVER_TLS", '{"cert_file": "/etc/gw.crt"}', "key_file"),
    ],
)
def test_an_invalid_setting_stops_start_up_with_one_line_naming_its_variable(
    tmp_path, variable, value, says
):
    line = _one_line(_refused(tmp_path, **{variable: value}))
    assert line.startswith("childlookup: "), line
    assert variable in line, line
    assert says in line, line


def test_a_flag_out_of_range_is_named_as_the_flag(tmp_path):
    line = _one_line(_refused(tmp_path, "--port", "70000"))
    assert "--port" in line, line
    assert "65535" in line, line


def test_a_secret_too_short_is_refused_without_printing_it(tmp_path):
    secret = "a-real-but-short-audit-secret"
    line = _one_line(_refused(tmp_path, CHILDLOOKUP_AUDIT_KEY=secret))
    assert "CHILDLOOKUP_AUDIT_KEY" in line, line
    assert "32 characters" in line, line
    assert secret not in line


def test_production_missing_its_keys_is_one_line_without_the_settings_given(tmp_path):
    secret = "k" * 40 + "-the-audit-key"
    line = _one_line(
        _refused(tmp_path, CHILDLOOKUP_MODE="production", CHILDLOOKUP_AUDIT_KEY=secret)
    )
    assert "production mode needs CHILDLOOKUP_REQUEST_SIGNING_KEY_FILE" in line, line
    assert "Value error" not in line, line
    assert "input" not in line, line
    assert secret[:20] not in line


@pytest.mark.parametrize("directory", ["missing", "no-manifest"])
def test_a_policy_directory_that_cannot_be_used_is_one_line_not_a_traceback(tmp_path, directory):
    (tmp_path / "no-manifest").mkdir()
    line = _one_line(_refused(tmp_path, CHILDLOOKUP_POLICY_DIR=str(tmp_path / directory)))
    assert "CHILDLOOKUP_POLICY_DIR" in line, line
    assert directory in line, line


def test_a_jwks_url_and_a_token_key_file_together_are_refused(tmp_path):
    """One of them would be silently ignored: the key file, even one that does not exist."""
    with pytest.raises(ValidationError, match="not both"):
        Settings(
            state_dir=tmp_path,
            jwks_url="https://idp.example/jwks",
            token_public_key_file=tmp_path / "absent.pem",
        )
    line = _one_line(
        _refused(
            tmp_path,
            CHILDLOOKUP_JWKS_URL="https://idp.example/jwks",
            CHILDLOOKUP_TOKEN_PUBLIC_KEY_FILE=str(tmp_path / "absent.pem"),
        )
    )
    assert "CHILDLOOKUP_JWKS_URL" in line, line
    assert "CHILDLOOKUP_TOKEN_PUBLIC_KEY_FILE" in line, line


def test_variables_that_are_no_setting_are_found_with_the_setting_meant():
    found = unknown_variables(
        {
            "CHILDLOOKUP_LOOKUP_DEADLINE_M": "5",  # a typo
            "childlookup_mode": "production",  # read as CHILDLOOKUP_MODE: not unknown
            "CHILDLOOKUP_LOCATOR_PORT": "8700",  # the locator's, beside the gateway
            "CHILDLOOKUP_LOCATOR_URL": "http://127.0.0.1:8700",
            "CHILDLOOKUP_TEST_SERVICES": "required",  # the test suite's
            "CHILDLOOKUP_FROBNICATE": "1",
            "PATH": "/usr/bin",
        }
    )
    assert found == {
        "CHILDLOOKUP_FROBNICATE": None,
        "CHILDLOOKUP_LOOKUP_DEADLINE_M": "CHILDLOOKUP_LOOKUP_DEADLINE_MS",
    }


def test_serve_warns_of_a_misspelt_variable_and_serves(tmp_path):
    port = free_port()
    config = health_source_config(tmp_path / "sources.toml", free_port(), 300)
    env = _environment(tmp_path / "state", CHILDLOOKUP_LOOKUP_DEADLINE_M="5")
    gateway = serve_gateway(config, port, env)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
    finally:
        assert stop(gateway, signal.SIGTERM) == 0
    err = gateway.stderr.read() if gateway.stderr else ""
    warned = [line for line in err.splitlines() if "CHILDLOOKUP_LOOKUP_DEADLINE_M " in line]
    assert len(warned) == 1, err
    assert '"event": "unknown_setting"' in warned[0]
    assert "CHILDLOOKUP_LOOKUP_DEADLINE_MS" in warned[0]


def test_a_misspelt_variable_is_reported_before_the_error_it_causes(tmp_path):
    run = subprocess.run(
        [*CLI, "serve", "--port", "0"],
        env=_environment(tmp_path / "state", CHILDLOOKUP_SOURCES_FIL="sources.toml"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    warning, error = run.stderr.strip().splitlines()
    assert "CHILDLOOKUP_SOURCES_FIL " in warning
    assert "CHILDLOOKUP_SOURCES_FILE" in warning
    assert error.startswith("childlookup: name the connector config")
