"""CHILDLOOKUP_PORTAL_OIDC_DISCOVERY_URL is checked at start-up, as CHILDLOOKUP_JWKS_URL is: read
as any text, a mistyped one started the gateway and was found only when a page was loaded (the
portal then said sign-in is unavailable to every practitioner)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.identity_provider import discovery_url

MISTYPED = [
    "https://[::1/.well-known/openid-configuration",
    "https://\x00idp.example.test/.well-known/openid-configuration",
    "idp.example.test/.well-known/openid-configuration",
    "ftp://idp.example.test/.well-known/openid-configuration",
]


@pytest.fixture
def environment(monkeypatch):
    """Start-up's environment with no CHILDLOOKUP_ setting but those a test sets."""
    for name in list(os.environ):
        if name.startswith("CHILDLOOKUP_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("url", MISTYPED)
def test_a_discovery_url_that_is_no_http_url_stops_start_up(environment, url):
    with pytest.raises(ValidationError, match="portal_oidc_discovery_url") as refused:
        Settings(portal_oidc_discovery_url=url)
    assert "is not an http(s) URL" in str(refused.value)


def test_the_environment_variable_is_checked_as_it_is_read(environment):
    environment.setenv("CHILDLOOKUP_PORTAL_OIDC_DISCOVERY_URL", MISTYPED[0])
    with pytest.raises(ValidationError, match="invalid IPv6 address"):
        Settings()


def test_a_discovery_url_is_kept_as_the_text_the_portal_fetches(environment):
    url = "https://idp.example.test/realms/children/.well-known/openid-configuration"
    environment.setenv("CHILDLOOKUP_PORTAL_OIDC_DISCOVERY_URL", url)
    settings = Settings()
    assert discovery_url(settings.issuer, settings.portal_oidc_discovery_url) == url


def test_unset_the_issuers_own_discovery_document_is_read(environment):
    environment.setenv("CHILDLOOKUP_ISSUER", "https://idp.example.test/realms/children")
    settings = Settings()
    assert settings.portal_oidc_discovery_url is None
    assert discovery_url(settings.issuer, settings.portal_oidc_discovery_url) == (
        "https://idp.example.test/realms/children/.well-known/openid-configuration"
    )
