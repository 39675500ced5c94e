"""Owners see who looked, and auditors see the overrides: after a practitioner looks a child on a
child protection plan up, the local authority holding the plan (the demo's LA-LEEDS social worker)
reads that access in the child's history; a break-glass lookup reaches the auditor's alerts feed
and reads as an override there, and a lookup refused at a usage limit the feed of refusals;
anyone else is refused in plain words."""

import json
import re
from pathlib import Path

import httpx

from connectors.records import read_records
from gateway.tokens import DEMO_USERS
from tests.browser.portal import Portal

LOOKUP = "query($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { outcome } }"
JUSTIFICATION = "Child brought to ED unconscious at 2am, no carer present, police requesting checks"


def _signed_in(new_page, demo, role: str) -> Portal:
    portal = Portal(new_page(), demo.portal)
    portal.open()
    portal.sign_in(role)
    return portal


def _history_rows(portal: Portal) -> list[tuple[str, str]]:
    """Each `tr.access-entry` as (its text, its data-override)."""
    return portal.page.locator("#access-history tr.access-entry").evaluate_all(
        "rows => rows.map(r => [r.innerText, r.dataset.override])"
    )


def test_the_owner_sees_a_health_visitors_lookup_in_the_childs_history(new_page, demo):
    nhs = demo.nhs["child protection plan"]
    health_visitor = _signed_in(new_page, demo, "health_visitor")
    health_visitor.look_up(nhs)
    assert health_visitor.outcome == "FOUND"
    looked = health_visitor.last_answer["data"]["child"]["auditId"]

    owner = _signed_in(new_page, demo, "social_worker")
    owner.access_history(nhs)

    rows = owner.page.locator(f"#access-history tr.access-entry:has-text('{looked}')")
    assert rows.count() == 1
    text = rows.inner_text()
    for shown in ("Hana Visitor", "RR8", "Health visitor", "Safeguarding enquiry", "Found"):
        assert shown in text
    assert rows.get_attribute("data-override") == "false"
    assert nhs not in owner.page.url


def test_the_owner_opens_the_history_from_the_lookup_result_newest_first(new_page, demo):
    nhs = demo.nhs["child protection plan"]
    health_visitor = _signed_in(new_page, demo, "health_visitor")
    health_visitor.look_up(nhs)
    owner = _signed_in(new_page, demo, "social_worker")
    owner.look_up(nhs)
    assert owner.outcome == "FOUND"

    owner.access_history()

    assert owner.focused_id() == "history-result-heading"
    assert owner.page.input_value("#history-child") == nhs
    assert nhs not in owner.page.url
    rows = _history_rows(owner)
    assert len(rows) >= 2
    assert "Sam Social" in rows[0][0], "the owner's own lookup, the newest, comes first"
    assert any("Hana Visitor" in text for text, _ in rows)


def test_a_break_glass_lookup_reaches_the_auditors_alerts_and_reads_as_an_override(new_page, demo):
    # Only child-protection roles may break glass: the demo's is the LA-LEEDS social worker, whose
    # own organisation holds the plan and so is told of the override too.
    nhs = demo.nhs["child protection plan"]
    social_worker = _signed_in(new_page, demo, "social_worker")
    social_worker.break_glass(nhs, JUSTIFICATION)
    assert social_worker.outcome == "FOUND"
    broken = social_worker.last_answer["data"]["child"]["auditId"]

    auditor = _signed_in(new_page, demo, "auditor")
    auditor.alerts()
    alert = auditor.page.locator(f'#alerts tr.alert-entry[data-audit-id="{broken}"]')
    assert alert.count() == 1
    assert JUSTIFICATION in alert.inner_text()
    assert nhs not in auditor.text("#alerts")

    alert.locator("button.their-accesses").click()
    auditor.page.locator(f"#audit-trail tr.audit-entry:has-text('{broken}')").wait_for()
    assert "dev:LA-LEEDS:Sam Social" in auditor.text("#audit-trail caption")

    social_worker.access_history()
    row = social_worker.page.locator(f"#access-history tr.access-entry:has-text('{broken}')")
    assert row.get_attribute("data-override") == "true"
    assert re.search(r"emergency override", row.inner_text(), re.I)


def test_the_auditor_filters_the_trail_by_user_and_time(new_page, demo):
    nhs = demo.nhs["ordinary"]
    health_visitor = _signed_in(new_page, demo, "health_visitor")
    health_visitor.look_up(nhs, purpose="DIRECT_CARE")
    looked = health_visitor.last_answer["data"]["child"]["auditId"]

    auditor = _signed_in(new_page, demo, "auditor")
    auditor.user_trail("dev:RR8:Hana Visitor", since="2000-01-01T00:00")
    assert auditor.page.locator(f"#audit-trail tr.audit-entry:has-text('{looked}')").count() == 1
    assert all(
        "Hana Visitor" in text
        for text in auditor.page.locator("#audit-trail tr.audit-entry").all_inner_texts()
    )

    auditor.user_trail("dev:RR8:Hana Visitor", since="2999-01-01T00:00")
    assert auditor.page.locator("#audit-trail tr.audit-entry").count() == 0
    assert "No recorded access by dev:RR8:Hana Visitor" in auditor.text("#audit-trail")


def test_a_school_dsl_is_told_in_plain_words_that_only_the_owner_may_look(new_page, demo):
    school = _signed_in(new_page, demo, "school_dsl")
    school.access_history(demo.nhs["child protection plan"])

    assert school.page.get_attribute("#error", "data-code") == "NOT_THE_OWNER"
    assert "Only the organisation that holds a child's child protection plan" in school.text(
        "#error"
    )
    assert not school.page.locator("#access-history").is_visible()


def test_a_history_nobody_was_told_of_is_said_plainly(new_page, demo):
    owner = _signed_in(new_page, demo, "social_worker")
    owner.access_history(demo.nhs["ordinary"])

    assert owner.text("#history-result-heading") == (
        "No lookups of this child recorded for your organisation"
    )
    assert owner.page.locator("#history-empty").is_visible()
    assert not owner.page.locator("#access-history").is_visible()


def test_a_user_refused_at_the_per_minute_limit_reaches_the_auditors_limit_alerts(new_page, demo):
    """The demo's ED clinician (no other browser test signs in as them, whose minute this uses
    up) looks children up past the per-minute limit; the auditor reads the refusal as possible
    trawling, naming no child, and goes on to that user's accesses."""
    clinician = next(i for i, u in enumerate(DEMO_USERS) if u.role == "ed_clinician")
    session = httpx.post(
        demo.portal.rstrip("/") + "/dev-session", json={"user": clinician}, timeout=10
    )
    headers = {"authorization": f"Bearer {session.json()['token']}"}
    body = {"query": LOOKUP, "variables": {"nhs": demo.nhs["ordinary"]}}
    codes = []
    with httpx.Client(timeout=10) as client:
        while "RATE_LIMITED" not in codes:
            assert len(codes) <= 60, "no lookup was refused within the per-minute limit"
            answer = client.post(f"{demo.url}/graphql", json=body, headers=headers).json()
            codes.append(answer["errors"][0]["extensions"]["code"] if "errors" in answer else None)

    auditor = _signed_in(new_page, demo, "auditor")
    auditor.limit_alerts()
    refused = auditor.page.locator("#limit-alerts tr.alert-entry[data-kind='RATE_LIMITED']")
    assert refused.count() >= 1
    row = refused.first.inner_text()
    assert "Too many lookups in a minute" in row
    assert "dev:RR8-ED:Ed Clinician" in row
    assert demo.nhs["ordinary"] not in auditor.text("#limit-alerts")
    assert auditor.focused_id() == "limit-alerts-result-heading"

    refused.first.locator("button.their-accesses").click()
    auditor.page.locator("#audit-trail tr.audit-entry").first.wait_for()
    assert "dev:RR8-ED:Ed Clinician" in auditor.text("#audit-trail caption")


def test_the_owner_names_a_child_by_upn_in_the_history_form(new_page, demo):
    """A record holding no NHS number is read by its UPN: the form sends it as the UPN, and the
    answer (whatever the child's history) is shown, not refused."""
    owner = _signed_in(new_page, demo, "social_worker")
    with owner.page.expect_request(lambda r: "accessHistory(" in (r.post_data or "")) as sent:
        owner.access_history(demo.upn)

    request = json.loads(sent.value.post_data or "{}")
    assert request["variables"] == {"upn": demo.upn, "limit": 25}
    assert owner.page.locator("#history-problem").inner_text() == ""
    assert (
        owner.page.locator("#history-result-heading")
        .inner_text()
        .endswith(("of this child", "recorded for your organisation"))
    )
    assert demo.upn not in owner.page.url


def _pupil_known_only_by_upn(records: Path) -> str:
    """The UPN of a pupil whose school record holds no NHS number and whom no other agency's
    record names by that UPN: a lookup by it finds the school's record alone."""
    elsewhere = {
        record.identifiers.upn
        for agency in ("health", "social_care")
        for record in read_records(records / f"{agency}.jsonl")
    }
    return next(
        record.identifiers.upn
        for record in read_records(records / "education.jsonl")
        if record.identifiers.upn
        and record.identifiers.nhs_number is None
        and record.identifiers.upn not in elsewhere
        and not (record.flags.restricted or record.flags.shielded)
    )


def test_the_history_button_names_a_pupil_no_agency_knows_by_nhs_number_by_the_upn(new_page, demo):
    """Found by UPN with no NHS number anywhere, the child is still named for its history: by the
    UPN asked with, in the request body."""
    assert demo.records is not None
    upn = _pupil_known_only_by_upn(demo.records)
    owner = _signed_in(new_page, demo, "social_worker")
    owner.page.check('input[name="identify"][value="upn"]')
    owner.page.fill("#upn", upn)
    owner.answered(lambda: owner.page.click("#look-up"))
    assert owner.outcome == "FOUND"
    assert owner.last_answer["data"]["child"]["child"]["nhsNumber"] is None

    with owner.page.expect_request(lambda r: "accessHistory(" in (r.post_data or "")) as sent:
        owner.access_history()

    assert json.loads(sent.value.post_data or "{}")["variables"] == {"upn": upn, "limit": 25}
    assert owner.page.input_value("#history-child") == upn
    assert owner.page.locator("#history-problem").inner_text() == ""
    assert upn not in owner.page.url
