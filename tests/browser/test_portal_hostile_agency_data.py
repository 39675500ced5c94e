"""The portal renders text the agencies send (names, services, contacts, schools), and text
other people typed or were named by (justifications, account names), as text only: no script runs,
no element is made from it, no link but a tel:/mailto: one with safe content, nothing calls out to
another origin; and no agency's text can reorder the page's own words or another field beside it
(an unterminated right-to-left override), or push the page sideways so that a phone number or the
'Sensitive service' and 'Lead professional' tags end up off screen."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from connectors.protocol import Carer, Contact, GpPractice, Involvement, PersonName, School
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import reference_connectors, running_gateway

RLO = "\u202e"
XSS = "<img src=x onerror=window.__pwned=1>"
SCRIPT = '"><script>window.__pwned=1</script>'
JS_URL = "javascript:window.__pwned=1"
DATA_URL = "data:text/html,<script>window.__pwned=1</script>"
STYLE = "</style><style>*{display:none!important}</style>"
LONG = "W" * 100_000
HOSTILE_NAME = f"M{RLO}x {XSS}"

PLAIN_MAILTO = re.compile(r"^mailto:[A-Za-z0-9._+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PLAIN_TEL = re.compile(r"^tel:\+?\d*$")


@pytest.fixture(scope="module")
def hostile(browser, tmp_path_factory):
    """A gateway in dev mode (demo sign-in) over reference connectors serving hostile records."""
    tmp = tmp_path_factory.mktemp("hostile")
    health = health_record(
        name=PersonName(given=XSS, family=SCRIPT, former_family=[STYLE]),
        gp_practice=GpPractice(ods_code="A81001", name=STYLE, phone=JS_URL),
        carers=[
            Carer(
                name=f"Jo {RLO}Hart",
                relationship="mother",
                parental_responsibility=True,
                phone="07700 900123",
            ),
            Carer(name=XSS, relationship=SCRIPT, parental_responsibility=False, phone=DATA_URL),
        ],
        involvements=[
            Involvement(
                service=f"health visiting {XSS}",
                organisation=SCRIPT,
                practitioner=Contact(name=f"Hana {RLO}Visitor", phone="07700 900001", email=JS_URL),
            ),
            Involvement(
                service="CAMHS",
                organisation="Leeds CAMHS",
                practitioner=Contact(name="Dr Mind", phone=DATA_URL, email=f"{DATA_URL}@x.org"),
                sensitive=True,
                broker=Contact(
                    name=LONG, role=LONG, phone="01632 960999", email="JAVASCRIPT:x@x.org"
                ),
            ),
        ],
    )
    social_care = social_care_record(
        involvements=[
            Involvement(
                service="children's social care",
                organisation=LONG,
                practitioner=Contact(
                    name="Sam Social", phone="+44 <b>1</b>", email="sam@leeds.example"
                ),
                lead=True,
            )
        ]
    )
    school = school_record(school=School(urn="107000", name=LONG, phone=DATA_URL))
    records = {"health": [health], "social_care": [social_care], "education": [school]}
    with (
        reference_connectors(tmp, records) as sources,
        running_gateway(tmp, sources) as gateway,
    ):
        yield gateway


def _looked_up(page, gateway, role: str = "social_worker") -> Portal:
    portal = Portal(page, f"{gateway.url}/portal/")
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(gateway.url) else outside.append(r.url))
    page.outside = outside  # type: ignore[attr-defined]
    portal.open()
    portal.sign_in(role)
    portal.look_up(NHS)
    assert portal.outcome == "FOUND"
    return portal


def _box(page, selector: str) -> dict[str, float]:
    return page.eval_on_selector(selector, "e => e.getBoundingClientRect().toJSON()")


_AT = """
(element, [words, offset]) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(words);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at + offset);
    range.setEnd(node, at + offset + 1);
    return range.getBoundingClientRect().toJSON();
  }
  return null;
}
"""


def _reads_in_order(page, selector: str, first: str, then: str) -> None:
    """Where `first` and `then` start, on screen, within `selector`: on one line, `then` to the
    right of `first`, as English reads."""
    a = page.locator(selector).evaluate(_AT, [first, 0])
    b = page.locator(selector).evaluate(_AT, [then, 0])
    assert a, first
    assert b, then
    assert abs(a["top"] - b["top"]) < 8, ("one line expected", first, then, a, b)
    assert a["left"] < b["left"], f"{then!r} is shown before {first!r}"


def _reads_left_to_right(page, selector: str, words: str) -> None:
    """`words` within `selector` is shown with its first letter left of its last."""
    first = page.locator(selector).evaluate(_AT, [words, 0])
    last = page.locator(selector).evaluate(_AT, [words, len(words) - 1])
    assert first, words
    assert last, words
    assert first["left"] < last["left"], f"{words!r} is shown backwards"


def _forget_the_page(page) -> None:
    """The page holds 100,000-character strings, too tall for the teardown's screenshot."""
    page.goto("about:blank")


def test_agency_text_runs_no_script_makes_no_element_and_no_unsafe_link(page, hostile):
    portal = _looked_up(page, hostile)
    assert page.evaluate("window.__pwned") is None
    body = page.locator("#result-body")
    assert body.locator("img, script, style, iframe, object, embed, link, b, form").count() == 0
    hrefs = body.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert hrefs, "the safe phone numbers and address are links"
    for href in hrefs:
        assert PLAIN_TEL.match(href) or PLAIN_MAILTO.match(href), href
    assert "mailto:sam@leeds.example" in hrefs
    # What the agencies sent is shown as the text it is.
    assert XSS in portal.text("#child-details")
    assert STYLE in portal.text("#child-details")
    assert page.outside == []  # type: ignore[attr-defined]
    _forget_the_page(page)
    headers = portal.page.request.get(f"{hostile.url}/portal/").headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'self'" in policy
    assert "style-src 'self'" in policy


def test_a_right_to_left_override_in_a_name_does_not_reorder_what_follows_it(page, hostile):
    """'Jo <RLO>Hart (mother, parental responsibility) · 07700 900123 From health ...': the
    override, never closed, ran on to the end of the line, so the page showed the carer's phone
    number backwards ('321009 00770') and the gateway's provenance after it right to left, before
    the name; the same for a practitioner's name and their phone number."""
    _looked_up(page, hostile)
    carer = '#carers li:has-text("07700 900123")'
    _reads_in_order(page, carer, "Jo", "07700")
    _reads_in_order(page, carer, "07700", "900123")
    _reads_in_order(page, carer, "07700", "From")
    practitioner = '.involvement:has-text("Visitor") .contact'
    _reads_in_order(page, practitioner, "Hana", "07700")
    _reads_in_order(page, practitioner, "07700", "900001")
    _forget_the_page(page)


def test_very_long_agency_text_does_not_push_the_page_or_its_tags_sideways(page, hostile):
    _looked_up(page, hostile)
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for selector in (
        ".tag.sensitive",
        ".involvement.lead .tag",
        '.involvement:has(.tag.sensitive) a[href^="tel:"]',
        "#child-details",
        "#withheld",
    ):
        box = _box(page, selector)
        assert box["left"] >= 0, (selector, box)
        assert box["right"] <= width, (selector, box)
    assert page.locator(".tag.sensitive").is_visible()
    _forget_the_page(page)


def _lookup_as(gateway, name: str, justification: str) -> dict[str, Any]:
    query = (
        "query($nhs: String!, $j: String) { child(nhsNumber: $nhs, purpose:"
        " CHILD_PROTECTION_ENQUIRY, justification: $j) { outcome auditId } }"
    )
    token = gateway.signed_token(name=name, sub="mallory", org="LA-LEEDS")
    answer = httpx.post(
        f"{gateway.url}/graphql",
        json={"query": query, "variables": {"nhs": NHS, "j": justification}},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert answer["data"]["child"]["auditId"], answer
    return answer


def test_the_auditor_sees_a_hostile_name_and_justification_as_text(page, hostile):
    justification = f"Section 47 strategy meeting today {XSS} {SCRIPT} {RLO}reversed words"
    _lookup_as(hostile, HOSTILE_NAME, justification)
    portal = Portal(page, f"{hostile.url}/portal/")
    portal.open()
    portal.sign_in("auditor")
    portal.audit_trail(NHS)
    assert page.evaluate("window.__pwned") is None
    trail = page.locator("#audit-trail")
    assert trail.locator("img, script, style, a, b").count() == 0
    row = trail.locator("tr.audit-entry", has_text="mallory")
    assert XSS in row.inner_text()
    # The account (the subject) and the organisation read as they are, after the name.
    who = "#audit-trail tr.audit-entry:has-text('mallory') td:nth-child(2)"
    _reads_left_to_right(page, who, "LA-LEEDS")
    _reads_left_to_right(page, who, "mallory")
