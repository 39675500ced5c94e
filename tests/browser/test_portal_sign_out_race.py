"""An answer that arrives after the practitioner signed out is not shown to whoever signs in
next (portal/static/js/session.js: requests end with the session). The owner (LA-LEEDS social
worker) asks who has looked at a child on a plan and signs out before the gateway answers; a
health visitor from another organisation, who may not see that history (NOT_THE_OWNER), signs in
on the same page. And a lookup answered after sign-out leaves nothing of the child in the page,
nor its Look up button disabled for the next practitioner.
"""

import contextlib

from playwright.sync_api import Error as PlaywrightError

from tests.browser.portal import Portal


def _hold(page, operation):
    """Pause the first /graphql request for `operation`; returns the list of paused routes."""
    held = []

    def handler(route):
        if operation in (route.request.post_data or "") and not held:
            held.append(route)  # the first such request only
        else:
            route.continue_()

    page.route("**/graphql", handler)
    return held


def _answer(page, held):
    """The gateway answers the held request now, as it would late: the page abandoned it at
    sign-out, so its answer may never reach the page at all."""
    with contextlib.suppress(PlaywrightError):
        held[0].continue_()
    page.wait_for_timeout(500)


def _wait_for(page, held, n=1):
    for _ in range(200):
        if len(held) >= n:
            return
        page.wait_for_timeout(25)
    raise AssertionError("the request was never sent")


def test_an_access_history_answered_after_sign_out_is_not_shown_to_the_next_user(page, demo):
    nhs = demo.nhs["child protection plan"]
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")
    portal.look_up(nhs)  # at least one access in the child's history
    assert portal.outcome == "FOUND"

    held = _hold(page, "AccessHistory")
    page.fill("#history-child", nhs)
    page.click("#history-look")
    _wait_for(page, held)

    portal.sign_out()  # the owner leaves before the gateway answers
    page.wait_for_selector("#sign-in-section:not([hidden])")
    _answer(page, held)
    page.wait_for_function(
        "() => document.querySelector('#history-result').getAttribute('aria-busy') !== 'true'"
    )

    portal.sign_in("health_visitor")  # someone from another organisation, same page

    rows = page.locator("#access-history tr.access-entry")
    visible = page.is_visible("#access-history")
    assert not (visible and rows.count()), (
        "the next user sees the previous user's child's access history:\n"
        + page.inner_text("#history-section")
    )


def test_a_lookup_answered_after_sign_out_leaves_nothing_about_the_child_in_the_page(page, demo):
    nhs = demo.nhs["child protection plan"]
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")

    held = _hold(page, "ChildLookup")
    portal.fill_lookup(nhs)
    page.click("#look-up")
    _wait_for(page, held)

    portal.sign_out()
    page.wait_for_selector("#sign-in-section:not([hidden])")
    _answer(page, held)
    page.wait_for_function(
        "() => document.querySelector('#result').getAttribute('aria-busy') !== 'true'"
    )

    body = page.evaluate("document.querySelector('#result-body').textContent")
    assert body.strip() == "", "the signed-out page holds the child's details: " + body[:300]
    assert page.is_enabled("#look-up")
