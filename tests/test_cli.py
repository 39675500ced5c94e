"""The command line as a user runs it: real subprocesses, real ports, real signals."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import free_port
from gateway.auth import StaticKey, TokenVerifier
from gateway.cli import main
from gateway.tokens import PUBLIC_KEY_FILE, ensure_dev_keys
from tests.factories import NHS, health_record
from tests.stack import write_records

CLI = [sys.executable, "-m", "gateway.cli"]


def _wait(url: str, process: subprocess.Popen, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    process.send_signal(sig)
    return process.wait(timeout=20)


def test_token_needs_the_demo_key_then_prints_a_verifiable_token(tmp_path, capsys):
    assert main(["token", "--role", "gp", "--org", "A81001", "--state-dir", str(tmp_path)]) == 2
    assert "childlookup demo" in capsys.readouterr().err

    ensure_dev_keys(tmp_path)
    assert main(["token", "--role", "gp", "--org", "A81001", "--state-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(
        StaticKey.from_pem_file(tmp_path / PUBLIC_KEY_FILE),
        issuer="childlookup-dev",
        audience="childlookup-gateway",
        leeway_s=0,
    )
    assert asyncio.run(verifier.authenticate(f"Bearer {token}")).role == "gp"


def test_token_refuses_an_unknown_role(tmp_path):
    with pytest.raises(SystemExit):
        main(["token", "--role", "janitor", "--org", "X", "--state-dir", str(tmp_path)])


def test_synth_writes_one_file_per_agency_and_the_truth(tmp_path, capsys):
    assert main(["synth", "--seed", "5", "--children", "60", "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"health.jsonl", "education.jsonl", "social_care.jsonl", "truth.jsonl"} <= names
    health = (tmp_path / "health.jsonl").read_text().splitlines()
    assert len(health) == 60
    assert all(json.loads(line)["identifiers"]["nhs_number"].startswith("9") for line in health)


def test_schema_check_passes_on_the_committed_schema(capsys):
    assert main(["schema", "--check"]) == 0


def test_a_bad_connector_config_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    config = tmp_path / "sources.toml"
    config.write_text('[[sources]]\nname = "Health!"\nurl = "not a url"\nprovides = []\n')
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "invalid connector config" in err
    assert "Traceback" not in err


def test_connector_and_gateway_serve_from_a_config_file_and_stop_on_sigterm(tmp_path):
    records = write_records(tmp_path / "health.jsonl", [health_record()])
    ensure_dev_keys(tmp_path)
    connector_port, gateway_port = free_port(), free_port()
    profile = REFERENCE_AGENCIES["health"]
    config = tmp_path / "sources.toml"
    provides = ", ".join(f'"{f.value}"' for f in profile.provides)
    config.write_text(
        f'[[sources]]\nname = "health"\nurl = "http://127.0.0.1:{connector_port}"\n'
        f"timeout_ms = 800\nprovides = [{provides}]\n"
    )
    env = os.environ | {"CHILDLOOKUP_STATE_DIR": str(tmp_path)}
    connector = subprocess.Popen(
        [
            *CLI,
            "connector",
            "serve",
            "--agency",
            "health",
            "--records",
            str(records),
            "--port",
            str(connector_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gateway = subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--port", str(gateway_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait(f"http://127.0.0.1:{connector_port}/healthz", connector).status_code == 200
        ready = _wait(f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        assert ready.json()["sources"] == ["health"]
    finally:
        gateway_code = _stop(gateway, signal.SIGTERM)
        connector_code = _stop(connector, signal.SIGTERM)
    assert (gateway_code, connector_code) == (0, 0)


def test_demo_starts_everything_answers_a_lookup_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--children", "600", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = ""
        deadline = time.monotonic() + 60
        while "More tokens" not in banner and time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, demo.stderr.read()
            banner += line
        assert f"http://127.0.0.1:{port}/graphql" in banner
        token = re.search(r"social_worker \(.*\):\n\s+(\S+)", banner).group(1)
        nhs = re.search(r"child protection plan\s+(\d{10})", banner).group(1)
        query = f'{{ child(nhsNumber: "{nhs}", purpose: SAFEGUARDING_ENQUIRY) {{'
        query += (
            " outcome sources { status } child { indicators { childProtectionPlan { value } } } } }"
        )
        body = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": query},
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        lookup = body["data"]["child"]
        assert lookup["outcome"] == "FOUND"
        assert lookup["child"]["indicators"]["childProtectionPlan"]["value"] is True
        assert Path(tmp_path, "audit.sqlite3").exists()
        # The printed UPN and demographic searches work exactly as printed.
        methods = []
        for search in re.findall(r"^\s+(\{ child\((?:upn|demographics).*)$", banner, re.M):
            found = httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": search},
                headers={"authorization": f"Bearer {token}"},
                timeout=10,
            ).json()["data"]["child"]
            assert found["outcome"] == "FOUND", found
            methods.append({r["method"] for r in found["records"]})
        assert methods[0] == {"UPN"}
        assert "DEMOGRAPHICS" in methods[1]
    finally:
        code = _stop(demo)
    assert code == 0
    assert "stopped" in demo.stdout.read()
    assert NHS not in banner
