"""A practitioner's lookups in the portal against the demo: what a social worker sees of a child
on a child protection plan and of a shielded child, and a purpose the policy refuses."""

import os
import re
from pathlib import Path

from tests.browser.portal import Portal

README_SCREENSHOT = Path(__file__).parents[2] / "docs" / "portal.png"
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b")
CODE = re.compile(r"\b[A-Z]+(?:_[A-Z]+)+\b")
"""A machine code such as PURPOSE_NOT_PERMITTED: never what a practitioner reads."""


def _in_words(text: str) -> bool:
    """Plain English: a few words of prose, not a bare code."""
    return len(re.findall(r"[A-Za-z']{2,}", CODE.sub("", text))) >= 4


def test_a_social_worker_finds_who_works_with_a_child_on_a_protection_plan(page, demo):
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")
    assert "Sam Social" in portal.text("#signed-in-as")

    portal.look_up(demo.nhs["child protection plan"])

    assert portal.outcome == "FOUND"
    assert page.locator("#involvements li.involvement").count() >= 1
    plan = page.locator('#indicators [data-indicator="childProtectionPlan"]')
    assert plan.is_visible()
    assert "Yes" in plan.inner_text()
    answer = portal.last_answer["data"]["child"]
    assert answer["auditId"] in portal.text("#audit-id")
    assert portal.focused_id() == "result-heading"
    assert page.locator("#incomplete-banner").count() == 0
    # The README shows this page; CHILDLOOKUP_UPDATE_SCREENSHOT=1 retakes it after a change.
    if not README_SCREENSHOT.exists() or os.environ.get("CHILDLOOKUP_UPDATE_SCREENSHOT"):
        page.screenshot(path=README_SCREENSHOT, full_page=True)


def test_a_shielded_childs_location_is_withheld_with_the_reason_in_words(page, demo):
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")

    portal.look_up(demo.nhs["shielded"])

    assert portal.outcome == "FOUND"
    address = page.locator('#withheld li[data-field="address"]')
    assert address.count() >= 1
    assert {address.nth(i).get_attribute("data-reason") for i in range(address.count())} == {
        "SHIELDED"
    }
    reason = address.first.locator(".reason").inner_text()
    assert _in_words(reason), reason
    assert not POSTCODE.search(portal.text("#result")), "a shielded child's postcode is shown"


def test_a_purpose_the_policy_refuses_is_shown_as_a_refusal_in_words(page, demo):
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("school_dsl")  # a school's lead may not look up for direct care

    portal.look_up(demo.nhs["ordinary"], purpose="DIRECT_CARE")

    assert portal.last_answer["data"]["child"]["denialCode"] == "PURPOSE_NOT_PERMITTED"
    assert portal.outcome == "DENIED"
    refusal = re.compile(r"[Nn]ot (permitted|allowed)|[Mm]ay not|[Cc]annot|[Rr]efused|[Dd]enied")
    assert refusal.search(CODE.sub("", portal.text("#result"))), portal.text("#result")
    assert page.locator("#involvements li.involvement").count() == 0
    answered = page.locator('#sources td.status[data-status="ANSWERED"]')
    assert answered.count() == 0  # no agency was asked


def test_a_child_is_found_by_what_the_practitioner_knows_without_an_identifier(page, demo):
    """The demographics form, with the details a practitioner may add: the page sends them as
    the OneOf `identify.demographics`, and the gateway links the child on them."""
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("health_visitor")
    page.select_option("#purpose", "SAFEGUARDING_ENQUIRY")
    page.check('input[name="identify"][value="demographics"]')
    known = demo.demographics
    page.fill("#given-name", known["givenName"])
    page.fill("#family-name", known["familyName"])
    page.fill("#date-of-birth", known["dateOfBirth"])
    page.fill("#postcode", known["postcode"])
    page.fill("#known-as", f" {known['givenName'][:3]} , ")

    portal.answered(lambda: page.click("#look-up"))

    sent = portal.last_request["variables"]["identify"]
    assert sent == {
        "demographics": {**known, "knownAs": [known["givenName"][:3]]},
    }
    assert portal.outcome == "FOUND"
    child = portal.last_answer["data"]["child"]
    assert child["child"]["name"]["family"] == known["familyName"]
    assert sum(source["recordsMatched"] for source in child["sources"]) >= 1


def test_an_agency_s_email_links_only_as_one_plain_address(page, demo):
    """What an agency sends as a practitioner's email reaches the page as it was held: one with a
    query (`?cc=`), a second address or percent-escapes is shown as text, never as a mailto: link
    that would copy the practitioner's message to someone they never chose."""
    held = [
        "dsl@school.example.org",
        "dsl@school.example.org?cc=someone@elsewhere.example",
        "dsl@school.example.org,someone@elsewhere.example",
        "dsl%40school.example.org",
    ]

    def hostile(route):
        fetched = route.fetch()
        answer = fetched.json()
        lookup = (answer.get("data") or {}).get("child") or {}
        child = lookup.get("child")
        if child and child["involvements"]:
            template = child["involvements"][0]
            child["involvements"] = [
                template | {"practitioner": {"name": "A Practitioner", "role": None}} for _ in held
            ]
            for entry, email in zip(child["involvements"], held, strict=True):
                entry["practitioner"] |= {"phone": None, "email": email}
        route.fulfill(response=fetched, json=answer)

    page.route("**/graphql", hostile)
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")

    portal.look_up(demo.nhs["child protection plan"])

    contacts = page.locator("#involvements .contact")
    links = page.locator("#involvements .contact a[href^='mailto:']")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        "mailto:dsl@school.example.org"
    ]
    shown = " ".join(contacts.nth(i).inner_text() for i in range(contacts.count()))
    for email in held:
        assert email in shown
