"""The auditor's view in the portal: after a practitioner looks a child up, the auditor signs in
on another browser and reads who looked at that child."""

import json

from tests.browser.portal import Portal


def test_the_auditor_sees_a_lookup_made_by_someone_else(new_page, demo):
    nhs = demo.nhs["education linked"]
    social_worker = Portal(new_page(), demo.portal)
    social_worker.open()
    social_worker.sign_in("social_worker")
    social_worker.look_up(nhs)
    assert social_worker.outcome == "FOUND"

    auditor = Portal(new_page(), demo.portal)
    auditor.open()
    auditor.sign_in("auditor")
    auditor.audit_trail(nhs)

    entries = auditor.page.locator("#audit-trail tr.audit-entry")
    assert entries.count() >= 1
    assert any("Sam Social" in text for text in entries.all_inner_texts())
    # The table fits the window: an auditor never scrolls sideways to read an entry.
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert auditor.page.evaluate(fits)


def test_the_auditor_reads_the_trail_of_a_child_named_by_upn(new_page, demo):
    """The school's UPN finds the child's trail: a lookup by NHS number whose school record held
    that UPN is on it."""
    social_worker = Portal(new_page(), demo.portal)
    social_worker.open()
    social_worker.sign_in("social_worker")
    social_worker.look_up(demo.nhs["education linked"])
    looked_up = social_worker.last_answer["data"]["child"]["auditId"]

    auditor = Portal(new_page(), demo.portal)
    auditor.open()
    auditor.sign_in("auditor")
    with auditor.page.expect_request(lambda r: "auditTrail(" in (r.post_data or "")) as sent:
        auditor.audit_trail(demo.upn.lower())

    request = json.loads(sent.value.post_data or "{}")
    assert request["variables"] == {"upn": demo.upn.lower()}
    entries = auditor.page.locator("#audit-trail tr.audit-entry")
    assert any(looked_up in text for text in entries.all_inner_texts())
