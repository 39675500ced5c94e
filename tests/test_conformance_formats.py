"""Every connector kind in this repository passes the conformance kit: the FHIR connector over
the FHIR test server, the SQL connector over the worked case records schema (SQLite and
PostgreSQL), and the CTF connector over a folder of transfer files - each loaded with the
conformance dataset in its own format, as an agency would load its test system. (The reference
connector's run is in test_conformance.py.)"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from starlette.types import ASGIApp

from connectors.conformance import ConformanceOptions, Outcome, conformance_records, run_conformance
from connectors.ctf import EDUCATION_CTF, create_ctf_app, write_ctf_folder, write_school_contacts
from connectors.fhir import CPIS_PATH, HEALTH_FHIR_PROFILE, PDS_PATH, FhirSandbox, create_fhir_app
from connectors.records import read_records
from connectors.reference import AgencyProfile
from connectors.serving import BackgroundServer, free_port
from connectors.sql import create_sql_app, load_mapping, sql_profile
from connectors.sql.la_case_records import MAPPING, write_records
from connectors.trust import JWKS_PATH, AnswerSigner, PublishedKeys, RequestVerifier

ISSUER = "childlookup-conformance"

Build = Callable[[RequestVerifier, AnswerSigner, ExitStack], ASGIApp]


def _run_kit(tmp_path: Path, profile: AgencyProfile, build: Build) -> tuple[set[str], str]:
    """Serve the connector `build` makes, trusting the kit's keys, run every check against it;
    return the names of the checks that failed and what the kit printed."""
    jwks_port = free_port()
    verifier = RequestVerifier(
        PublishedKeys(f"http://127.0.0.1:{jwks_port}{JWKS_PATH}"), issuer=ISSUER
    )
    signer = AnswerSigner(ec.generate_private_key(ec.SECP256R1()))
    out = io.StringIO()
    with ExitStack() as stack:
        server = stack.enter_context(BackgroundServer(build(verifier, signer, stack)))
        report = run_conformance(
            ConformanceOptions(
                url=server.url,
                agency=profile.name,
                fields=profile.provides,
                key_file=tmp_path / "kit-key.pem",
                issuer=ISSUER,
                jwks_port=jwks_port,
            ),
            out,
        )
    return set(report.named(Outcome.FAIL)), out.getvalue()


def _dataset(tmp_path: Path, profile: AgencyProfile) -> Path:
    """The conformance children as this kind of agency holds them, as JSON Lines."""
    path = tmp_path / f"{profile.name}.jsonl"
    records = conformance_records(profile.name, fields=profile.provides)
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


def test_the_fhir_connector_passes(tmp_path):
    health = _dataset(tmp_path, HEALTH_FHIR_PROFILE)
    social_care = tmp_path / "social_care.jsonl"
    social_care.write_text(
        "".join(r.model_dump_json() + "\n" for r in conformance_records("social_care")),
        encoding="utf-8",
    )

    def build(verifier: RequestVerifier, signer: AnswerSigner, stack: ExitStack) -> ASGIApp:
        sandbox = stack.enter_context(
            BackgroundServer(FhirSandbox.from_files(health, social_care).app)
        )
        return create_fhir_app(
            pds_url=sandbox.url + PDS_PATH,
            cpis_url=sandbox.url + CPIS_PATH,
            verifier=verifier,
            signer=signer,
        )

    failed, printed = _run_kit(tmp_path, HEALTH_FHIR_PROFILE, build)
    assert failed == set(), printed


def test_the_sql_connector_passes(tmp_path, database_url):
    profile = sql_profile(load_mapping(MAPPING))
    dataset = _dataset(tmp_path, profile)
    asyncio.run(write_records(database_url, read_records(dataset)))

    def build(verifier: RequestVerifier, signer: AnswerSigner, stack: ExitStack) -> ASGIApp:
        return create_sql_app(
            database_url=database_url, mapping=MAPPING, verifier=verifier, signer=signer
        )

    failed, printed = _run_kit(tmp_path, profile, build)
    assert failed == set(), printed


def test_the_ctf_connector_passes(tmp_path):
    pupils = read_records(_dataset(tmp_path, EDUCATION_CTF))
    write_ctf_folder(pupils, tmp_path / "ctf")
    write_school_contacts(pupils, tmp_path / "schools.json")

    def build(verifier: RequestVerifier, signer: AnswerSigner, stack: ExitStack) -> ASGIApp:
        return create_ctf_app(
            folder=tmp_path / "ctf",
            school_contacts=tmp_path / "schools.json",
            verifier=verifier,
            signer=signer,
        )

    failed, printed = _run_kit(tmp_path, EDUCATION_CTF, build)
    assert failed == set(), printed
