"""Production sign-in in a real browser: the page sends the practitioner to the (test) identity
provider, comes back to /portal/ with a code it exchanges with PKCE, and looks a child up with the
provider's token - leaving no code or state in the address bar or history, and nothing in web
storage. A return the page did not start is refused in plain words."""

import jwt
import pytest

from tests.browser.portal import Portal
from tests.factories import NHS, health_record, social_care_record
from tests.oidc_provider import AUDIENCE, KID, production_portal
from tests.stack import reference_connectors

AT_LOAD = "window.atLoad = {href: location.href, length: history.length};"
"""Run by Playwright in every document before the page's own scripts (CSP does not apply)."""


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path_factory.mktemp("oidc"), records) as configured:
        yield configured


@pytest.fixture
def oidc(browser, tmp_path, sources, production_settings):
    with production_portal(tmp_path, sources, production_settings(tmp_path)) as running:
        yield running


def _to_provider(page, portal_url: str, issuer: str) -> None:
    page.goto(portal_url)
    page.click("#oidc-sign-in-button")
    page.wait_for_url(f"{issuer}/authorize?**")


def test_a_practitioner_signs_in_at_the_identity_provider_and_looks_a_child_up(page, oidc):
    provider, gateway = oidc
    portal_url = f"{gateway.url}/portal/"
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    bearer: list[str] = []
    page.on(
        "request",
        lambda r: (
            bearer.append(r.headers.get("authorization", "")) if "/graphql" in r.url else None
        ),
    )
    page.add_init_script(AT_LOAD)

    _to_provider(page, portal_url, provider.issuer)
    page.click("button[value=social_worker]")
    page.wait_for_selector("#signed-in-as:has-text('LA-LEEDS')")

    kept = page.evaluate(
        "() => ({url: location.href, length: history.length, atLoad: window.atLoad,"
        " local: localStorage.length, session: sessionStorage.length})"
    )
    assert "code=" in kept["atLoad"]["href"]  # this document was the provider's callback
    assert "state=" in kept["atLoad"]["href"]
    assert kept["url"] == portal_url  # the code and state are gone from the address bar
    assert kept["length"] == kept["atLoad"]["length"]  # replaced, not a new history entry
    assert (kept["local"], kept["session"]) == (0, 0)
    assert "Sam Social Worker" in page.inner_text("#signed-in-as")

    portal = Portal(page, portal_url)
    portal.look_up(NHS)
    assert portal.outcome == "FOUND"
    scheme, _, token = bearer[-1].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, provider.key.public_key(), algorithms=["ES256"], audience=AUDIENCE)
    assert (claims["iss"], jwt.get_unverified_header(token)["kid"]) == (provider.issuer, KID)
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.context.cookies(gateway.url) == []
    assert violations == []


def test_a_return_with_a_state_the_page_did_not_send_is_refused(page, oidc):
    provider, gateway = oidc
    portal_url = f"{gateway.url}/portal/"
    _to_provider(page, portal_url, provider.issuer)

    page.goto(f"{portal_url}?code=forged-code&state=forged-state")

    page.wait_for_selector("#notice:has-text('this page did not start it')")
    assert page.url == portal_url
    assert page.evaluate("sessionStorage.length") == 0
    assert page.is_hidden("#session")
    assert page.is_hidden("#lookup-section")
    assert page.is_visible("#oidc-sign-in-button")
    assert provider.token_requests == 0  # nothing was sent to the token endpoint


def test_sign_out_forgets_the_token_and_offers_the_provider_again(page, oidc):
    provider, gateway = oidc
    portal_url = f"{gateway.url}/portal/"
    _to_provider(page, portal_url, provider.issuer)
    page.click("button[value=auditor]")
    page.wait_for_selector("#audit-section:not([hidden])")

    page.click("#sign-out")

    page.wait_for_selector("#notice:has-text('You are signed out')")
    assert page.is_visible("#oidc-sign-in-button")
    assert page.is_hidden("#audit-section")
