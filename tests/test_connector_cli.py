"""The connector command line as an agency's operator uses it: `connector serve` over each kind of
record store as a real process, `connector import` and `connector index` on a real database, and
one clear line for each mistake."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.cli import main
from connectors.ctf import write_ctf_folder, write_school_contacts
from connectors.fhir import PDS_PATH, create_fhir_sandbox_app
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import BackgroundServer, free_port
from connectors.sql.la_case_records import MAPPING
from tests.factories import NHS, health_record, school_record
from tests.processes import CLI, stop, wait_for
from tests.test_sql_import import EPISODES, HEADER, UPN, census, cin_child


def _serve(*store: str | Path, agency: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "connector", "serve", "--agency", agency, "--port", str(port), *map(str, store)],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/healthz", process)
    return process, url


def _lookup(url: str, identifiers: Identifiers, fields: list[FieldId]) -> LookupResponse:
    request = LookupRequest(
        request_id="cli-1",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="CHILD_PROTECTION_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA-TEST"),
        identifiers=identifiers,
        fields=fields,
    )
    response = httpx.post(url + LOOKUP_PATH, content=request.model_dump_json(), timeout=10)
    assert response.status_code == 200, response.text
    return LookupResponse.model_validate_json(response.content)


def test_a_cin_census_imported_then_served_from_sql(tmp_path, capsys):
    database = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    (tmp_path / "cin.xml").write_text(census(cin_child("C-1")), encoding="utf-8")
    assert main(["import", "--sql", database, "--cin-census", str(tmp_path / "cin.xml")]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["index", "--sql", database, "--mapping", str(MAPPING)]) == 0
    assert "1 children" in capsys.readouterr().out

    connector, url = _serve("--sql", database, "--mapping", MAPPING, agency="social_care")
    try:
        answer = _lookup(url, Identifiers(upn=UPN), [FieldId.CHILD_PROTECTION_PLAN])
    finally:
        stop(connector)
    [record] = answer.records
    assert record.indicators is not None
    assert record.indicators.child_protection_plan is True


def test_ssda903_files_import_with_their_reference_date(tmp_path, capsys):
    database = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    header.write_text(HEADER.format(upn=UPN), encoding="utf-8")
    episodes.write_text(EPISODES, encoding="utf-8")
    command = ["import", "--sql", database, "--ssda903", str(header), str(episodes)]
    assert main(command) == 2
    assert "--reference-date" in capsys.readouterr().err
    assert main([*command, "--reference-date", "2024-03-31"]) == 0
    assert "as of 2024-03-31" in capsys.readouterr().out


def test_a_malformed_return_is_one_line_naming_the_place_and_nothing_is_imported(tmp_path, capsys):
    database = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    broken = census(cin_child("C-1", born="2015-13-45"))
    (tmp_path / "cin.xml").write_text(broken, encoding="utf-8")
    assert main(["import", "--sql", database, "--cin-census", str(tmp_path / "cin.xml")]) == 2
    err = capsys.readouterr().err
    assert "cin.xml" in err
    assert "2015-13-45" not in err  # never the child's data


def test_a_ctf_folder_served_with_its_school_contacts(tmp_path):
    """The school's phone is not in a CTF: it comes from the contacts file."""
    write_ctf_folder([school_record()], tmp_path / "ctf")
    write_school_contacts([school_record()], tmp_path / "schools.json")
    connector, url = _serve(
        "--ctf",
        tmp_path / "ctf",
        "--school-contacts",
        tmp_path / "schools.json",
        agency="education",
    )
    try:
        upn = school_record().identifiers.upn
        answer = _lookup(url, Identifiers(upn=upn), [FieldId.NAME, FieldId.SCHOOL])
    finally:
        stop(connector)
    [record] = answer.records
    assert record.school == school_record().school


def test_a_fhir_server_served_with_a_bearer_token_from_a_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n", encoding="utf-8")
    sandbox = create_fhir_sandbox_app([health_record()], bearer_tokens=["s3cret-token"])
    with BackgroundServer(sandbox) as fhir:
        connector, url = _serve(
            "--fhir", fhir.url + PDS_PATH, "--fhir-token-file", token, agency="health"
        )
        try:
            answer = _lookup(url, Identifiers(nhs_number=NHS), [FieldId.NAME])
        finally:
            stop(connector)
    [record] = answer.records
    assert record.name == health_record().name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "one of --records, --fhir, --sql, --ctf"),
        (["--records", "a.jsonl", "--ctf", "dir"], "one of --records, --fhir, --sql, --ctf"),
        (["--sql", "sqlite+aiosqlite:///x.db"], "--sql needs --mapping"),
        (["--fhir", "http://127.0.0.1:1", "--fhir-client-id", "x"], "OAuth client credentials"),
    ],
)
def test_a_store_named_wrongly_is_one_clear_line(arguments, message, capsys):
    assert main(["serve", "--agency", "health", "--port", "0", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
