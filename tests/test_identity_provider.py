"""The portal's OpenID Connect sign-in as the gateway serves it: the identity provider read from its
discovery document, /portal/config.json telling the page where to sign in, the page's
Content-Security-Policy allowing exactly the token endpoint's origin, and the test identity
provider refusing an exchange with the wrong PKCE verifier."""

import httpx
import jwt
import pytest

from gateway.identity_provider import DiscoveryError, parse_discovery, web_origin
from gateway.portal_site import content_security_policy
from tests.factories import NHS, health_record, social_care_record
from tests.oidc_provider import AUDIENCE, CLIENT_ID, production_portal, s256
from tests.stack import reference_connectors

ISSUER = "https://idp.example.test"
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": "https://login.example.test/authorize",
    "token_endpoint": "https://tokens.example.test:8443/oauth2/token",
    "code_challenge_methods_supported": ["S256"],
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path_factory.mktemp("idp"), records) as configured:
        yield configured


@pytest.fixture
def oidc(tmp_path, sources, production_settings):
    with production_portal(tmp_path, sources, production_settings(tmp_path)) as running:
        yield running


def _directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


def test_the_discovery_document_gives_the_endpoints_and_the_token_origin():
    endpoints = parse_discovery(DOCUMENT, ISSUER)
    assert endpoints.authorization_endpoint == "https://login.example.test/authorize"
    assert endpoints.token_origin == "https://tokens.example.test:8443"


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": "https://elsewhere.example.test"},
        {"token_endpoint": "http://tokens.example.test/token"},
        {"authorization_endpoint": None},
        {"code_challenge_methods_supported": ["plain"]},
    ],
)
def test_a_discovery_document_for_another_issuer_or_without_https_or_s256_is_refused(changes):
    with pytest.raises(DiscoveryError):
        parse_discovery(DOCUMENT | changes, ISSUER)


@pytest.mark.parametrize(
    "endpoint",
    [
        # Each would have gone into the page's Content-Security-Policy as written: a backslash
        # reads as '/' to a browser, so the URL still reached the provider while the header
        # gained `connect-src http:` and a first `frame-ancestors http:` (any site framing the
        # page); a control or non-Latin-1 character broke every answer under /portal/.
        "https://idp.example.test\\ http: ; frame-ancestors http: ;/token",
        "https://idp.example.test\\@evil.example.test/token",
        "https://idp.example.test\x0b/token",
        "https://idp.\u0101xample.test/token",
        "https://idp.example.test,evil.example.test/token",
        "https://idp.example.test'/token",
        "https://user@idp.example.test/token",
        "https://idp.example.test:99999/token",
        "https://idp.example.test:port/token",
        "https://idp_1.example.test/token",
    ],
)
def test_an_endpoint_that_is_not_plainly_a_url_is_refused_never_put_in_the_pages_policy(endpoint):
    with pytest.raises(DiscoveryError):
        parse_discovery(DOCUMENT | {"token_endpoint": endpoint}, ISSUER)


def test_the_token_origin_is_built_from_its_parts():
    assert (
        web_origin("https://Tokens.Example.Test:8443/t?a=1") == "https://tokens.example.test:8443"
    )
    assert web_origin("http://[::1]:9000/token") == "http://[::1]:9000"


def test_plain_http_is_accepted_on_loopback_only():
    assert web_origin("http://127.0.0.1:8080/token") == "http://127.0.0.1:8080"
    with pytest.raises(DiscoveryError):
        web_origin("http://idp.internal/token")


def test_config_tells_the_page_where_to_sign_in(oidc):
    provider, gateway = oidc
    config = httpx.get(f"{gateway.url}/portal/config.json")
    assert config.headers["cache-control"] == "no-store"
    body = config.json()
    assert (body["mode"], body["signIn"], body["demoUsers"]) == ("production", "oidc", [])
    assert body["oidc"] == {
        "available": True,
        "issuer": provider.issuer,
        "clientId": CLIENT_ID,
        "scopes": "openid",
        "authorizationEndpoint": f"{provider.issuer}/authorize",
        "tokenEndpoint": f"{provider.issuer}/token",
        "roleClaim": "role",
        "organisationClaim": "org",
    }


def test_the_pages_policy_lets_it_reach_the_token_endpoint_and_nowhere_else(oidc):
    provider, gateway = oidc
    for path in ("/portal/", "/portal/config.json", "/portal/js/app.js"):
        policy = httpx.get(f"{gateway.url}{path}").headers["content-security-policy"]
        assert policy == content_security_policy(provider.issuer), path
        directives = _directives(policy)
        assert directives["connect-src"] == ["'self'", provider.issuer]
        assert directives["form-action"] == ["'self'"]
        assert "*" not in policy


def test_without_a_reachable_provider_the_page_is_told_sign_in_is_unavailable(
    tmp_path, sources, production_settings
):
    from tests.stack import running_gateway

    settings = production_settings(tmp_path) | {
        "portal_client_id": CLIENT_ID,
        "portal_oidc_discovery_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
    with running_gateway(tmp_path, sources, **settings) as gateway:
        page = httpx.get(f"{gateway.url}/portal/")
        assert _directives(page.headers["content-security-policy"])["connect-src"] == ["'self'"]
        oidc = httpx.get(f"{gateway.url}/portal/config.json").json()["oidc"]
        assert (oidc["available"], oidc["tokenEndpoint"]) == (False, None)


def _authorize(provider, gateway, verifier: str) -> str:
    """Sign the test social worker in at the provider; the code it sends back."""
    redirect = provider.redirect_uris[0]
    answer = httpx.get(
        f"{provider.issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect,
            "scope": "openid",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "login_hint": "social_worker",
        },
    )
    assert answer.status_code == 303
    location = httpx.URL(answer.headers["location"])
    assert str(location.copy_with(query=None)) == redirect
    assert location.params["state"] == "s1"
    return location.params["code"]


def _exchange(provider, code: str, verifier: str, redirect_uri: str) -> httpx.Response:
    return httpx.post(
        f"{provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
        headers={"origin": provider.portal_origin},
    )


def test_the_providers_token_is_one_the_gateway_accepts(oidc):
    provider, gateway = oidc
    verifier = "v" * 50
    tokens = _exchange(
        provider, _authorize(provider, gateway, verifier), verifier, provider.redirect_uris[0]
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["access-control-allow-origin"] == gateway.url
    body = tokens.json()
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["nonce"] == "n1"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["aud"], claims["role"], claims["org"]) == (AUDIENCE, "social_worker", "LA-LEEDS")
    lookup = httpx.post(
        f"{gateway.url}/graphql",
        json={
            "query": "query($n: String!) { child(nhsNumber: $n, purpose: SAFEGUARDING_ENQUIRY)"
            " { outcome } }",
            "variables": {"n": NHS},
        },
        headers={"authorization": f"Bearer {body['access_token']}"},
    )
    assert lookup.status_code == 200, lookup.text
    assert lookup.json()["data"]["child"]["outcome"] == "FOUND"


@pytest.mark.parametrize("wrong", ["verifier", "redirect_uri", "reused code"])
def test_an_exchange_with_the_wrong_verifier_or_redirect_uri_fails_at_the_provider(oidc, wrong):
    provider, gateway = oidc
    verifier = "v" * 50
    code = _authorize(provider, gateway, verifier)
    redirect = provider.redirect_uris[0]
    if wrong == "reused code":
        assert _exchange(provider, code, verifier, redirect).status_code == 200
    refused = _exchange(
        provider,
        code,
        "w" * 50 if wrong == "verifier" else verifier,
        f"{gateway.url}/elsewhere/" if wrong == "redirect_uri" else redirect,
    )
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant"}
    assert "access_token" not in refused.text
