"""`childlookup demo --agency-formats`: the demo's agencies answering from the formats agencies
really run, in place of the reference connectors' JSON Lines files.

- health: the FHIR connector, reading a FHIR test server shaped like NHS PDS and CP-IS (served
  here too, with the synthetic health records as Patients and the social care plans as CP-IS
  Flags), authenticating as NHS APIs require: OAuth 2.0 client credentials with a signed JWT.
- social care: the SQL connector on SQLite, through the worked local authority case records
  mapping, with the synthetic social care records written into those tables.
- education: the CTF connector over a folder of Common Transfer Files, one per school, with the
  schools' safeguarding leads in a contacts file.

The same synthetic population is written into each format, so a practitioner sees the same
children either way - less what each real format cannot carry (docs/connectors.md).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from connectors.ctf import EDUCATION_CTF, create_ctf_app, write_ctf_folder, write_school_contacts
from connectors.fhir import (
    CPIS_PATH,
    HEALTH_FHIR_PROFILE,
    PDS_PATH,
    TOKEN_PATH,
    FhirSandbox,
    SandboxClient,
    SignedJwtAuth,
    create_fhir_app,
)
from connectors.reference import AgencyProfile
from connectors.serving import ServedApp, bind_socket
from connectors.sql import create_sql_app, sql_profile
from connectors.sql.la_case_records import MAPPING, write_records
from connectors.sql.mapping import load_mapping
from connectors.synthetic import Population
from connectors.trust import AnswerSigner, RequestVerifier, write_private_key

_FHIR_CLIENT_ID: Final = "childlookup-demo-health-connector"
_FHIR_KEY_ID: Final = "demo-1"


@dataclass(frozen=True)
class FormatConnector:
    """One agency's connector in its real format, and any server it reads that the demo runs too
    (the FHIR test server)."""

    profile: AgencyProfile
    build: Callable[[RequestVerifier, AnswerSigner], Starlette]
    reads: str
    """What the connector answers from, for the banner."""
    backing: tuple[ServedApp, ...] = ()


def format_connectors(
    population: Population, population_dir: Path, state: Path, host: str
) -> dict[str, FormatConnector]:
    """The three agencies' connectors over their real formats, written from `population` (whose
    JSON Lines files are in `population_dir`) into `population_dir`; keys in `state`."""
    return {
        "health": _fhir(population_dir, state, host),
        "social_care": _sql(population, population_dir),
        "education": _ctf(population, population_dir),
    }


def _fhir(population_dir: Path, state: Path, host: str) -> FormatConnector:
    """The FHIR test server, loaded from the health and social care files, and the connector
    reading it with its own registered client key."""
    key_file = state / "fhir-client-key.pem"
    private_key = _rsa_key(key_file)
    sandbox = FhirSandbox.from_files(
        population_dir / "health.jsonl",
        population_dir / "social_care.jsonl",
        clients=(SandboxClient(_FHIR_CLIENT_ID, _FHIR_KEY_ID, private_key.public_key()),),
    )
    served = ServedApp("fhir-test-server", sandbox.app, bind_socket(host, 0))

    def build(verifier: RequestVerifier, signer: AnswerSigner) -> Starlette:
        auth = SignedJwtAuth.from_pem_file(
            served.url + TOKEN_PATH, _FHIR_CLIENT_ID, key_file, _FHIR_KEY_ID
        )
        return create_fhir_app(
            pds_url=served.url + PDS_PATH,
            cpis_url=served.url + CPIS_PATH,
            auth=auth,
            verifier=verifier,
            signer=signer,
        )

    reads = f"FHIR R4: PDS at {served.url}{PDS_PATH}, CP-IS at {served.url}{CPIS_PATH}"
    return FormatConnector(HEALTH_FHIR_PROFILE, build, reads, (served,))


def _sql(population: Population, population_dir: Path) -> FormatConnector:
    """The worked case records schema on SQLite, rewritten from the population at each start."""
    database = population_dir / "social_care.sqlite"
    database.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{database}"
    asyncio.run(write_records(url, population.social_care))

    def build(verifier: RequestVerifier, signer: AnswerSigner) -> Starlette:
        return create_sql_app(database_url=url, mapping=MAPPING, verifier=verifier, signer=signer)

    return FormatConnector(sql_profile(load_mapping(MAPPING)), build, f"SQL: {database}")


def _ctf(population: Population, population_dir: Path) -> FormatConnector:
    """A folder of Common Transfer Files, one per school, rewritten at each start."""
    folder = population_dir / "ctf"
    shutil.rmtree(folder, ignore_errors=True)
    write_ctf_folder(population.education, folder)
    contacts = population_dir / "school-contacts.json"
    write_school_contacts(population.education, contacts)

    def build(verifier: RequestVerifier, signer: AnswerSigner) -> Starlette:
        return create_ctf_app(
            folder=folder, school_contacts=contacts, verifier=verifier, signer=signer
        )

    return FormatConnector(EDUCATION_CTF, build, f"Common Transfer Files in {folder}")


def _rsa_key(path: Path) -> rsa.RSAPrivateKey:
    """The demo connector's RSA key for its client assertions, made once (owner-only)."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private_key(path, key)
    return key
