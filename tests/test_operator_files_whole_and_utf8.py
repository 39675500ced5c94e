"""The operator command line at three more edges: a config, settings or policy data file that is
not UTF-8, a folder in the policy directory named like a policy module, and a synthetic
population whose writing fails part way - each one line naming the file (exit 2), never the
file's content, a traceback, rules silently left out or a half-written population."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from connectors.synthetic.national.files import load_national
from gateway.cli import main
from tests.factories import POLICY_DIR
from tests.processes import CLI, health_source_config
from tests.test_operator_cli_bad_input import _failed_in_one_line, _run_with_file_limit
from tests.test_operator_cli_edges import _one_line_exit_2

SECRET: bytes = b"Ada Lovelace \xe9 10 Downing Street"
"""Content no error may repeat, around a byte that is not UTF-8 (at offset 13)."""

SMALL_NATIONAL = ["--local-authorities", "2", "--practices", "5", "--schools", "5"]


def _not_utf8(path: Path, before: bytes = b"", after: bytes = b"") -> Path:
    path.write_bytes(before + SECRET + after)
    return path


def _echoes_nothing(err: str) -> None:
    assert "Lovelace" not in err
    assert "Downing" not in err
    assert "\\x" not in err


# --- files that are not UTF-8 ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sources.toml", "sources.json"])
def test_a_connector_config_that_is_not_utf8_is_one_line_naming_it(
    tmp_path, monkeypatch, capsys, name
):
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(tmp_path / "state"))
    config = _not_utf8(tmp_path / name, b'{"sources": [{"name": "', b'"}]}')

    err = _one_line_exit_2(
        ["serve", "--config", str(config), "--port", "0"], capsys, str(config), "not UTF-8"
    )
    _echoes_nothing(err)


@pytest.mark.parametrize(
    "variable",
    [
        "CHILDLOOKUP_LINKAGE_MODEL_FILE",
        "CHILDLOOKUP_NAME_FREQUENCIES_FILE",
        "CHILDLOOKUP_PSEUDONYM_KEYS_FILE",
        "CHILDLOOKUP_TRUSTED_DOCUMENTS",
        "CHILDLOOKUP_METRICS_TOKEN_FILE",
    ],
)
def test_a_settings_file_that_is_not_utf8_is_one_line_naming_the_variable_and_file(
    tmp_path, monkeypatch, capsys, variable
):
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(variable, str(_not_utf8(tmp_path / "setting")))
    config = health_source_config(tmp_path / "sources.toml", 9, 500)

    err = _one_line_exit_2(
        ["serve", "--config", str(config), "--port", "0"],
        capsys,
        variable,
        str(tmp_path / "setting"),
        "not UTF-8",
    )
    _echoes_nothing(err)


def test_a_policy_catalogue_that_is_not_utf8_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    policies = shutil.copytree(POLICY_DIR, tmp_path / "policies")
    _not_utf8(policies / "data.json", b'{"childlookup": "', b'"}')
    monkeypatch.setenv("CHILDLOOKUP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CHILDLOOKUP_POLICY_DIR", str(policies))
    monkeypatch.setenv("CHILDLOOKUP_LOOKUPS_PER_USER_PER_MINUTE_BY_ROLE", '{"gp": 5}')
    config = health_source_config(tmp_path / "sources.toml", 9, 500)

    err = _one_line_exit_2(
        ["serve", "--config", str(config), "--port", "0"],
        capsys,
        str(policies / "data.json"),
        "not UTF-8",
    )
    _echoes_nothing(err)


# --- a folder named like a policy module ----------------------------------------------------------


@pytest.fixture
def folder_named_rego(tmp_path) -> Path:
    """The shipped policy, and a folder `shield.rego` holding the rules the officer meant it to
    hold, in a file without the .rego ending: skipped, they would not be loaded."""
    policies = shutil.copytree(POLICY_DIR, tmp_path / "policies")
    (policies / "shield.rego").mkdir()
    (policies / "shield.rego" / "shield").write_text(
        "package childlookup.shield\n\nimport rego.v1\n\ndefault allow := false\n"
    )
    return policies


WORKBENCH: dict[str, list[str]] = {
    "test": ["policy", "test", "{policies}"],
    "bundle": ["policy", "bundle", "--dir", "{policies}", "--out", "{out}"],
    "explain": [
        "policy",
        "explain",
        "--role",
        "gp",
        "--purpose",
        "DIRECT_CARE",
        "--dir",
        "{policies}",
    ],
    "diff": ["policy", "diff", str(POLICY_DIR), "{policies}"],
}
"""Each workbench command that reads a policy directory, `{policies}` and `{out}` to be filled."""


@pytest.mark.parametrize("command", WORKBENCH.values(), ids=WORKBENCH)
def test_a_folder_named_like_a_policy_module_is_refused_by_the_workbench(
    folder_named_rego, tmp_path, capsys, command
):
    out = tmp_path / "bundle.tar.gz"
    assert main([part.format(policies=folder_named_rego, out=out) for part in command]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "folder named like a policy module: shield.rego" in captured.out + captured.err
    assert not out.exists()


def test_a_gateway_will_not_start_on_a_folder_named_like_a_policy_module(
    folder_named_rego, tmp_path
):
    """In a process of its own: a gateway that did start would serve until stopped."""
    config = health_source_config(tmp_path / "sources.toml", 9, 500)
    env = {
        **os.environ,
        "CHILDLOOKUP_STATE_DIR": str(tmp_path / "state"),
        "CHILDLOOKUP_POLICY_DIR": str(folder_named_rego),
    }

    done = subprocess.run(
        [*CLI, "serve", "--config", str(config), "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    _failed_in_one_line(done, "shield.rego", "rename")


# --- a synthetic population whose writing fails ---------------------------------------------------


def test_a_population_file_that_cannot_be_written_whole_is_not_left_part_written(tmp_path):
    out = tmp_path / "population"
    done = _run_with_file_limit(
        "synth", "--seed", "7", "--children", "200", "--out", str(out), cwd=tmp_path
    )
    _failed_in_one_line(done, str(out / "health.jsonl"))
    assert list(out.iterdir()) == []


def test_a_population_file_where_a_folder_stands_is_one_line_and_leaves_no_partial(
    tmp_path, capsys
):
    out = tmp_path / "population"
    (out / "truth.jsonl").mkdir(parents=True)

    _one_line_exit_2(
        ["synth", "--seed", "7", "--children", "20", "--out", str(out)],
        capsys,
        f"cannot write {out / 'truth.jsonl'}",
    )
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]


def test_a_national_population_written_part_way_over_another_cannot_be_loaded(tmp_path, capsys):
    out = tmp_path / "national"
    synth = ["synth", "--national", *SMALL_NATIONAL, "--seed", "7", "--out", str(out)]
    assert main([*synth, "--children", "20"]) == 0
    assert load_national(out).children == 20

    done = _run_with_file_limit(*synth, "--children", "300", cwd=tmp_path)

    _failed_in_one_line(done, "cannot write", str(out / "records"))
    assert not (out / "national.json").exists()
    with pytest.raises(FileNotFoundError):
        load_national(out)
    assert list(out.rglob(".*")) == []
