"""The auditor's view in the portal: after a practitioner looks a child up, the auditor signs in
on another browser and reads who looked at that child."""

import json
from collections.abc import Sequence

import pytest

import resolvers.query
from connectors.notifications import NOTIFICATIONS_PATH
from connectors.protocol import ConnectorRecord
from connectors.serving import free_port
from gateway.demo import reference_source
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import (
    FAST_NOTIFICATIONS,
    LOOKUP,
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
    dead_end = f"http://127.0.0.1:{free_port()}{NOTIFICATIONS_PATH}"
    with serving(reference_apps(tmp_path, _reference_records())) as urls:
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


def _reference_records() -> dict[str, Sequence[ConnectorRecord]]:
    return {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record()],
    }


def test_a_trail_and_the_override_alerts_longer_than_a_reading_are_read_on_not_cut(
    new_page, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """The gateway gives a trail or a feed at most so many entries a reading (two here): the
    portal says a full reading may have more and reads on after its last entry (by its cursor),
    showing each entry once, rather than showing the first reading as the whole - for overrides,
    shown newest first, that would hide the latest."""
    monkeypatch.setattr(resolvers.query, "MAX_READ", 2)
    reason = "Child reported missing; police at the door need the current address now."
    with serving(reference_apps(tmp_path, _reference_records())) as urls:
        sources = [reference_source(name, url) for name, url in urls.items()]
        with running_gateway(tmp_path, sources) as gateway:
            token = gateway.token("police_safeguarding", "ORG1", "Max Reader")
            variables = {"nhs": NHS, "purpose": "EMERGENCY_OVERRIDE", "justification": reason}
            looked = [
                gateway.post({"query": LOOKUP, "variables": variables}, token).json()["data"][
                    "child"
                ]["auditId"]
                for _ in range(3)
            ]
            auditor = Portal(new_page(), f"{gateway.url}/portal/")
            auditor.open()
            auditor.sign_in("auditor")

            def shown(table: str) -> list[str | None]:
                rows = auditor.page.locator(f"#{table} tbody tr").all()
                return [row.locator("td code").last.text_content() for row in rows]

            auditor.user_trail("dev:ORG1:Max Reader")
            first = (auditor.text("#audit-result-heading"), shown("audit-trail"))
            auditor.read_trail_on()
            whole = (auditor.text("#audit-result-heading"), shown("audit-trail"))
            trail_more_hidden = auditor.page.locator("#audit-more").is_hidden()

            auditor.alerts()
            alerts_first = (auditor.text("#alerts-result-heading"), shown("alerts"))
            auditor.read_feed_on("alerts")
            alerts_whole = (auditor.text("#alerts-result-heading"), shown("alerts"))
            alerts_more_hidden = auditor.page.locator("#alerts-more").is_hidden()

    assert first == ("The first 2 recorded accesses: there may be later ones", looked[:2])
    assert whole == ("3 recorded accesses", looked)
    assert trail_more_hidden
    assert alerts_first == (
        "2 emergency overrides to investigate, the earliest: there may be later ones",
        looked[1::-1],
    )
    assert alerts_whole == ("3 emergency overrides to investigate", looked[::-1])
    assert alerts_more_hidden
