"""What the browser keeps of a lookup: nothing about the child in the URL, web storage or cookies;
and the headers that keep the page out of frames and caches, under a policy the page itself keeps
(no Content-Security-Policy violation while it works)."""

import httpx

from tests.browser.portal import Portal


def test_nothing_about_the_child_stays_in_the_url_storage_or_cookies(page, demo):
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")
    nhs = demo.nhs["child protection plan"]
    history = page.evaluate("history.length")

    portal.look_up(nhs)

    assert portal.outcome == "FOUND"
    assert "no-store" in portal.last_headers["cache-control"]  # the answer carries child data
    kept = page.evaluate(
        "() => ({url: location.href, local: localStorage.length,"
        " session: sessionStorage.length, cookie: document.cookie, history: history.length})"
    )
    assert kept["history"] == history  # the lookup added no entry to the browser's history
    assert nhs not in kept["url"]
    assert kept["url"] == demo.portal  # no query string or fragment at all
    assert (kept["local"], kept["session"], kept["cookie"]) == (0, 0, "")
    assert page.context.cookies() == []
    assert violations == []


def test_the_page_is_served_no_store_unframeable_and_without_inline_script(demo):
    response = httpx.get(demo.portal, timeout=10)

    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives.get("script-src", directives["default-src"])
    assert "no-store" in response.headers["cache-control"]
