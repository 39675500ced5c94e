"""The connector SDK stands alone: built from `connectors/` into a clean virtual environment, it
serves a lookup, and none of the gateway's libraries came with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import free_port
from gateway.config import REPO_ROOT
from tests.factories import NHS, health_record
from tests.processes import stop, wait_for

SDK = REPO_ROOT / "connectors"
GATEWAY_ONLY = ("gateway", "resolvers", "strawberry", "regopy", "rapidfuzz", "opa_client")


def test_the_sdk_distribution_lists_every_package_in_the_sdk():
    """A subpackage left out of the list would install a connector that fails at import."""
    config = tomllib.loads((SDK / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(("connectors", *path.parent.relative_to(SDK).parts))
        for path in SDK.rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert listed == on_disk


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the SDK installed, built from a copy of its folder
    (the build writes into the folder it builds, which must not be the working tree)."""
    root = tmp_path_factory.mktemp("sdk")
    source = root / "connectors"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return python


def test_the_sdk_installs_without_the_gateway_or_its_libraries(sdk_python: Path):
    probe = (
        "import importlib.util, json, sys; "
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {GATEWAY_ONLY}}}))"
    )
    found = subprocess.run(
        [sdk_python, "-c", probe], check=True, capture_output=True, text=True, cwd="/"
    ).stdout
    assert found.strip() == "{" + ", ".join(f'"{m}": false' for m in GATEWAY_ONLY) + "}"


def _serve(sdk_python: Path, cwd: Path, *arguments: str | Path) -> subprocess.Popen[str]:
    """`childlookup-connector serve` of the installed SDK, run outside the repository so that
    nothing can be imported from the working tree."""
    return subprocess.Popen(
        [sdk_python.parent / "childlookup-connector", "serve", *arguments],
        cwd=cwd,
        env=_SDK_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


_SDK_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_installed_sdk_serves_a_lookup(sdk_python: Path, tmp_path: Path):
    records = tmp_path / "health.jsonl"
    records.write_text(health_record().model_dump_json() + "\n", encoding="utf-8")
    port = free_port()
    connector = _serve(
        sdk_python, tmp_path, "--agency", "health", "--records", records, "--port", str(port)
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for(url + "/healthz", connector).status_code == 200
        request = LookupRequest(
            request_id="sdk-1",
            deadline=datetime.now(UTC) + timedelta(seconds=5),
            purpose="SAFEGUARDING_ENQUIRY",
            caller=Caller(role="gp", organisation="A81001"),
            identifiers=Identifiers(nhs_number=NHS),
            fields=[FieldId.NAME, FieldId.GP_PRACTICE],
        )
        response = httpx.post(url + LOOKUP_PATH, content=request.model_dump_json(), timeout=10)
    finally:
        assert stop(connector) == 0, connector.stdout.read() if connector.stdout else ""
    answer = LookupResponse.model_validate_json(response.content)
    assert [record.identifiers.nhs_number for record in answer.records] == [NHS]
    assert answer.records[0].gp_practice is not None
    assert answer.records[0].address is None  # not asked for, so not sent


def test_the_installed_sdk_passes_its_own_conformance_kit(sdk_python: Path, tmp_path: Path):
    """What an agency does before go-live with nothing but the SDK: write the dataset, serve it
    trusting the kit as its gateway, and run the checks."""
    command = sdk_python.parent / "childlookup-connector"

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, *args],
            cwd=tmp_path,
            env=_SDK_ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("check", "--write-dataset", "dataset").returncode == 0
    assert run("keygen", "answer-key.pem").returncode == 0
    port, jwks_port = free_port(), free_port()
    connector = _serve(
        sdk_python,
        tmp_path,
        *("--agency", "social_care", "--port", str(port)),
        *("--records", "dataset/social_care.jsonl", "--signing-key", "answer-key.pem"),
        *("--gateway-jwks", f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json"),
        *("--gateway-issuer", "childlookup-conformance"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/healthz", connector)
        checked = run("check", url, "--agency", "social_care", "--jwks-port", str(jwks_port))
    finally:
        stop(connector)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # social care shields but never restricts, and holds no sensitive services: those two
    # checks are skipped, not passed
    assert checked.stdout.splitlines()[-1] == "19 passed, 0 failed, 2 skipped"
