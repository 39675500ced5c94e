"""The locator's settings, its operational endpoints, and the pseudonym key files."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.locator import (
    PseudonymKey,
    load_pseudonym_keys,
    new_pseudonym_key,
    pseudonym,
    write_pseudonym_keys,
)
from connectors.serving import BackgroundServer
from connectors.trust import write_public_key
from gateway.cli import main
from locator.app import app_from_settings
from locator.settings import Settings, load_agencies
from tests.locator.conftest import RunningLocator


def test_production_refuses_what_dev_would_generate(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_MODE", "production")

    with pytest.raises(ValueError, match=r"SIGNING_KEY_FILE.*AGENCIES_FILE.*DATABASE_URL.*GATEWAY"):
        Settings()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_ID", "locator-north")
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_DATABASE_URL", "postgresql://locator@db/locator")
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_GATEWAY_JWKS_URLS", "https://a/jwks, https://b/jwks")

    settings = Settings()

    assert settings.locator_id == "locator-north"
    assert settings.store_url == "postgresql+psycopg://locator@db/locator"
    assert settings.gateway_keys == ["https://a/jwks", "https://b/jwks"]


def test_dev_keeps_its_store_in_the_state_dir(tmp_path: Path):
    settings = Settings(state_dir=tmp_path)

    assert settings.store_url == f"sqlite+aiosqlite:///{tmp_path / 'locator.sqlite3'}"


def test_an_agency_names_exactly_one_key_source(tmp_path: Path):
    (tmp_path / "agencies.json").write_text(
        json.dumps({"agencies": [{"name": "la_e0800001", "jwks_url": "x", "public_key_file": "k"}]})
    )

    with pytest.raises(ValueError, match="exactly one"):
        load_agencies(tmp_path / "agencies.json")


def test_pseudonyms_are_keyed_and_normalised():
    key, other = PseudonymKey("a", b"k" * 32), PseudonymKey("b", b"j" * 32)

    assert pseudonym(key, "nhs_number", "943 476 5919") == pseudonym(
        key, "nhs_number", "9434765919"
    )
    assert pseudonym(key, "upn", " h801200001001") == pseudonym(key, "upn", "H801200001001")
    assert pseudonym(key, "upn", "9434765919") != pseudonym(key, "nhs_number", "9434765919")
    assert pseudonym(key, "upn", "X") != pseudonym(other, "upn", "X")
    assert len(pseudonym(key, "upn", "X")) == 43
    assert "k" * 32 not in repr(key)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PseudonymKey("v1", b"short")


def test_a_key_file_round_trips_readable_by_its_owner_only(tmp_path: Path):
    keys = (new_pseudonym_key("2027-05"), new_pseudonym_key("2026-11"))
    write_pseudonym_keys(tmp_path / "keys.json", keys)

    assert load_pseudonym_keys(tmp_path / "keys.json") == keys
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0


def test_keygen_adds_a_current_version(tmp_path: Path):
    path = tmp_path / "keys.json"
    assert main(["locator", "keygen", str(path), "--version", "2026-11"]) == 0
    assert main(["locator", "keygen", str(path), "--version", "2026-11"]) == 2
    assert main(["locator", "keygen", str(path), "--version", "2027-05", "--add"]) == 0

    assert [key.version for key in load_pseudonym_keys(path)] == ["2027-05", "2026-11"]


@pytest.mark.anyio
async def test_the_operational_endpoints_answer(locator: RunningLocator):
    async with httpx.AsyncClient(base_url=locator.url) as client:
        health, ready, jwks, status = [
            await client.get(path)
            for path in ("/healthz", "/readyz", "/.well-known/jwks.json", "/v1/status")
        ]

    assert (health.status_code, ready.status_code, status.status_code) == (200, 200, 200)
    assert jwks.json()["keys"][0]["alg"] == "ES256"
    assert status.json() == {"versions": [], "agencies": 0}


def test_a_status_token_that_is_not_ascii_is_a_wrong_token_not_a_500(tmp_path: Path) -> None:
    """hmac.compare_digest raised TypeError on a str holding anything but ASCII: any caller could
    make the status endpoint fail by sending one."""
    gateway_key = ec.generate_private_key(ec.SECP256R1())
    write_public_key(tmp_path / "gateway.pub.pem", gateway_key.public_key())
    settings = Settings(
        state_dir=tmp_path / "state",
        gateway_public_key_file=tmp_path / "gateway.pub.pem",
        status_token="s3cret-status-token",
    )
    remote = {"x-forwarded-for": "203.0.113.9"}  # as a proxy on this host says: not loopback
    with BackgroundServer(app_from_settings(settings)) as server:
        wrong = httpx.get(
            server.url + "/v1/status",
            headers=remote | {"authorization": "Bearer \u00e9".encode("latin-1")},
        )
        right = httpx.get(
            server.url + "/v1/status",
            headers=remote | {"authorization": "Bearer s3cret-status-token"},
        )
    assert wrong.status_code == 403
    assert right.status_code == 200
