"""Auditors' commands against the log a real gateway wrote."""

import json
import shutil
import sqlite3

import pytest

from gateway.cli import main
from tests.factories import NHS, health_record, synthetic_nhs
from tests.stack import reference_stack

OTHER = synthetic_nhs(7)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audited")
    with reference_stack(tmp, {"health": [health_record()]}) as gw:
        gw.lookup("health_visitor", NHS)
        gw.lookup("gp", OTHER, "DIRECT_CARE")
        gw.lookup("health_visitor", NHS, "DIRECT_CARE")
    return tmp


def test_query_by_child_finds_every_access_to_that_child_only(state, capsys):
    assert main(["audit", "query", "--child", NHS, "--state-dir", str(state)]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["access"]["purpose"] for r in records] == ["SAFEGUARDING_ENQUIRY", "DIRECT_CARE"]
    assert err.strip() == "2 records"
    assert NHS not in out


def test_query_by_user_and_since(state, capsys):
    gp = "dev:ORG1:Test User"
    assert (
        main(["audit", "query", "--user", gp, "--since", "2000-01-01", "--state-dir", str(state)])
        == 0
    )
    assert capsys.readouterr().err.strip() == "3 records"
    assert main(["audit", "query", "--since", "2999-01-01", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().err.strip() == "0 records"


def test_verify_passes_then_names_the_first_tampered_record(state, tmp_path, capsys):
    state = shutil.copytree(state, tmp_path / "copy")  # tamper with a copy, not the shared log
    assert main(["audit", "verify", "--state-dir", str(state)]) == 0
    assert "intact: 3 records" in capsys.readouterr().out

    conn = sqlite3.connect(state / "audit.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET body = replace(body, 'DIRECT_CARE', 'X') WHERE seq = 2")
    conn.close()
    assert main(["audit", "verify", "--state-dir", str(state)]) == 1
    assert "TAMPERED at record #2" in capsys.readouterr().out


def test_verify_refuses_a_missing_log_instead_of_creating_one(tmp_path, capsys):
    assert main(["audit", "verify", "--state-dir", str(tmp_path)]) == 2
    assert "no audit log" in capsys.readouterr().err
    assert not (tmp_path / "audit.sqlite3").exists()


@pytest.mark.parametrize(
    "command",
    [["audit", "verify"], ["audit", "query"], ["audit", "alerts"], ["notifications", "list"]],
)
@pytest.mark.parametrize("what", ["empty", "garbage", "directory", "corrupt"])
def test_an_unopenable_log_is_a_one_line_error_naming_it(state, tmp_path, capsys, command, what):
    """An empty file included: a log wiped to nothing must not be given a new schema and then
    verify as intact, with no records."""
    shutil.copy(state / "audit.key", tmp_path / "audit.key")
    shutil.copytree(state / "keys", tmp_path / "keys")
    log = tmp_path / "audit.sqlite3"
    if what == "empty":
        log.touch()
    elif what == "garbage":
        log.write_bytes(b"this is not an audit log\n" * 200)
    elif what == "directory":
        log.mkdir()
    else:  # a real log whose schema page is intact but whose tables are overwritten
        data = bytearray((state / "audit.sqlite3").read_bytes())
        data[4096:] = b"\xff" * (len(data) - 4096)
        log.write_bytes(bytes(data))
    assert main([*command, "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"childlookup: cannot open the audit log at {log}") or err.startswith(
        f"childlookup: cannot read the audit log at {log}"
    )
    if what == "empty":
        assert log.stat().st_size == 0


def test_reading_a_log_without_its_key_is_refused_rather_than_keyed_afresh(state, tmp_path, capsys):
    """A new key would make every checkpoint look forged and every earlier access unfindable."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(state / "audit.sqlite3", copy / "audit.sqlite3")

    for command in (["verify"], ["query", "--child", NHS], ["alerts"]):
        assert main(["audit", *command, "--state-dir", str(copy)]) == 2
        assert "no audit key" in capsys.readouterr().err
    assert not (copy / "audit.key").exists()


def test_the_state_dir_comes_from_the_environment_as_for_serve(state, monkeypatch, capsys):
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(state))
    assert main(["audit", "verify"]) == 0
    assert "audit log intact" in capsys.readouterr().out


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_log SET subject = 'dev:ORG1:Someone Else' WHERE seq = 2",
        "UPDATE audit_log SET child_ref = NULL WHERE seq = 2",
        "UPDATE audit_log SET outcome = 'DENIED' WHERE seq = 2",
        "UPDATE audit_log SET at = '2000-01-01T00:00:00+00:00' WHERE seq = 2",
    ],
)
def test_verify_names_a_record_whose_queried_columns_were_edited(state, tmp_path, capsys, edit):
    state = shutil.copytree(state, tmp_path / "copy")
    conn = sqlite3.connect(state / "audit.sqlite3", isolation_level=None)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute(edit)
    conn.close()
    assert main(["audit", "verify", "--state-dir", str(state)]) == 1
    assert "TAMPERED at record #2" in capsys.readouterr().out


def test_verify_needs_only_the_public_key(state, tmp_path, capsys):
    """An auditor's copy: the log and the public key, neither the private key nor the audit key."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(state / "audit.sqlite3", copy / "audit.sqlite3")
    shutil.copy(state / "keys" / "audit-checkpoint.pub.pem", tmp_path / "public.pem")
    env = {"CHILDLOOKUP_AUDIT_CHECKPOINT_PUBLIC_KEYS_FILE": str(tmp_path / "public.pem")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["audit", "verify", "--state-dir", str(copy)]) == 0
    assert "audit log intact: 3 records" in capsys.readouterr().out
    assert sorted(p.name for p in copy.iterdir()) == ["audit.sqlite3"]


@pytest.mark.parametrize(
    "arguments",
    [
        ["query", "--limit", "0"],
        ["query", "--limit", "-1"],
        ["query", "--limit", "99999999999999999999"],
        ["query", "--since", "0001-01-01T00:00:00+14:00"],
        ["archive", "--to", "archive", "--before", "9999-12-31T23:59:59-14:00"],
    ],
)
def test_a_number_or_time_out_of_range_is_a_usage_error_not_a_traceback(state, capsys, arguments):
    with pytest.raises(SystemExit) as stopped:
        main(["audit", *arguments, "--state-dir", str(state)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: argument" in err


def test_a_query_cut_at_its_limit_says_so(state, capsys):
    assert main(["audit", "query", "--limit", "2", "--state-dir", str(state)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "there may be more" in err
    assert main(["audit", "query", "--limit", "3", "--state-dir", str(state)]) == 0
    assert "there may be more" in capsys.readouterr().err
    assert main(["audit", "query", "--limit", "4", "--state-dir", str(state)]) == 0
    assert "there may be more" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--older-than-days", "1000000"], "--older-than-days must be at most 36500"),
        (["--max-records", "0"], "--max-records must be from 1 to"),
        (["--max-records", "99999999999999999999"], "--max-records must be from 1 to"),
    ],
)
def test_an_archive_cutoff_or_size_out_of_range_is_refused_in_one_line(
    state, tmp_path, capsys, arguments, said
):
    command = ["audit", "archive", "--to", str(tmp_path / "archive"), *arguments]
    assert main([*command, "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert len(err.strip().splitlines()) == 1
