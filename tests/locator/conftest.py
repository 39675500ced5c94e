"""A real locator on 127.0.0.1 for each test, over SQLite or a PostgreSQL schema of its own, with
three registered agencies (two with key files, one publishing its keys as a JWKS) and a gateway
key; every request body it receives is recorded at the ASGI edge."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.locator import (
    LOCATE_PATH,
    LocateRequest,
    LocatorPublisher,
    PseudonymKey,
    PseudonymRef,
    new_pseudonym_key,
)
from connectors.serving import BackgroundServer
from connectors.trust import jwks_document, request_authorization, write_public_key
from locator.app import app_from_settings
from locator.settings import Settings
from locator.store import Store

AGENCIES = ("la_e0800001", "gp_y00001", "school_100001")
JWKS_AGENCY = "school_100001"
GATEWAY_ID = "childlookup-gateway"
LOCATOR_ID = "childlookup-locator"


class Recording:
    """The app, with every HTTP request's path, headers and body kept as it arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.bodies: list[bytes] = []
        self.heads: list[tuple[str, list[tuple[bytes, bytes]]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self.heads.append((scope["path"] + "?" + scope["query_string"].decode(), scope["headers"]))

        async def recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.bodies.append(message.get("body", b""))
            return message

        await self._app(scope, recorded, send)


@dataclass
class RunningLocator:
    url: str
    settings: Settings
    agency_keys: dict[str, ec.EllipticCurvePrivateKey]
    gateway_key: ec.EllipticCurvePrivateKey
    recording: Recording
    pseudonym_keys: list[PseudonymKey] = field(default_factory=list)

    def publisher(
        self,
        agency: str,
        client: httpx.AsyncClient,
        keys: Sequence[PseudonymKey] | None = None,
        **options: Any,
    ) -> LocatorPublisher:
        return LocatorPublisher(
            agency,
            self.url,
            self.agency_keys[agency],
            self.pseudonym_keys if keys is None else keys,
            client,
            **options,
        )

    def store(self) -> Store:
        """Another handle on the locator's store, as an operator's CLI would open it."""
        return Store.open(self.settings.store_url, schema=self.settings.database_schema)

    async def locate(
        self,
        client: httpx.AsyncClient,
        refs: Sequence[tuple[str, str]],
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        issuer: str = GATEWAY_ID,
        request_id: str = "req-1",
    ) -> httpx.Response:
        body = (
            LocateRequest(
                request_id=request_id,
                pseudonyms=[PseudonymRef(key_version=v, value=p) for v, p in refs],
            )
            .model_dump_json()
            .encode()
        )
        authorization = request_authorization(
            key or self.gateway_key, body, issuer=issuer, audience=LOCATOR_ID
        )
        return await client.post(
            self.url + LOCATE_PATH,
            content=body,
            headers={"authorization": authorization, "content-type": "application/json"},
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def locator_database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings naming an empty store: a SQLite file, or a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        return {"database_url": f"sqlite:///{tmp_path / 'locator.sqlite3'}"}
    url, schema = request.getfixturevalue("postgres_schema")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return {"database_url": url, "database_schema": schema}


@pytest.fixture
def locator(tmp_path: Path, locator_database: dict[str, Any]) -> Iterator[RunningLocator]:
    agency_keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in AGENCIES}
    jwks_app = Starlette(
        routes=[
            Route(
                "/jwks.json",
                lambda request: JSONResponse(
                    jwks_document([agency_keys[JWKS_AGENCY].public_key()])
                ),
            )
        ]
    )
    entries: list[dict[str, str]] = []
    with BackgroundServer(jwks_app) as jwks_server:
        for name, key in agency_keys.items():
            if name == JWKS_AGENCY:
                entries.append({"name": name, "jwks_url": jwks_server.url + "/jwks.json"})
            else:
                write_public_key(tmp_path / f"{name}.pub.pem", key.public_key())
                entries.append({"name": name, "public_key_file": f"{name}.pub.pem"})
        (tmp_path / "agencies.json").write_text(json.dumps({"agencies": entries}))
        gateway_key = ec.generate_private_key(ec.SECP256R1())
        write_public_key(tmp_path / "gateway.pub.pem", gateway_key.public_key())
        settings = Settings(
            state_dir=tmp_path / "state",
            agencies_file=tmp_path / "agencies.json",
            gateway_public_key_file=tmp_path / "gateway.pub.pem",
            **locator_database,
        )
        recording = Recording(app_from_settings(settings))
        with BackgroundServer(recording) as server:
            yield RunningLocator(
                server.url,
                settings,
                agency_keys,
                gateway_key,
                recording,
                [new_pseudonym_key("2026-11")],
            )
