"""A portal on another origin calls /graphql from the browser (gateway.cors): only origins
configured exactly are let in, preflights need no token, and every answer to them - refusals
included - can be read by the portal."""

import httpx
import pytest

from gateway.config import Settings
from tests.factories import health_record
from tests.stack import reference_connectors, running_gateway

PORTAL = "https://portal.example.org"
ELSEWHERE = "https://portal.example.org.evil.test"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cors")
    with reference_connectors(tmp, {"health": [health_record()]}) as configured:
        yield configured


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, sources):
    settings = {"cors_origins": (PORTAL, "http://localhost:5173"), "cors_max_age_s": 600}
    settings |= {"lookups_per_user_per_minute": 1}
    with running_gateway(tmp_path_factory.mktemp("gateway"), sources, **settings) as running:
        yield running


def _preflight(url, origin, **headers):
    return httpx.options(
        f"{url}/graphql",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
            **headers,
        },
    )


def _cors_headers(response):
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_a_preflight_from_a_listed_origin_is_204_without_a_token(gateway):
    response = _preflight(gateway.url, PORTAL)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert response.headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["access-control-max-age"] == "600"
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    "origin", [ELSEWHERE, "https://evil.test", "http://portal.example.org", "null", "*"]
)
def test_an_origin_not_listed_exactly_is_never_echoed_back(gateway, origin):
    preflight = _preflight(gateway.url, origin)
    actual = httpx.post(
        f"{gateway.url}/graphql", json={"query": "{ __typename }"}, headers={"origin": origin}
    )
    assert preflight.status_code == 403
    assert _cors_headers(preflight) == {}
    assert _cors_headers(actual) == {}


def test_refusals_to_a_listed_origin_carry_its_origin_so_the_portal_can_read_them(gateway):
    token = gateway.token("gp", name="Portal User")
    query = {"query": '{ child(nhsNumber: "9434765919", purpose: DIRECT_CARE) { outcome } }'}
    responses = {
        status: httpx.post(f"{gateway.url}/graphql", json=query, headers=headers)
        for status, headers in [
            (401, {"origin": PORTAL}),
            (200, {"origin": PORTAL, "authorization": f"Bearer {token}"}),
            (429, {"origin": PORTAL, "authorization": f"Bearer {token}"}),
        ]
    }
    assert [r.status_code for r in responses.values()] == list(responses)
    for response in responses.values():
        assert response.headers["access-control-allow-origin"] == PORTAL
        assert "Origin" in response.headers["vary"]
    assert "retry-after" in responses[429].headers["access-control-expose-headers"]


def test_without_origins_configured_there_are_no_cors_headers_at_all(tmp_path, sources):
    with running_gateway(tmp_path, sources) as plain:
        preflight = _preflight(plain.url, PORTAL)
        actual = httpx.post(
            f"{plain.url}/graphql", json={"query": "{ __typename }"}, headers={"origin": PORTAL}
        )
    assert preflight.status_code == 405
    assert _cors_headers(preflight) == {}
    assert _cors_headers(actual) == {}


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://*.example.org",
        "https://portal.example.org/",
        "https://Portal.example.org",
        "https://portal.example.org:443",
        "portal.example.org",
        "null",
    ],
)
def test_an_origin_setting_that_could_never_match_exactly_is_refused_at_start_up(origin):
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origins=(origin,))


def test_origins_come_from_the_environment_as_a_json_list(monkeypatch):
    monkeypatch.setenv("CHILDLOOKUP_CORS_ORIGINS", f'["{PORTAL}"]')
    monkeypatch.setenv("CHILDLOOKUP_CORS_MAX_AGE_S", "120")
    settings = Settings()
    assert (settings.cors_origins, settings.cors_max_age_s) == ((PORTAL,), 120)
