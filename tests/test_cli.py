"""The command line as a user runs it: real subprocesses, real ports, real signals."""

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from connectors.serving import free_port
from connectors.witness import WITNESS_PATH
from gateway.auth import StaticKey, TokenVerifier
from gateway.cli import main
from gateway.tokens import PUBLIC_KEY_FILE, ensure_dev_keys
from tests.factories import NHS, health_record
from tests.processes import (
    CLI,
    dev_token,
    graphql,
    health_source_config,
    serve_gateway,
    serve_health_connector,
    stop,
    wait_for,
)
from tests.stack import eventually, write_records


def _verified_role(state_dir: Path, token: str) -> str:
    verifier = TokenVerifier(
        StaticKey.from_pem_file(state_dir / PUBLIC_KEY_FILE),
        issuer="childlookup-dev",
        audience="childlookup-gateway",
        leeway_s=0,
    )
    return asyncio.run(verifier.authenticate(f"Bearer {token}")).role


def test_token_creates_the_dev_key_in_a_new_state_dir_then_reuses_it(tmp_path, capsys):
    state = tmp_path / "new"
    assert main(["token", "--role", "gp", "--org", "A81001", "--state-dir", str(state)]) == 0
    first = capsys.readouterr().out.strip()
    key = (state / PUBLIC_KEY_FILE).read_bytes()

    assert main(["token", "--role", "auditor", "--org", "X", "--state-dir", str(state)]) == 0
    second = capsys.readouterr().out.strip()
    assert (state / PUBLIC_KEY_FILE).read_bytes() == key
    assert (_verified_role(state, first), _verified_role(state, second)) == ("gp", "auditor")


def test_token_reads_the_state_dir_from_the_environment_like_serve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(tmp_path / "from-env"))
    assert main(["token", "--role", "gp", "--org", "A81001"]) == 0
    assert _verified_role(tmp_path / "from-env", capsys.readouterr().out.strip()) == "gp"
    assert not (tmp_path / ".childlookup").exists()


def test_token_refuses_a_lifetime_the_gateway_would_refuse(tmp_path, capsys):
    args = ["token", "--role", "gp", "--org", "A81001", "--state-dir", str(tmp_path)]
    assert main([*args, "--ttl", str(10 * 365 * 24 * 3600)]) == 2
    assert "12 hours" in capsys.readouterr().err


def test_token_fits_a_shorter_maximum_the_gateway_is_set_to(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHILDLOOKUP_TOKEN_MAX_LIFETIME_S", "3600")
    assert main(["token", "--role", "gp", "--org", "A81001", "--state-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(
        StaticKey.from_pem_file(tmp_path / PUBLIC_KEY_FILE),
        issuer="childlookup-dev",
        audience="childlookup-gateway",
        leeway_s=0,
        max_lifetime_s=3600,
    )
    assert asyncio.run(verifier.authenticate(f"Bearer {token}")).role == "gp"


def test_token_never_makes_a_dev_key_in_production_mode(
    tmp_path, monkeypatch, capsys, production_settings
):
    for name, value in production_settings(tmp_path).items():
        monkeypatch.setenv(f"CHILDLOOKUP_{name.upper()}", str(value))
    state = tmp_path / "state"
    assert main(["token", "--role", "gp", "--org", "A81001", "--state-dir", str(state)]) == 2
    assert "production" in capsys.readouterr().err
    assert not (state / PUBLIC_KEY_FILE).exists()


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
    config = health_source_config(tmp_path / "sources.toml", connector_port, 800)
    env = os.environ | {"CHILDLOOKUP_STATE_DIR": str(tmp_path)}
    connector = serve_health_connector(records, connector_port, env)
    gateway = serve_gateway(config, gateway_port, env)
    try:
        assert wait_for(f"http://127.0.0.1:{connector_port}/healthz", connector).status_code == 200
        ready = wait_for(f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        assert ready.json()["sources"] == ["health"]
    finally:
        gateway_code = stop(gateway, signal.SIGTERM)
        connector_code = stop(connector, signal.SIGTERM)
    assert (gateway_code, connector_code) == (0, 0)


def test_serve_and_token_work_on_their_own_from_a_fresh_state_dir(tmp_path):
    state, port = tmp_path / "state", free_port()
    # Nothing listens at the connector's port: the lookup is answered, with that source FAILED.
    config = health_source_config(tmp_path / "sources.toml", free_port(), 300)
    gateway = serve_gateway(config, port, os.environ | {"CHILDLOOKUP_STATE_DIR": str(state)})
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
        token = dev_token(state)
        query = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ sources {{ status }} }} }}'
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": query},
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        )
    finally:
        code = stop(gateway, signal.SIGTERM)
    assert answer.status_code == 200, answer.text
    assert "errors" not in answer.json()
    assert answer.json()["data"]["child"]["sources"] == [{"status": "FAILED"}]
    assert code == 0


def _start_demo(port: int, state_dir: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    """The demo as a process, and its banner once printed in full."""
    demo = subprocess.Popen(
        [
            *(*CLI, "demo", "--port", str(port), "--children", "600"),
            *("--state-dir", str(state_dir), *options),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = ""
    deadline = time.monotonic() + 60
    while "More tokens" not in banner and time.monotonic() < deadline:
        line = demo.stdout.readline()
        assert line, demo.stderr.read()
        banner += line
    return demo, banner


def test_demo_starts_everything_answers_a_lookup_and_stops_on_ctrl_c(tmp_path, capsys):
    port = free_port()
    demo, banner = _start_demo(port, tmp_path)
    try:
        assert f"http://127.0.0.1:{port}/graphql" in banner
        token = re.search(r"social_worker \(.*\):\n\s+(\S+)", banner).group(1)
        nhs = re.search(r"child protection plan\s+(\d{10})", banner).group(1)
        query = f'{{ child(identify: {{nhsNumber: "{nhs}"}}, purpose: SAFEGUARDING_ENQUIRY) {{'
        query += (
            " outcome sources { status } child { indicators { childProtectionPlan { value } } } } }"
        )
        lookup = graphql(port, query, token)["data"]["child"]
        assert lookup["outcome"] == "FOUND"
        assert lookup["child"]["indicators"]["childProtectionPlan"]["value"] is True
        assert Path(tmp_path, "audit.sqlite3").exists()
        # The printed UPN and demographic searches work exactly as printed.
        methods = []
        searches = r"^\s+(\{ child\(identify: \{(?:upn|demographics).*)$"
        for search in re.findall(searches, banner, re.M):
            found = graphql(port, search, token)["data"]["child"]
            assert found["outcome"] == "FOUND", found
            methods.append({r["method"] for r in found["records"]})
        # The school's record holds the NHS number: health is asked again with it.
        assert methods[0] == {"UPN", "NHS_NUMBER"}
        assert "DEMOGRAPHICS" in methods[1]
        # The auditor's token reads the printed audit trail query: the lookup above is on it.
        auditor = re.search(r"auditor \(.*\):\n\s+(\S+)", banner).group(1)
        trail = re.search(r"^\s+(\{ auditTrail\(.*)$", banner, re.M).group(1)
        looked_up = re.search(r'nhsNumber: "(\d{10})"', trail).group(1)
        graphql(port, query.replace(nhs, looked_up), token)
        entries = graphql(port, trail, auditor)["data"]["auditTrail"]
        assert ("social_worker", "SAFEGUARDING_ENQUIRY") in {
            (e["role"], e["purpose"]) for e in entries
        }
        assert graphql(port, trail, token)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # More tokens, with the command the banner prints.
        command = re.search(r"More tokens: \./dev (token .*)$", banner, re.M).group(1)
        assert main(shlex.split(command)) == 0
        assert _verified_role(tmp_path, capsys.readouterr().out.strip()) == "gp"
        # The reference connectors witness the log: once sealed, it agrees with what each holds,
        # checked with the command the banner prints.
        witnesses = re.findall(r"^\s+(\S+) (http://\S+), reading", banner, re.M)
        for _, url in witnesses:
            listing = f"{url}{WITNESS_PATH}?log=childlookup-gateway&after=0"
            eventually(lambda listing=listing: httpx.get(listing).json()["checkpoints"], 30)
        verify = re.search(r"^\s+\./dev (audit verify .*)$", banner, re.M).group(1)
        assert main(shlex.split(verify)) == 0
        out = capsys.readouterr().out
        assert [url for _, url in witnesses if f"agrees with witness {url}" in out] == [
            url for _, url in witnesses
        ]
        assert len(witnesses) == 3
    finally:
        code = stop(demo)
    assert code == 0
    assert "stopped" in demo.stdout.read()
    assert NHS not in banner


def test_demo_in_trusted_documents_mode_runs_only_the_printed_queries(tmp_path):
    port = free_port()
    demo, banner = _start_demo(port, tmp_path, "--trusted-documents")
    try:
        manifest = tmp_path / "demo-operations.json"
        assert f"Trusted documents: ON - only the 4 operations in {manifest} run" in banner
        token = re.search(r"social_worker \(.*\):\n\s+(\S+)", banner).group(1)
        printed = re.findall(r"^\s+(\{ (?:child|auditTrail)\(.*)$", banner, re.M)
        assert len(printed) == 4
        lookup = graphql(port, printed[0], token)["data"]["child"]
        assert lookup["outcome"] == "FOUND"
        assert graphql(port, printed[1], token)["data"]["child"]["outcome"] == "FOUND"
        changed = printed[0].replace("auditId", "requestId")
        refused = graphql(port, changed, token)["errors"][0]["extensions"]["code"]
        assert refused == "OPERATION_NOT_TRUSTED"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
        assert ready["trusted_documents"] == {"operations": 4}
    finally:
        code = stop(demo)
    assert code == 0


def test_demo_with_agency_formats_answers_from_fhir_sql_and_ctf(tmp_path):
    """The same children, served from a FHIR (PDS, CP-IS) test server, the case records schema
    on SQLite and a folder of Common Transfer Files."""
    port = free_port()
    demo, banner = _start_demo(port, tmp_path, "--agency-formats")
    try:
        assert "reading FHIR R4: PDS at" in banner
        assert "reading SQL: " in banner
        assert "reading Common Transfer Files in" in banner
        token = re.search(r"social_worker \(.*\):\n\s+(\S+)", banner).group(1)
        nhs = re.search(r"child protection plan\s+(\d{10})", banner).group(1)
        query = f'{{ child(nhsNumber: "{nhs}", purpose: SAFEGUARDING_ENQUIRY) {{ outcome'
        query += " sources { source status } records { source method }"
        query += " child { indicators { childProtectionPlan { value } }"
        query += " involvements { service practitioner { phone } } } } }"
        lookup = graphql(port, query, token)["data"]["child"]
        assert lookup["outcome"] == "FOUND"
        assert lookup["child"]["indicators"]["childProtectionPlan"]["value"] is True
        # Health answered from PDS by NHS number, social care from SQL by NHS number.
        assert {(r["source"], r["method"]) for r in lookup["records"]} >= {
            ("health", "NHS_NUMBER"),
            ("social_care", "NHS_NUMBER"),
        }
        # CP-IS names the responsible authority's office-hours desk.
        services = {i["service"] for i in lookup["child"]["involvements"]}
        assert any("child protection plan" in (service or "") for service in services)
        shielded = re.search(r"shielded\s+(\d{10})", banner).group(1)
        withheld = graphql(
            port,
            f'{{ child(nhsNumber: "{shielded}", purpose: SAFEGUARDING_ENQUIRY)'
            " { outcome withheld { field source reason } } }",
            token,
        )["data"]["child"]
        assert {"field": "address", "source": "social_care", "reason": "SHIELDED"} in withheld[
            "withheld"
        ]
        # The printed UPN search finds the pupil in the CTF folder.
        upn_search = re.search(r"^\s+(\{ child\(identify: \{upn.*)$", banner, re.M).group(1)
        found = graphql(port, upn_search, token)["data"]["child"]
        assert {(r["source"], r["method"]) for r in found["records"]} >= {("education", "UPN")}
    finally:
        code = stop(demo)
    assert code == 0
