"""The portal by keyboard alone: signing in and completing a lookup with Tab, the arrow keys,
typing and Enter, never a click."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tests.browser.portal import ORGANISATION, Portal

if TYPE_CHECKING:
    from playwright.sync_api import Page

MAX_TABS = 60


def _tab_to(page: Page, selector: str) -> None:
    """Press Tab until the focus is on `selector`; fails if it never gets there."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def _choose(page: Page, selector: str, matches: Callable[[str, str], bool]) -> None:
    """With the select `selector` focused, press ArrowDown until `matches(option text, value)`."""
    for _ in range(20):
        text, value = page.evaluate(
            "s => { const e = document.querySelector(s);"
            " return [e.selectedOptions[0]?.textContent ?? '', e.value]; }",
            selector,
        )
        if matches(text, value):
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"no option of {selector} fits")


def test_a_lookup_can_be_done_with_the_keyboard_alone(page, demo):
    portal = Portal(page, demo.portal)
    portal.open()
    sign_in_as = portal.demo_user("social_worker")

    _tab_to(page, "#demo-user")
    _choose(page, "#demo-user", lambda _, value: value == sign_in_as)
    _tab_to(page, "#sign-in")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#signed-in-as:has-text('{ORGANISATION['social_worker']}')")

    _tab_to(page, "#purpose")
    _choose(page, "#purpose", lambda _, value: value == "SAFEGUARDING_ENQUIRY")
    _tab_to(page, 'input[name="identify"]')
    for _ in range(3):
        if page.evaluate("document.activeElement.value") == "nhs":
            page.keyboard.press("Space")
            break
        page.keyboard.press("ArrowDown")
    assert page.is_checked('input[name="identify"][value="nhs"]')
    _tab_to(page, "#nhs-number")
    page.keyboard.type(demo.nhs["child protection plan"])
    _tab_to(page, "#look-up")
    portal.answered(lambda: page.keyboard.press("Enter"))

    assert portal.outcome == "FOUND"
    assert portal.focused_id() == "result-heading"
