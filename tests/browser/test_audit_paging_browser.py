"""The auditor's view reads a trail or a feed on past a full reading by the last entry's cursor:
more entries at one time than a reading holds (a harvesting script's burst) are each shown once,
and the reading on reaches the end, where reading on from the last entry's time would give the
same ones again and stop short. The user's chosen time still starts the first reading.

The gateway gives two entries a reading here (`resolvers.query.MAX_READ`, which the portal is
configured from), and the log is seeded with five of each kind at one time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import resolvers.query
from gateway.audit import (
    OutboxMessage,
    Pseudonymiser,
    audit_key,
    open_audit_store,
    open_outbox,
)
from gateway.config import Settings
from tests.browser.portal import Portal
from tests.factories import BREAK_GLASS_REASON, NHS, access, audit_record, outbox_message
from tests.stack import Stack, reference_connectors, running_gateway

AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
"""The one time every seeded entry has, but `EARLIER`."""
EARLIER = "found-earlier"
"""Hana's one lookup an hour before AT: before the time an auditor reads her accesses since."""
READING = 2
"""The most entries the gateway gives a reading here."""
EACH = 5
"""Entries of each kind at AT: more than two readings' worth."""
HANA = "dev:RR8:Hana"
FOUND = [f"found-{n}" for n in range(EACH)]
OVERRIDES = [f"override-{n}" for n in range(EACH)]
REFUSED = [f"refused-{n}" for n in range(EACH)]


def _seed(settings: Settings) -> None:
    """Hana's lookup at EARLIER, then at AT, in this order: her EACH found lookups of NHS (each
    with an owner notification given up on, all at AT), EACH break-glass overrides and EACH
    lookups refused at the rate limit. Appended one by one, so the log's order is this one."""
    child = Pseudonymiser(audit_key(settings)).ref("nhs", NHS)
    at = access(at=AT, child_ref=child)
    override = access(
        at=AT, child_ref=child, purpose="EMERGENCY_OVERRIDE", justification=BREAK_GLASS_REASON
    )
    records = [
        audit_record(EARLIER, access=access(at=AT - timedelta(hours=1), child_ref=child)),
        *(audit_record(audit_id, access=at) for audit_id in FOUND),
        *(audit_record(a, access=override, flagged_for_investigation=True) for a in OVERRIDES),
        *(
            audit_record(a, access=at, outcome="REFUSED", error_code="RATE_LIMITED")
            for a in REFUSED
        ),
    ]
    letters = {audit_id: outbox_message(f"m-{audit_id}", audit_id) for audit_id in FOUND}
    store = open_audit_store(settings)

    async def append(notices: dict[str, OutboxMessage]) -> None:
        for record in records:
            held = notices.get(record.audit_id)
            await store.append(record, [held] if held else [])

    try:
        # In a thread of its own: Playwright's event loop runs on this one (tests/browser/conftest).
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, append(letters)).result()
    finally:
        store.close()
    outbox = open_outbox(settings)
    try:
        for letter in letters.values():
            outbox.dead(letter.message_id, "UNREACHABLE", AT.timestamp())
    finally:
        outbox.close()


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setattr(resolvers.query, "MAX_READ", READING)
    _seed(Settings(state_dir=tmp_path))
    with (
        reference_connectors(tmp_path, {"health": []}) as sources,
        running_gateway(tmp_path, sources) as stack,
    ):
        yield stack


@pytest.fixture
def auditor(new_page: Callable[..., Any], gateway: Stack) -> Portal:
    """The auditor signed in, the page's clock in UTC (as the seeded times are)."""
    portal = Portal(new_page(timezone_id="UTC"), f"{gateway.url}/portal/")
    portal.open()
    portal.sign_in("auditor")
    return portal


def _sent(portal: Portal) -> list[dict[str, Any]]:
    """The variables of every GraphQL request the page sends from now on."""
    sent: list[dict[str, Any]] = []

    def keep(request: Any) -> None:
        if request.url.endswith("/graphql") and request.method == "POST":
            sent.append(json.loads(request.post_data or "{}").get("variables", {}))

    portal.page.on("request", keep)
    return sent


def _shown(portal: Portal, rows: str) -> list[str]:
    """The audit reference of each row of `rows`, as the page shows them."""
    return [
        str(row.locator("td code").last.text_content()) for row in portal.page.locator(rows).all()
    ]


def _read_on_to_the_end(read_on: Callable[[], None], more: Any) -> int:
    """Read on while the page offers to; how many times it did."""
    times = 0
    while more.is_visible():
        assert times < 2 * 3 * EACH, "the page offers to read on forever"
        read_on()
        times += 1
    return times


def test_a_users_accesses_at_one_time_are_read_on_by_cursor_from_the_time_chosen(auditor):
    sent = _sent(auditor)
    auditor.user_trail(HANA, since="2026-03-14T09:30")
    first = (auditor.text("#audit-result-heading"), _shown(auditor, "#audit-trail tr.audit-entry"))

    readings = _read_on_to_the_end(auditor.read_trail_on, auditor.page.locator("#audit-more"))

    at_one_time = FOUND + OVERRIDES + REFUSED
    assert first == (
        f"The first {READING} recorded accesses: there may be later ones",
        at_one_time[:READING],
    )
    assert auditor.text("#audit-result-heading") == f"{len(at_one_time)} recorded accesses"
    assert _shown(auditor, "#audit-trail tr.audit-entry") == at_one_time
    assert readings == len(at_one_time) // READING
    since = AT.isoformat().replace("+00:00", ".000Z")
    assert sent[0] == {"subject": HANA, "since": since}
    assert all(v["since"] == since and v["after"] for v in sent[1:]), sent
    assert len({v["after"] for v in sent[1:]}) == readings


def test_a_childs_trail_at_one_time_is_read_on_to_its_end_each_access_once(auditor):
    """The trail of a child holds the auditor's readings of it too, each recorded as it is read:
    those come after the seeded ones, and are read on to as well."""
    auditor.audit_trail(NHS)

    _read_on_to_the_end(auditor.read_trail_on, auditor.page.locator("#audit-more"))

    shown = _shown(auditor, "#audit-trail tr.audit-entry")
    seeded = [EARLIER, *FOUND, *OVERRIDES, *REFUSED]
    assert shown[: len(seeded)] == seeded
    assert len(set(shown)) == len(shown)
    assert auditor.text("#audit-result-heading") == f"{len(shown)} recorded accesses"


@pytest.mark.parametrize(
    ("feed", "show", "seeded", "counted"),
    [
        ("alerts", Portal.alerts, OVERRIDES, "emergency overrides to investigate"),
        ("limit-alerts", Portal.limit_alerts, REFUSED, "lookups refused at a usage limit"),
        ("undelivered", Portal.undelivered, FOUND, "agencies not told of a lookup"),
    ],
    ids=["overrideAlerts", "limitAlerts", "undeliveredNotifications"],
)
def test_a_feed_at_one_time_is_read_on_to_its_end_each_entry_once(
    auditor, feed, show, seeded, counted
):
    """Shown newest first: a reading on goes above the entries shown."""
    rows = f"#{feed} tbody tr[data-audit-id]"
    show(auditor)
    first = (auditor.text(f"#{feed}-result-heading"), _shown(auditor, rows))

    _read_on_to_the_end(lambda: auditor.read_feed_on(feed), auditor.page.locator(f"#{feed}-more"))

    earliest = f"{READING} {counted}, the earliest: there may be later ones"
    assert first == (earliest, seeded[READING - 1 :: -1])
    assert auditor.text(f"#{feed}-result-heading") == f"{EACH} {counted}"
    assert _shown(auditor, rows) == seeded[::-1]
