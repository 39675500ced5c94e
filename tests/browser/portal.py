"""The portal page as the browser tests drive it, by the DOM contract the page is built to: sign in
as a demo user, look a child up, break the glass, read the audit trail. Each action waits until the
page has shown its answer, so a test then reads the page as a practitioner would."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.tokens import DEMO_USERS

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

ORGANISATION = {user.role: user.organisation for user in DEMO_USERS}
"""Each demo role's organisation, which names its demo user in the sign-in list."""

_SETTLED = """
([before]) => {
  const result = document.querySelector('#result');
  const error = document.querySelector('#error');
  const now = (result ? result.innerHTML : '') + (error ? error.outerHTML : '');
  if (now === before || (result && result.getAttribute('aria-busy') === 'true')) return false;
  return Boolean(
    document.querySelector('#outcome[data-outcome]') ||
      (error && !error.hidden && error.dataset.code)
  );
}
"""
_SNAPSHOT = """
() => {
  const result = document.querySelector('#result');
  const error = document.querySelector('#error');
  return (result ? result.innerHTML : '') + (error ? error.outerHTML : '');
}
"""


def _is_lookup(response: Response) -> bool:
    """The page's POST to /graphql carrying a `child` lookup (named or by persisted id)."""
    request = response.request
    if request.method != "POST" or not request.url.endswith("/graphql"):
        return False
    body = (request.post_data or "").lower()
    return "childlookup" in body or "child(" in body


class Portal:
    """One practitioner's page."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.last_request: dict[str, Any] = {}
        """The GraphQL request body of the last lookup the page sent."""
        self.last_answer: dict[str, Any] = {}
        """The GraphQL answer to it, as the page received it."""
        self.last_headers: dict[str, str] = {}
        """That answer's HTTP headers (names in lower case)."""

    def open(self) -> None:
        self.page.goto(self.url)
        self.page.wait_for_selector("#demo-user option", state="attached")

    def demo_user(self, role: str) -> str:
        """The `#demo-user` option value of the demo user with that role: its option text names
        the organisation (`LA-LEEDS`, never the `LA-LEEDS-IG` beside it)."""
        organisation = re.compile(rf"(?<![\w-]){re.escape(ORGANISATION[role])}(?![\w-])")
        options = self.page.locator("#demo-user option").evaluate_all(
            "options => options.map(o => [o.value, o.textContent])"
        )
        values = [value for value, text in options if organisation.search(text)]
        assert len(values) == 1, f"one demo user of {ORGANISATION[role]} expected in {options}"
        return str(values[0])

    def sign_in(self, role: str) -> None:
        self.page.select_option("#demo-user", self.demo_user(role))
        self.page.click("#sign-in")
        self.page.wait_for_selector(f"#signed-in-as:has-text('{ORGANISATION[role]}')")

    def sign_out(self) -> None:
        self.page.click("#sign-out")

    def fill_lookup(
        self, nhs: str, purpose: str = "SAFEGUARDING_ENQUIRY", justification: str | None = None
    ) -> None:
        self.page.select_option("#purpose", purpose)
        if justification is not None:
            self.page.fill("#justification", justification)
        self.page.check('input[name="identify"][value="nhs"]')
        self.page.fill("#nhs-number", nhs)

    def look_up(
        self, nhs: str, purpose: str = "SAFEGUARDING_ENQUIRY", justification: str | None = None
    ) -> None:
        self.fill_lookup(nhs, purpose, justification)
        self.answered(lambda: self.page.click("#look-up"))

    def break_glass(self, nhs: str, justification: str) -> str:
        """Look the child up by break-glass; returns the dialog's text before confirming."""
        self.page.check('input[name="identify"][value="nhs"]')
        self.page.fill("#nhs-number", nhs)
        self.page.click("#break-glass")
        dialog = self.page.locator("#break-glass-dialog")
        dialog.wait_for(state="visible")
        warning = dialog.inner_text()
        self.page.fill("#break-glass-justification", justification)
        self.answered(lambda: self.page.click("#break-glass-confirm"))
        return warning

    def answered(self, submit: Callable[[], None]) -> None:
        """Run `submit` (what sends the lookup), then wait for the lookup's answer and for the
        page to show it."""
        before = self.page.evaluate(_SNAPSHOT)
        with self.page.expect_response(_is_lookup) as response:
            submit()
        self.last_request = json.loads(response.value.request.post_data or "{}")
        self.last_answer = response.value.json()
        self.last_headers = response.value.headers
        self.page.wait_for_function(_SETTLED, arg=[before])

    def audit_trail(self, child: str) -> None:
        """The trail of the child `child` names: an NHS number or a UPN."""
        self.page.fill("#audit-child", child)
        self.page.click("#audit-look")
        self.page.wait_for_selector("#audit-trail tr.audit-entry")

    def user_trail(self, subject: str, since: str = "") -> None:
        """The auditor's filter by user and time (`since` as a datetime-local value)."""
        self.page.fill("#audit-user", subject)
        self.page.fill("#audit-since", since)
        self._shown(lambda: self.page.click("#audit-filter-look"), "#audit-result")

    def read_trail_on(self) -> None:
        """The trail shown, read on past a full reading ("Show later accesses")."""
        self._shown(lambda: self.page.click("#audit-more"), "#audit-result")

    def read_feed_on(self, feed: str) -> None:
        """The feed `feed` (its table's id) shown, read on past a full reading."""
        self._shown(lambda: self.page.click(f"#{feed}-more"), f"#{feed}-result")

    def alerts(self) -> None:
        """The override alerts feed, in full."""
        self._shown(lambda: self.page.click("#alerts-look"), "#alerts-result")

    def limit_alerts(self) -> None:
        """The feed of lookups refused at a usage limit, in full."""
        self._shown(lambda: self.page.click("#limit-alerts-look"), "#limit-alerts-result")

    def undelivered(self) -> None:
        """The owner notifications the gateway gave up delivering."""
        self._shown(lambda: self.page.click("#undelivered-look"), "#undelivered-result")

    def access_history(self, nhs: str | None = None) -> None:
        """Who has looked at the child: from the history form with `nhs`, else from the
        lookup result's button (the child just looked up)."""
        if nhs is None:
            submit = lambda: self.page.click("#show-history")  # noqa: E731
        else:
            self.page.fill("#history-child", nhs)
            submit = lambda: self.page.click("#history-look")  # noqa: E731
        self._shown(submit, "#history-result")

    def more_history(self) -> None:
        self._shown(lambda: self.page.click("#history-more"), "#history-result")

    def _shown(self, submit: Callable[[], None], region: str) -> None:
        """Run `submit`, which sends one GraphQL request, then wait until its answer is shown in
        `region` (busy from before the request is sent until the answer is on the page)."""
        with self.page.expect_response(lambda r: r.url.endswith("/graphql")) as response:
            submit()
        self.last_answer = response.value.json()
        self.page.wait_for_function(
            "region => document.querySelector(region).getAttribute('aria-busy') !== 'true'",
            arg=region,
        )

    # --- reading the page ------------------------------------------------------------------

    @property
    def outcome(self) -> str | None:
        return self.page.get_attribute("#outcome", "data-outcome")

    def source_status(self, source: str) -> str | None:
        cell = f'#sources tr[data-source="{source}"] td.status'
        return self.page.get_attribute(cell, "data-status")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector).strip()

    def focused_id(self) -> str:
        return str(self.page.evaluate("document.activeElement && document.activeElement.id"))
