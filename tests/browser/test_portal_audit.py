"""The auditor's view in the portal: after a practitioner looks a child up, the auditor signs in
on another browser and reads who looked at that child."""

import json
from collections.abc import Sequence

from connectors.notifications import NOTIFICATIONS_PATH
from connectors.protocol import ConnectorRecord
from connectors.serving import free_port
from gateway.demo import reference_source
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import (
    FAST_NOTIFICATIONS,
    eventually,
    reference_apps,
    running_gateway,
    serving,
)


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


def test_the_auditor_sees_an_agency_not_told_of_a_lookup(new_page, tmp_path):
    """A local authority whose notification endpoint cannot be reached is never told that a child
    on its plan was looked up: once the gateway gives up, the auditor's view lists it - when, the
    agency, the attempts and why - with the lookup's audit reference, and names no child. The demo
    delivers every notification, so this runs a stack of its own with that endpoint dead."""
    records: dict[str, Sequence[ConnectorRecord]] = {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record()],
    }
    dead_end = f"http://127.0.0.1:{free_port()}{NOTIFICATIONS_PATH}"
    with serving(reference_apps(tmp_path, records)) as urls:
        sources = [
            reference_source(name, url).model_copy(update={"notification_url": dead_end})
            for name, url in urls.items()
        ]
        settings = {**FAST_NOTIFICATIONS, "notification_max_attempts": 2}
        with running_gateway(tmp_path, sources, **settings) as gateway:
            clinician = Portal(new_page(), f"{gateway.url}/portal/")
            clinician.open()
            clinician.sign_in("ed_clinician")
            clinician.look_up(NHS, purpose="DIRECT_CARE")
            audit_id = clinician.last_answer["data"]["child"]["auditId"]
            eventually(lambda: gateway.components.audit.dead_letters(limit=10))

            auditor = Portal(new_page(), f"{gateway.url}/portal/")
            auditor.open()
            auditor.sign_in("auditor")
            auditor.undelivered()

    heading = auditor.text("#undelivered-result-heading")
    assert heading == "1 agency not told of a lookup"
    (row,) = auditor.page.locator("#undelivered tr.undelivered-entry").all()
    assert row.get_attribute("data-audit-id") == audit_id
    cells = row.locator("td").all_inner_texts()
    assert cells[1:] == [
        "social_care",
        "2",
        "The agency's endpoint could not be reached (UNREACHABLE)",
        audit_id,
    ]
    assert NHS not in auditor.text("#undelivered-result")
