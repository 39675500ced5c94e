"""Reading every entry of the auditors' feeds, page by page, through the real gateway: each entry's
`cursor` given back as `after` reads on strictly after it, so more entries at one time than a
page holds (a harvesting script's burst, a seeded log) no longer stall an auditor, and the
undelivered notifications past the first page can be read at all. Both audit stores: the SQLite
file and PostgreSQL. A cursor the gateway did not issue for that reading is bad input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import resolvers.query
from gateway.audit import (
    AuditRecord,
    OutboxMessage,
    Pseudonymiser,
    audit_key,
    open_audit_store,
    open_outbox,
    upgrade_schema,
)
from gateway.config import Settings
from tests.factories import BREAK_GLASS_REASON, NHS, OTHER_NHS, access, audit_record, outbox_message
from tests.stack import Stack, reference_connectors, running_gateway

AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
"""The one time every seeded entry has."""
GIVEN_UP_AT = AT.timestamp()
EACH = resolvers.query.MAX_READ + 7
"""Entries of each kind at that one time: more than one reading gives."""
HANA = "dev:RR8:Hana"

TRAIL = """query($nhs: String!, $after: String) {
  auditTrail(nhsNumber: $nhs, after: $after) { auditId at cursor } }"""
USER_TRAIL = """query($subject: String!, $after: String) {
  userAuditTrail(subject: $subject, after: $after) { auditId at cursor } }"""
OVERRIDES = "query($after: String) { overrideAlerts(after: $after) { auditId at cursor } }"
LIMITS = "query($after: String) { limitAlerts(after: $after) { auditId at cursor } }"
UNDELIVERED = """query($after: String) {
  undeliveredNotifications(after: $after) { auditId agency cursor } }"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """The gateway's settings for one audit store: the SQLite file, or a PostgreSQL schema of the
    test's own, made as `childlookup db upgrade` makes it."""
    if request.param == "sqlite":
        return {}
    url, schema = request.getfixturevalue("postgres_schema")
    upgrade_schema(url, schema)
    return {"database_url": url, "database_schema": schema}


def _seeded(settings: Settings) -> None:
    """EACH found lookups of NHS by Hana (each with an owner notification given up on), EACH
    break-glass overrides and EACH lookups refused at the rate limit, all at AT, and every
    notification given up on at one time too."""
    child = Pseudonymiser(audit_key(settings)).ref("nhs", NHS)
    at = access(at=AT, child_ref=child)
    found = [audit_record(f"found-{n}", access=at) for n in range(EACH)]
    override = access(
        at=AT, child_ref=child, purpose="EMERGENCY_OVERRIDE", justification=BREAK_GLASS_REASON
    )
    overrides = [
        audit_record(f"override-{n}", access=override, flagged_for_investigation=True)
        for n in range(EACH)
    ]
    refused = [
        audit_record(f"refused-{n}", access=at, outcome="REFUSED", error_code="RATE_LIMITED")
        for n in range(EACH)
    ]
    letters = {r.audit_id: [outbox_message(f"m-{r.audit_id}", r.audit_id)] for r in found}
    store = open_audit_store(settings)

    async def append(records: list[AuditRecord], notices: dict[str, list[OutboxMessage]]) -> None:
        for start in range(0, len(records), 500):
            batch = records[start : start + 500]
            await asyncio.gather(*(store.append(r, notices.get(r.audit_id, ())) for r in batch))

    try:
        asyncio.run(append(found + overrides + refused, letters))
    finally:
        store.close()
    outbox = open_outbox(settings)
    try:
        for messages in letters.values():
            outbox.dead(messages[0].message_id, "UNREACHABLE", GIVEN_UP_AT)
    finally:
        outbox.close()


@pytest.fixture
def gateway(tmp_path, backend) -> Iterator[Stack]:
    _seeded(Settings(state_dir=tmp_path, **backend))
    with (
        reference_connectors(tmp_path, {"health": []}) as sources,
        running_gateway(tmp_path, sources, **backend) as gw,
    ):
        yield gw


def _page(gw: Stack, query: str, variables: dict[str, Any]) -> Any:
    body = gw.post({"query": query, "variables": variables}, gw.token("auditor")).json()
    assert "errors" not in body, body
    (entries,) = body["data"].values()
    return entries


def _read_all(gw: Stack, query: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entry, page after page, each read on from the last one's cursor, up to a page short
    of the maximum: the feed as it was when that page was read."""
    entries: list[dict[str, Any]] = []
    after = None
    for _ in range(10):
        page = _page(gw, query, variables | {"after": after})
        entries += page
        if len(page) < resolvers.query.MAX_READ:
            return entries
        after = page[-1]["cursor"]
    raise AssertionError("paging never reached the end of the feed")


def _seeded_ids(entries: list[dict[str, Any]], prefix: str) -> list[str]:
    return [e["auditId"] for e in entries if e["auditId"].startswith(prefix)]


def test_every_entry_of_a_childs_trail_at_one_time_is_read_once_in_the_logs_order(gateway):
    child_refs = gateway.components.pseudonymiser.refs("nhs", NHS)
    logged = gateway.components.audit.records(child_refs=child_refs, limit=10 * EACH)

    entries = _read_all(gateway, TRAIL, {"nhs": NHS})

    ids = [e["auditId"] for e in entries]
    assert len(ids) == len(set(ids))
    seeded = [i for i in ids if i.startswith(("found-", "override-", "refused-"))]
    assert len(seeded) == 3 * EACH
    assert seeded == [r["audit_id"] for r in logged if r["audit_id"] in set(seeded)]


def test_every_entry_of_a_users_trail_at_one_time_is_read_once(gateway):
    entries = _read_all(gateway, USER_TRAIL, {"subject": HANA})

    ids = [e["auditId"] for e in entries]
    assert len(ids) == len(set(ids)) == 3 * EACH
    assert {e["at"] for e in entries} == {AT.isoformat()}


@pytest.mark.parametrize(
    ("query", "prefix"),
    [(OVERRIDES, "override-"), (LIMITS, "refused-")],
    ids=["overrideAlerts", "limitAlerts"],
)
def test_every_alert_at_one_time_is_read_once(gateway, query, prefix):
    entries = _read_all(gateway, query, {})

    ids = _seeded_ids(entries, prefix)
    assert len(ids) == len(set(ids)) == EACH
    assert len(entries) == EACH


def test_every_undelivered_notification_given_up_on_at_one_time_is_read_once(gateway):
    entries = _read_all(gateway, UNDELIVERED, {})

    ids = [e["auditId"] for e in entries]
    assert len(ids) == len(set(ids)) == EACH
    assert set(ids) == {f"found-{n}" for n in range(EACH)}


def test_since_still_reads_from_a_time_with_the_entries_at_it(gateway):
    first = _page(gateway, OVERRIDES, {})
    since = _page(
        gateway,
        "query($since: DateTime) { overrideAlerts(since: $since) { auditId } }",
        {"since": first[-1]["at"]},
    )

    assert [a["auditId"] for a in since] == [a["auditId"] for a in first]


def test_each_page_read_by_cursor_is_audited_from_the_time_it_read_on_from(gateway):
    first = _page(gateway, USER_TRAIL, {"subject": HANA})
    _page(gateway, USER_TRAIL, {"subject": HANA, "after": first[-1]["cursor"]})

    readings = [
        r
        for r in gateway.components.audit.records(subject="dev:ORG1:Test User")
        if r["outcome"] == "USER_TRAIL_VIEWED"
    ]
    assert [(r["read"]["subject"], r["read"]["since"]) for r in readings] == [
        (HANA, None),
        (HANA, AT.isoformat()),
    ]


def _spliced(first: str, last: str) -> str:
    """The first entry's position under the last one's seal: well-formed, but never issued."""
    return first.partition(".")[0] + "." + last.partition(".")[2]


def test_a_cursor_not_issued_for_the_reading_is_bad_input(gateway):
    trail = _page(gateway, TRAIL, {"nhs": NHS})
    overrides = _page(gateway, OVERRIDES, {})
    letters = _page(gateway, UNDELIVERED, {})
    child = {"nhs": NHS}
    cases = {
        "not a cursor": (TRAIL, child, "not a cursor"),
        "empty": (TRAIL, child, ""),
        "too long": (TRAIL, child, "x" * 5000),
        "not base64": (TRAIL, child, "é.é"),
        "an empty position": (TRAIL, child, "e30.e30"),  # {}.{}
        "spliced": (TRAIL, child, _spliced(trail[0]["cursor"], trail[-1]["cursor"])),
        "spliced letter": (UNDELIVERED, {}, _spliced(letters[0]["cursor"], letters[1]["cursor"])),
        "another feed's": (TRAIL, child, overrides[-1]["cursor"]),
        "other alerts'": (LIMITS, {}, overrides[-1]["cursor"]),
        "another child's": (TRAIL, {"nhs": OTHER_NHS}, trail[-1]["cursor"]),
        "a user's": (USER_TRAIL, {"subject": HANA}, trail[-1]["cursor"]),
    }

    answers = {
        case: gateway.post(
            {"query": query, "variables": variables | {"after": cursor}}, gateway.token("auditor")
        )
        for case, (query, variables, cursor) in cases.items()
    }

    for case, response in answers.items():
        body = response.json()
        assert response.status_code < 500, case
        assert body["data"] is None, (case, body)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (case, body)
