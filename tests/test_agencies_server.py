"""Many agencies in one server process (connectors.agencies): each at its own path, with its own
records, keys and audience; and a national population served in shards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from connectors.agencies import (
    STATUS_PATH,
    AgencyHoldings,
    HostedAgency,
    Shard,
    agencies_app,
    hosted_agencies,
    locator_publication,
    read_shard,
    shard_of,
)
from connectors.locator import (
    DEFAULT_LOCATOR_ID,
    LOCATE_PATH,
    LocateRequest,
    LocateResponse,
    PseudonymRef,
    new_pseudonym_key,
    pseudonym,
)
from connectors.national import NationalAgency, agency_name, organisation
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import BackgroundServer, bind_socket, socket_url
from connectors.trust import (
    JWKS_PATH,
    SIGNATURE_HEADER,
    KeySource,
    PublishedKeys,
    StaticKey,
    TrustError,
    verify_answer,
    write_public_key,
)
from locator.app import app_from_settings
from locator.settings import Settings as LocatorSettings
from tests.factories import NHS, OTHER_NHS, health_record, social_care_record
from tests.stack import GATEWAY_KEY, GATEWAY_SIGNER, eventually, gateway_verifier

PROVIDES = (FieldId.NAME, FieldId.INVOLVEMENTS)
AGENCIES = (
    AgencyHoldings("la_e0800001", "social_care", (social_care_record(NHS),), PROVIDES),
    AgencyHoldings(
        "gp_y00001", "gp_practice", (health_record(OTHER_NHS, record_id="GP-1"),), PROVIDES
    ),
)


@pytest.fixture(scope="module")
def hosted() -> list[HostedAgency]:
    return hosted_agencies(AGENCIES)


@pytest.fixture(scope="module")
def server(hosted: list[HostedAgency]) -> Iterator[httpx.Client]:
    app = agencies_app(hosted, gateway_verifier(GATEWAY_KEY.public_key()))
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield client


def _lookup(client: httpx.Client, agency: str, nhs: str, audience: str | None = None):
    body = (
        LookupRequest(
            request_id="req-1",
            deadline=datetime.now(UTC) + timedelta(seconds=5),
            purpose="SAFEGUARDING_ENQUIRY",
            caller=Caller(role="social_worker", organisation="LA-E0800001"),
            identifiers=Identifiers(nhs_number=nhs),
            fields=[FieldId.NAME],
        )
        .model_dump_json()
        .encode()
    )
    headers = {
        "authorization": GATEWAY_SIGNER.authorization(audience or agency, body),
        "content-type": "application/json",
    }
    return client.post(f"/{agency}{LOOKUP_PATH}", content=body, headers=headers)


def test_each_path_reaches_its_own_agency_and_records(server: httpx.Client) -> None:
    la = LookupResponse.model_validate_json(_lookup(server, "la_e0800001", NHS).content)
    gp = LookupResponse.model_validate_json(_lookup(server, "gp_y00001", NHS).content)

    assert (la.source, [r.record_id for r in la.records]) == ("la_e0800001", ["LA-000001"])
    assert (gp.source, gp.records) == ("gp_y00001", [])


def _verify(answer: httpx.Response, keys: KeySource, source: str) -> None:
    asyncio.run(
        verify_answer(answer.headers[SIGNATURE_HEADER], answer.content, keys, source=source)
    )


def test_each_agency_signs_with_its_own_published_key(server: httpx.Client) -> None:
    answer = _lookup(server, "gp_y00001", OTHER_NHS)
    own = PublishedKeys(str(server.base_url.join(f"/gp_y00001{JWKS_PATH}")))
    other = PublishedKeys(str(server.base_url.join(f"/la_e0800001{JWKS_PATH}")))

    _verify(answer, own, "gp_y00001")
    with pytest.raises(TrustError):
        _verify(answer, other, "gp_y00001")


def test_the_published_key_is_the_agencys_own(
    server: httpx.Client, hosted: list[HostedAgency]
) -> None:
    answer = _lookup(server, "la_e0800001", NHS)

    _verify(answer, StaticKey(hosted[0].key.public_key()), "la_e0800001")


def test_a_request_signed_for_another_agency_is_refused(server: httpx.Client) -> None:
    answer = _lookup(server, "la_e0800001", NHS, audience="gp_y00001")

    assert answer.status_code == 401
    assert ErrorResponse.model_validate_json(answer.content).error.code is ErrorCode.UNAUTHENTICATED


@pytest.mark.parametrize("path", ["/la_e0800002/v1/lookup", "/", "/_nobody/healthz"])
def test_an_unknown_agency_is_a_protocol_404(server: httpx.Client, path: str) -> None:
    answer = server.post(path, json={})

    assert answer.status_code == 404
    assert ErrorResponse.model_validate_json(answer.content).error.code is ErrorCode.BAD_REQUEST


def test_the_server_says_how_many_agencies_it_hosts(server: httpx.Client) -> None:
    assert server.get(STATUS_PATH).json() == {"agencies": 2}


# --- shards of a national population ------------------------------------------------------------

NATIONAL_AGENCIES = [
    NationalAgency(
        name=agency_name(kind, code),
        kind=kind,
        code=code,
        display_name=f"Agency {code}",
        organisation=organisation(kind, code),
        local_authority="E0800001",
    ).model_dump()
    for kind, codes in (
        ("social_care", [f"E08{n:05d}" for n in range(1, 5)]),
        ("gp_practice", [f"Y{n:05d}" for n in range(1, 7)]),
        ("school", [str(n) for n in range(100001, 100009)]),
    )
    for code in codes
]


def _national(directory: Path) -> Path:
    """A national population's layout (`childlookup synth --national`), one record per agency."""
    records = directory / "records"
    records.mkdir(parents=True)
    catalogue = {"seed": 1, "children": 18, "agencies": NATIONAL_AGENCIES, "postcode_districts": {}}
    (directory / "national.json").write_text(json.dumps(catalogue))
    by_kind: dict[str, list[str]] = {}
    names = [a["name"] for a in NATIONAL_AGENCIES] + ["health", "education"]
    kinds = [a["kind"] for a in NATIONAL_AGENCIES] + ["health", "education"]
    for n, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        record = health_record(f"90000000{n:02d}", record_id=f"R-{name}")
        line = json.dumps({"agency": name, "record": record.model_dump(mode="json")})
        by_kind.setdefault(kind, []).append(line)
    for kind, lines in by_kind.items():
        (records / f"{kind}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def test_shards_split_the_agencies_between_them_exactly(tmp_path: Path) -> None:
    directory = _national(tmp_path)
    shards = [{a.name for a in read_shard(directory, Shard(i, 3))} for i in (1, 2, 3)]
    everyone = {a["name"] for a in NATIONAL_AGENCIES} | {"health", "education"}

    assert set().union(*shards) == everyone
    assert sum(len(shard) for shard in shards) == len(everyone)
    assert all(shards)


def test_a_shard_serves_exactly_its_agencies_each_with_its_records(tmp_path: Path) -> None:
    shard = Shard(2, 3)
    agencies = read_shard(_national(tmp_path), shard)
    app = agencies_app(hosted_agencies(agencies), None)
    everyone = [a["name"] for a in NATIONAL_AGENCIES]

    with BackgroundServer(app) as running, httpx.Client(base_url=running.url) as client:
        served = {name for name in everyone if client.get(f"/{name}/healthz").status_code == 200}

    assert served == {name for name in everyone if shard_of(name, 3) == 2}
    assert all(len(agency.records) == 1 for agency in agencies)
    assert all(a.records[0].record_id == f"R-{a.name}" for a in agencies)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_shard_is_one_of_n(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


# --- publishing to the locator -------------------------------------------------------------------


def test_hosted_agencies_publish_their_holdings_to_a_real_locator(tmp_path: Path) -> None:
    agencies = hosted_agencies(
        [*AGENCIES, AgencyHoldings("health", "health", (health_record(NHS),), PROVIDES)]
    )
    sock = bind_socket("127.0.0.1", 0)
    served_at = socket_url(sock)
    pseudonym_keys = [new_pseudonym_key("2026-11")]
    locator = _locator(tmp_path, served_at, [a.name for a in AGENCIES])

    with BackgroundServer(locator) as running_locator:
        publication = locator_publication(
            agencies, locator_url=running_locator.url, pseudonym_keys=pseudonym_keys
        )
        app = agencies_app(agencies, None, publication)
        with BackgroundServer(app, sock=sock), httpx.Client(base_url=served_at) as client:
            status = eventually(lambda: _all_published(client))
        holders = _locate(running_locator.url, pseudonym(pseudonym_keys[0], "nhs_number", NHS))

    assert status == {"agencies": 3, "publishers": 2, "published": 2, "failing": 0}
    assert holders == ["la_e0800001"]  # health, asked on every lookup, publishes nothing


def _locator(tmp_path: Path, agencies_url: str, names: list[str]) -> Starlette:
    """The locator (the `locator` package) letting `names` publish, served at `agencies_url`."""
    agencies_file = tmp_path / "agencies.json"
    entries = [{"name": n, "jwks_url": f"{agencies_url}/{n}{JWKS_PATH}"} for n in names]
    agencies_file.write_text(json.dumps({"agencies": entries}))
    gateway_key = tmp_path / "gateway.pub.pem"
    write_public_key(gateway_key, GATEWAY_KEY.public_key())
    settings = LocatorSettings(
        state_dir=tmp_path, agencies_file=agencies_file, gateway_public_key_file=gateway_key
    )
    return app_from_settings(settings)


def _all_published(client: httpx.Client) -> dict[str, Any] | None:
    status: dict[str, Any] = client.get(STATUS_PATH).json()
    status.pop("all_published_s")
    return status if status["published"] == status["publishers"] else None


def _locate(locator_url: str, value: str) -> list[str]:
    question = LocateRequest(
        request_id="loc-1", pseudonyms=[PseudonymRef(key_version="2026-11", value=value)]
    )
    body = question.model_dump_json().encode()
    answer = httpx.post(
        locator_url + LOCATE_PATH,
        content=body,
        headers={"authorization": GATEWAY_SIGNER.authorization(DEFAULT_LOCATOR_ID, body)},
    )
    located = LocateResponse.model_validate_json(answer.content)
    return sorted({agency for holder in located.holders for agency in holder.agencies})
