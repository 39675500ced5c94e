"""Signing out of the portal on a shared workstation (a hospital ED, a school office), against a
test identity provider that, like a real one, keeps its own sign-in session in the browser.

Sign-out must end that session too, or the next person at the workstation who presses "Sign in" is
signed straight back in as the practitioner before them and sees what they may see. Where the
provider offers an end_session_endpoint the page goes there (RP-Initiated Logout, with the ID token
as the hint and the page as the registered post-logout redirect URI), whether the practitioner
pressed "Sign out" or the page signed them out for idleness; where it does not, the next sign-in
from the tab asks for a fresh one (prompt=login, max_age=0), and one the provider answers from its
old session anyway is refused. An ID token already expired is refused too. And a laptop that
slept past the inactivity timeout signs out the moment it wakes, whatever its timers did.
"""

import datetime

import httpx
import jwt
import pytest

from gateway.identity_provider import parse_discovery
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, social_care_record
from tests.oidc_provider import CLIENT_ID, production_portal
from tests.stack import reference_connectors

SAM = "#signed-in-as:has-text('Sam Social Worker')"
ALEX = "#signed-in-as:has-text('Alex Auditor')"
LOGIN_FORM = "button[value=auditor]"
"""The provider's sign-in form: it asks who is there."""
IDLE = "#notice:has-text('You were signed out after 15 minutes without activity.')"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path_factory.mktemp("sign-out"), records) as configured:
        yield configured


@pytest.fixture
def oidc(browser, tmp_path, sources, production_settings):
    with production_portal(tmp_path, sources, production_settings(tmp_path)) as running:
        provider, _ = running
        provider.keeps_sign_in = True
        yield running


def _sign_in_as_sam(page, portal_url: str) -> None:
    page.goto(portal_url)
    page.click("#oidc-sign-in-button")
    page.click("button[value=social_worker]")
    page.wait_for_selector(SAM)


def _next_person_presses_sign_in(page) -> None:
    """Press "Sign in" and wait for whichever comes: the provider's form, or a signed-in page."""
    page.click("#oidc-sign-in-button")
    page.wait_for_selector(f"{LOGIN_FORM}, #signed-in-as:not(:empty)")


def test_without_an_end_session_endpoint_the_next_person_is_asked_who_they_are(page, oidc):
    provider, gateway = oidc
    portal_url = f"{gateway.url}/portal/"
    _sign_in_as_sam(page, portal_url)
    page.click("#sign-out")
    page.wait_for_selector("#notice:has-text('You are signed out')")

    _next_person_presses_sign_in(page)

    assert page.is_visible(LOGIN_FORM), "signed straight back in as " + page.inner_text("body")
    first, again = provider.authorize_requests
    assert "prompt" not in first
    assert "max_age" not in first
    assert (again["prompt"], again["max_age"]) == ("login", "0")
    page.click(LOGIN_FORM)
    page.wait_for_selector(ALEX)


def test_sign_out_ends_the_session_at_a_provider_offering_an_end_session_endpoint(page, oidc):
    provider, gateway = oidc
    provider.offers_end_session = True
    portal_url = f"{gateway.url}/portal/"
    _sign_in_as_sam(page, portal_url)

    page.click("#sign-out")

    page.wait_for_selector("#notice:has-text('You are signed out')")
    assert page.url == portal_url
    (logout,) = provider.logouts
    assert logout["post_logout_redirect_uri"] == portal_url
    assert logout["client_id"] == CLIENT_ID
    hint = jwt.decode(
        logout["id_token_hint"], provider.key.public_key(), algorithms=["ES256"], audience=CLIENT_ID
    )
    assert hint["sub"] == "idp-sw-1"
    assert page.evaluate("sessionStorage.getItem('childlookup.signedOutWhy')") is None
    _next_person_presses_sign_in(page)
    assert page.is_visible(LOGIN_FORM), "signed straight back in as " + page.inner_text("body")


def test_the_idle_sign_out_ends_the_session_at_the_provider_too(page, oidc):
    provider, gateway = oidc
    provider.offers_end_session = True
    provider.token_ttl_s = 3600
    page.clock.install()
    _sign_in_as_sam(page, f"{gateway.url}/portal/")

    page.clock.fast_forward(16 * 60 * 1000)

    page.wait_for_selector(IDLE)  # said again after the trip to the provider and back
    assert len(provider.logouts) == 1
    _next_person_presses_sign_in(page)
    assert page.is_visible(LOGIN_FORM), "signed straight back in as " + page.inner_text("body")


def test_a_provider_that_signs_the_last_practitioner_back_in_regardless_is_refused(page, oidc):
    provider, gateway = oidc
    provider.ignores_prompt = True  # answers prompt=login and max_age=0 from its old session
    provider.token_ttl_s = 3600
    page.clock.install()
    _sign_in_as_sam(page, f"{gateway.url}/portal/")
    page.click("#sign-out")
    page.clock.fast_forward(10 * 60 * 1000)  # the next person comes along later

    page.click("#oidc-sign-in-button")

    page.wait_for_selector("#notice:has-text('signed you in without asking who you are')")
    assert provider.authorize_requests[-1]["prompt"] == "login"
    assert page.is_hidden("#session")
    assert page.is_visible("#oidc-sign-in-button")


@pytest.mark.parametrize(
    ("id_token_ttl_s", "signed_in"),
    [(-600, False), (-30, True)],
    ids=["expired-10-minutes-ago", "expired-within-clock-skew"],
)
def test_an_expired_id_token_is_refused(page, oidc, id_token_ttl_s, signed_in):
    provider, gateway = oidc
    provider.id_token_ttl_s = id_token_ttl_s
    page.goto(f"{gateway.url}/portal/")
    page.click("#oidc-sign-in-button")

    page.click("button[value=social_worker]")

    page.wait_for_selector(f"{SAM}, #notice:has-text('could not be completed')")
    assert page.is_visible("#session") is signed_in


WAKE_UP = {
    "shown": lambda page: page.evaluate("document.dispatchEvent(new Event('visibilitychange'))"),
    "focused": lambda page: page.evaluate("window.dispatchEvent(new Event('focus'))"),
    "tick": lambda page: page.clock.run_for(1000),
    "key-pressed": lambda page: page.keyboard.press("Shift"),
}


@pytest.mark.parametrize("wake_up", WAKE_UP.values(), ids=WAKE_UP.keys())
def test_a_laptop_waking_past_the_inactivity_timeout_signs_out_at_once(page, oidc, wake_up):
    provider, gateway = oidc
    provider.token_ttl_s = 3600
    page.clock.install()
    _sign_in_as_sam(page, f"{gateway.url}/portal/")
    portal = Portal(page, f"{gateway.url}/portal/")
    portal.look_up(NHS)
    assert portal.outcome == "FOUND"
    now_s = page.evaluate("Date.now()") / 1000
    page.clock.pause_at(now_s + 1)  # the lid closes: no timer fires while it sleeps

    page.clock.set_system_time(datetime.datetime.fromtimestamp(now_s + 20 * 60, datetime.UTC))
    wake_up(page)

    page.wait_for_selector(IDLE, timeout=2_000)
    assert page.evaluate("document.querySelector('#result-body').textContent").strip() == ""
    assert page.is_hidden("#session")


DOCUMENT = {
    "issuer": "https://idp.example.test",
    "authorization_endpoint": "https://idp.example.test/authorize",
    "token_endpoint": "https://idp.example.test/token",
}


@pytest.mark.parametrize(
    ("end_session", "offered"),
    [
        ("https://idp.example.test/logout", "https://idp.example.test/logout"),
        ("http://idp.example.test/logout", None),
        ("https://idp.example.test/logout?x=1;frame-ancestors", None),
        (["https://idp.example.test/logout"], None),
    ],
    ids=["https", "plain-http", "not-plainly-a-url", "not-a-string"],
)
def test_only_an_https_end_session_endpoint_is_offered_to_the_page(end_session, offered):
    """The page sends the ID token there: anywhere but plainly https is not offered, and the
    page asks for a fresh sign-in next time instead; the sign-in itself stays available."""
    document = DOCUMENT | {"end_session_endpoint": end_session}
    endpoints = parse_discovery(document, DOCUMENT["issuer"])
    assert endpoints.end_session_endpoint == offered
    assert parse_discovery(DOCUMENT, DOCUMENT["issuer"]).end_session_endpoint is None


def test_config_names_the_end_session_endpoint_when_the_provider_offers_one(oidc):
    provider, gateway = oidc
    provider.offers_end_session = True  # before the gateway first reads the document
    config = httpx.get(f"{gateway.url}/portal/config.json").json()["oidc"]
    assert config["endSessionEndpoint"] == f"{provider.issuer}/logout"
