"""The operators' and agencies' command lines at their edges: passphrase-protected keys, key files
written beside others' leftovers or public halves, and an archive directory that already holds
another log's segments."""

from __future__ import annotations

import asyncio
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.audit import open_audit_store, write_next_segment
from gateway.cli import main
from gateway.config import Settings
from tests.audit.test_archive import LATER
from tests.factories import audit_record
from tests.processes import health_source_config


def _fill(state, count):
    """A SQLite log of `count` records with the dev keys (a checkpoint every 100)."""
    store = open_audit_store(Settings(state_dir=state))

    async def write():
        for i in range(1, count + 1):
            await store.append(audit_record(f"{state.name}-{i}"))

    asyncio.run(write())
    store.close()


def _encrypted(key, path):
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


def _one_line_exit_2(argv, capsys, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err
    return err


# --- audit archive ------------------------------------------------------------------------------


def test_archiving_another_log_into_the_same_directory_never_destroys_the_first_logs_segment(
    tmp_path, capsys
):
    """Log A's records 1..100 are archived (and deleted from A); archiving log B, a different log
    (another gateway's, or one made afresh after a rebuild), into the same directory must not
    replace A's segment - its only copy of those records."""
    archive = tmp_path / "archive"
    _fill(tmp_path / "a", 105)
    _fill(tmp_path / "b", 150)
    before = ["--before", LATER.isoformat()]
    assert (
        main(
            ["audit", "archive", "--to", str(archive), *before, "--state-dir", str(tmp_path / "a")]
        )
        == 0
    )
    segment = archive / "audit-1-100.jsonl.gz"
    kept = segment.read_bytes()
    capsys.readouterr()

    _one_line_exit_2(
        ["audit", "archive", "--to", str(archive), *before, "--state-dir", str(tmp_path / "b")],
        capsys,
        str(segment),
    )
    assert segment.read_bytes() == kept
    assert (
        main(["audit", "verify", "--archive", str(archive), "--state-dir", str(tmp_path / "a")])
        == 0
    )
    # B archived nothing: its records are all still live.
    assert main(["audit", "verify", "--state-dir", str(tmp_path / "b")]) == 0
    assert "intact: 150 records" in capsys.readouterr().out


def test_an_interrupted_runs_leftover_segment_is_still_written_again(tmp_path, capsys):
    """The guard above must not stop what it guards around: a segment this log's earlier run
    wrote before dying (nothing deleted) is replaced and the archive completes."""
    state, archive = tmp_path / "state", tmp_path / "archive"
    _fill(state, 205)
    store = open_audit_store(Settings(state_dir=state), create=False)
    try:
        assert write_next_segment(store, archive, LATER, 100) is not None  # then "crashed"
    finally:
        store.close()
    argv = ["audit", "archive", "--to", str(archive), "--before", LATER.isoformat()]
    assert main([*argv, "--state-dir", str(state)]) == 0
    assert "archived records 1..200" in capsys.readouterr().out
    assert main(["audit", "verify", "--archive", str(archive), "--state-dir", str(state)]) == 0


# --- encrypted private keys ---------------------------------------------------------------------


def test_an_encrypted_answer_signing_key_is_one_line_not_a_traceback(tmp_path, capsys):
    key = _encrypted(ec.generate_private_key(ec.SECP256R1()), tmp_path / "signing.pem")
    records = tmp_path / "health.jsonl"
    records.write_text("")
    argv = ["connector", "serve", "--agency", "health", "--port", "0", "--records", str(records)]
    _one_line_exit_2([*argv, "--signing-key", str(key)], capsys, str(key), "encrypted")


def test_an_encrypted_fhir_client_key_is_one_line_not_a_traceback(tmp_path, capsys):
    key = _encrypted(rsa.generate_private_key(65537, 2048), tmp_path / "client.pem")
    argv = [
        "connector",
        "serve",
        "--agency",
        "health",
        "--port",
        "0",
        "--fhir",
        "http://127.0.0.1:9/FHIR/R4",
        "--fhir-client-id",
        "client",
        "--fhir-key",
        str(key),
        "--fhir-kid",
        "kid-1",
        "--fhir-token-url",
        "http://127.0.0.1:9/token",
    ]
    _one_line_exit_2(argv, capsys, str(key), "encrypted")


def test_serve_with_an_encrypted_request_signing_key_is_one_line_not_a_traceback(
    tmp_path, monkeypatch, capsys
):
    key = _encrypted(ec.generate_private_key(ec.SECP256R1()), tmp_path / "request.pem")
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CHILDLOOKUP_REQUEST_SIGNING_KEY_FILE", str(key))
    config = health_source_config(tmp_path / "sources.toml", 9, 500)
    _one_line_exit_2(
        ["serve", "--config", str(config), "--port", "0"], capsys, str(key), "encrypted"
    )


# --- key files ----------------------------------------------------------------------------------


def test_connector_keygen_never_pairs_a_new_key_with_another_keys_public_half(tmp_path, capsys):
    """The private key was lost (or moved) but its public half left: a new key pair must not keep
    the old public file and tell the operator to give it to the gateway, which would then refuse
    every answer the new key signs."""
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    assert main(["connector", "keygen", str(private)]) == 0
    stale = public.read_bytes()
    private.unlink()
    capsys.readouterr()

    code = main(["connector", "keygen", str(private)])
    if code == 0:  # it made a key: its public file must be that key's
        made = serialization.load_pem_private_key(private.read_bytes(), password=None)
        own = made.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert public.read_bytes() == own
    else:
        assert code == 2
        assert str(public) in capsys.readouterr().err
        assert public.read_bytes() == stale


@pytest.mark.parametrize("add", [False, True])
def test_locator_keygen_writes_an_owner_only_key_file_past_a_leftover_partial(tmp_path, add):
    """A `<file>.partial` left group- and world-readable (an earlier run's, or made by hand) must
    not become the pseudonym key file with its mode: the secret is then readable by anyone."""
    keys = tmp_path / "pseudonym-keys.json"
    if add:
        assert main(["locator", "keygen", str(keys), "--version", "v1"]) == 0
    partial = tmp_path / "pseudonym-keys.json.partial"
    partial.write_text("")
    partial.chmod(0o644)
    argv = ["locator", "keygen", str(keys), "--version", "v2", *(["--add"] if add else [])]
    assert main(argv) == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
