"""The operator command line given bad input: a log another process holds locked, a database not
there or not migrated, a key of a curve cryptography cannot load, and a write that fails part way
(a full disk, here a file size limit) - each one line, exit 2, and nothing half-written."""

from __future__ import annotations

import resource
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from tests.processes import CLI
from tests.test_mtls import SERVER, Authority
from tests.test_operator_cli_edges import _fill, _one_line_exit_2

# A secp112r1 key pair (made with `openssl ecparam -name secp112r1`): valid PEM, a curve
# cryptography raises UnsupportedAlgorithm for - not a ValueError.
UNSUPPORTED_PRIVATE = b"""-----BEGIN PRIVATE KEY-----
ME4CAQAwEAYHKoZIzj0CAQYFK4EEAAYENzA1AgEBBA4LmLR4QPx5iX1qFPtNo6Eg
Ax4ABLa2bG0gRjoupEygqOslHCloTDyNeruS3ox9w9M=
-----END PRIVATE KEY-----
"""
UNSUPPORTED_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MDIwEAYHKoZIzj0CAQYFK4EEAAYDHgAEtrZsbSBGOi6kTKCo6yUcKWhMPI16u5Le
jH3D0w==
-----END PUBLIC KEY-----
"""
FILE_LIMIT = 4096
"""Bytes a command may write to one file in `_run_with_file_limit`: less than a bundle."""
SEGMENT_FILE_LIMIT = 40_000
"""For `audit archive`: room for SQLite's 32 KiB shared-memory file, not for a segment of 1000."""


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """A state directory with a SQLite audit log of 250 records and its dev keys."""
    state = tmp_path_factory.mktemp("logged")
    _fill(state, 250)
    return state


def _copy(state: Path, to: Path) -> Path:
    return shutil.copytree(state, to)


def _run_with_file_limit(
    *argv: str, cwd: Path, size: int = FILE_LIMIT
) -> subprocess.CompletedProcess[str]:
    """`childlookup ARGV` as a process whose writes past `size` bytes into a file fail (EFBIG), as
    on a full disk: SIGXFSZ ignored, so the write raises instead of killing the process."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return subprocess.run(
        [*CLI, *argv], cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=limit
    )


def _failed_in_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for text in expected:
        assert text in done.stderr


# --- notifications: the outbox's database unusable -----------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["notifications", "resend", "--all"],
        ["notifications", "resend", "some-message"],
        ["notifications", "passed-on", "some-message", "--how", "phoned the LA", "--by", "Ann"],
    ],
)
def test_a_notifications_change_on_a_log_another_process_holds_locked_is_one_line(
    logged, tmp_path, capsys, command
):
    state = _copy(logged, tmp_path / "state")
    holder = sqlite3.connect(state / "audit.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        _one_line_exit_2([*command, "--state-dir", str(state)], capsys)
    finally:
        holder.rollback()
        holder.close()
    assert main(["audit", "verify", "--state-dir", str(state)]) == 0
    assert "intact: 250 records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["notifications", "list"],
        ["notifications", "show", "some-message"],
        ["notifications", "resend", "--all"],
    ],
)
def test_notifications_on_a_postgres_schema_never_migrated_is_one_line(
    postgres_schema, tmp_path, monkeypatch, capsys, command
):
    url, schema = postgres_schema
    monkeypatch.setenv("CHILDLOOKUP_DATABASE_URL", url)
    monkeypatch.setenv("CHILDLOOKUP_DATABASE_SCHEMA", schema)
    _one_line_exit_2([*command, "--state-dir", str(tmp_path)], capsys, schema)


# --- keys of a curve cryptography cannot load -----------------------------------------------------


def _unsupported_dev_key(tmp_path: Path) -> list[str]:
    (tmp_path / "dev-signing-key.pem").write_bytes(UNSUPPORTED_PRIVATE)
    return ["token", "--role", "gp", "--org", "X", "--state-dir", str(tmp_path)]


def _connector_serving_with(tmp_path: Path, option: str, name: str, pem: bytes) -> list[str]:
    """`connector serve` over no records, given `pem` (written to `name`) as its `option`."""
    key = tmp_path / name
    key.write_bytes(pem)
    records = tmp_path / "records.jsonl"
    records.write_text("")
    serve = ["connector", "serve", "--agency", "health", "--port", "0", "--records", str(records)]
    return [*serve, option, str(key)]


def _unsupported_signing_key(tmp_path: Path) -> list[str]:
    return _connector_serving_with(tmp_path, "--signing-key", "signing.pem", UNSUPPORTED_PRIVATE)


def _unsupported_gateway_key(tmp_path: Path) -> list[str]:
    return _connector_serving_with(tmp_path, "--gateway-key", "gateway.pub.pem", UNSUPPORTED_PUBLIC)


def _unsupported_tls_key(tmp_path: Path) -> list[str]:
    issued = Authority(tmp_path, "federation").issue("gateway", SERVER)
    issued.key.write_bytes(UNSUPPORTED_PRIVATE)
    return ["tls-check", "--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]


@pytest.mark.parametrize(
    "command",
    [
        _unsupported_dev_key,
        _unsupported_signing_key,
        _unsupported_gateway_key,
        _unsupported_tls_key,
    ],
)
def test_a_key_of_an_unsupported_curve_is_one_line_naming_the_file(tmp_path, capsys, command):
    argv = command(tmp_path)
    _one_line_exit_2(argv, capsys, "unsupported", str(tmp_path))


@pytest.mark.parametrize(
    ("key_file", "pem"),
    [
        ("audit-checkpoint.pem", UNSUPPORTED_PRIVATE),
        ("audit-checkpoint.pub.pem", UNSUPPORTED_PUBLIC),
    ],
    ids=["private", "public"],
)
def test_an_audit_checkpoint_key_of_an_unsupported_curve_is_one_line(
    logged, tmp_path, capsys, key_file, pem
):
    state = _copy(logged, tmp_path / "state")
    keys = state / "keys"
    (keys / "audit-checkpoint.pub.pem").unlink()
    (keys / key_file).write_bytes(pem)
    _one_line_exit_2(["audit", "verify", "--state-dir", str(state)], capsys, key_file)


# --- writes that fail part way --------------------------------------------------------------------


def test_a_bundle_that_cannot_be_written_whole_leaves_the_previous_one(tmp_path):
    out = tmp_path / "bundle.tar.gz"
    out.write_bytes(b"the bundle deployed before")
    policies = Path(__file__).resolve().parents[1] / "policies"
    done = _run_with_file_limit(
        "policy", "bundle", "--dir", str(policies), "--out", str(out), cwd=tmp_path
    )
    _failed_in_one_line(done, str(out))
    assert out.read_bytes() == b"the bundle deployed before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar.gz"]


def test_a_portal_manifest_that_cannot_be_written_whole_is_not_written(tmp_path):
    out = tmp_path / "operations.json"
    done = _run_with_file_limit("portal", "manifest", "--out", str(out), cwd=tmp_path)
    _failed_in_one_line(done, str(out))
    assert list(tmp_path.iterdir()) == []


def test_an_archive_segment_that_cannot_be_written_whole_leaves_no_partial_file(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    _fill(state, 1000)
    archive = tmp_path / "archive"
    archive.mkdir()
    done = _run_with_file_limit(
        "audit", "archive", "--to", str(archive), "--before", "2999-01-01",
        "--state-dir", str(state), cwd=tmp_path, size=SEGMENT_FILE_LIMIT,
    )  # fmt: skip
    _failed_in_one_line(done, "audit-1-900.jsonl.gz")
    assert list(archive.iterdir()) == []
    assert main(["audit", "verify", "--state-dir", str(state), "--archive", str(archive)]) == 0
    assert "intact: 1000 records" in capsys.readouterr().out
