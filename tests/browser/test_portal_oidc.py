"""Production sign-in in a real browser: the page sends the practitioner to the (test) identity
provider, comes back to /portal/ with a code it exchanges with PKCE, and looks a child up with the
provider's token - leaving no code or state in the address bar or history, and nothing in web
storage. A return the page did not start, or one in the URL's fragment, is refused in plain words;
a token endpoint that never answers is given up on; and however long the provider says the tokens
last, the sign-in ends when the access token does, and within the gateway's maximum (12 hours)."""

import jwt
import pytest

from tests.browser.portal import Portal
from tests.factories import NHS, health_record, social_care_record
from tests.oidc_provider import AUDIENCE, KID, production_portal
from tests.stack import reference_connectors

AT_LOAD = "window.atLoad = {href: location.href, length: history.length};"
"""Run by Playwright in every document before the page's own scripts (CSP does not apply)."""
NOT_COMPLETED = "#notice:has-text('The sign-in could not be completed. Sign in again.')"
EXPIRED = "#notice:has-text('Your sign-in expired')"
TWELVE_HOURS_S = 12 * 3600
SIX_HOURS_S = 6 * 3600


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path_factory.mktemp("oidc"), records) as configured:
        yield configured


@pytest.fixture
def oidc(browser, tmp_path, sources, production_settings):
    with production_portal(tmp_path, sources, production_settings(tmp_path)) as running:
        yield running


@pytest.fixture
def oidc_all_day(browser, tmp_path, sources, production_settings):
    """As `oidc`, with the longest inactivity timeout (12 hours), so only the sign-in's own end
    can sign the practitioner out within a day, and tokens accepted for at most 6 hours."""
    settings = production_settings(tmp_path) | {
        "portal_idle_timeout_s": TWELVE_HOURS_S,
        "token_max_lifetime_s": SIX_HOURS_S,
    }
    with production_portal(tmp_path, sources, settings) as running:
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


def _signed_in(page) -> bool:
    return page.is_visible("#session") and page.is_hidden("#oidc-sign-in-button")


def test_a_code_returned_in_the_fragment_leaves_the_address_bar_and_is_refused(page, oidc):
    provider, gateway = oidc
    provider.return_in_fragment = True
    portal_url = f"{gateway.url}/portal/"
    page.add_init_script(AT_LOAD)
    _to_provider(page, portal_url, provider.issuer)

    page.click("button[value=social_worker]")

    page.wait_for_selector(NOT_COMPLETED)
    at_load = page.evaluate("window.atLoad")
    assert "#code=" in at_load["href"]  # this document was the provider's callback
    assert page.url == portal_url  # the code and state are gone from the address bar
    assert page.evaluate("history.length") == at_load["length"]  # replaced, not a new entry
    assert page.evaluate("sessionStorage.length") == 0
    assert provider.token_requests == 0  # the page asked for the code in the query
    assert page.is_visible("#oidc-sign-in-button")
    assert page.is_hidden("#session")


def test_a_token_endpoint_that_never_answers_is_given_up_on(page, oidc):
    provider, gateway = oidc
    provider.token_endpoint_answers = False
    _to_provider(page, f"{gateway.url}/portal/", provider.issuer)

    page.click("button[value=social_worker]")

    page.wait_for_selector(NOT_COMPLETED, timeout=20_000)  # the page waits 10 seconds
    assert provider.token_requests == 1
    assert page.evaluate("document.body.dataset.ready") == "true"
    assert page.is_visible("#oidc-sign-in-button")
    assert page.is_hidden("#session")


@pytest.mark.parametrize("expires_in", [3_000_000, 10_000_000_000], ids=["35-days", "1e10-s"])
def test_a_sign_in_ends_a_minute_before_the_access_token_however_long_expires_in(
    page, oidc, expires_in
):
    provider, gateway = oidc
    provider.expires_in = expires_in  # the access token itself lasts 300 seconds
    page.clock.install()
    _to_provider(page, f"{gateway.url}/portal/", provider.issuer)
    page.click("button[value=social_worker]")
    page.wait_for_selector("#signed-in-as:has-text('LA-LEEDS')")

    page.wait_for_timeout(1_000)
    assert _signed_in(page), page.inner_text("#notice")  # not signed out at once
    page.clock.fast_forward(230_000)
    assert _signed_in(page)

    page.clock.fast_forward(15_000)  # past the token's exp less a minute

    page.wait_for_selector(EXPIRED)
    assert page.is_visible("#oidc-sign-in-button")


def test_no_sign_in_outlasts_the_gateways_maximum_token_lifetime(page, oidc_all_day):
    provider, gateway = oidc_all_day
    provider.token_ttl_s = 35 * 24 * 3600  # expires_in and exp both 35 days away
    page.clock.install()
    _to_provider(page, f"{gateway.url}/portal/", provider.issuer)
    page.click("button[value=social_worker]")
    page.wait_for_selector("#signed-in-as:has-text('LA-LEEDS')")

    page.clock.fast_forward((SIX_HOURS_S - 120) * 1000)
    assert _signed_in(page), page.inner_text("#notice")

    page.clock.fast_forward(90_000)  # past the 6 hours configured less a minute, before idling

    page.wait_for_selector(EXPIRED)
    assert page.is_visible("#oidc-sign-in-button")
