"""The auditors' feeds read in the log's own order (gateway.audit.pages): several gateways append
to one log (PostgreSQL, or an SQLite file shared by workers), each stamping its entries with its
own clock. An entry committed after an auditor read a page, but stamped a few milliseconds before
that page's last entry by a gateway whose clock is behind, sorted before the cursor when the
feeds were ordered by time, and no reading on - by cursor or from `since` - ever gave it: a
privacy officer polling overrideAlerts missed a break-glass override for good. Ordered by the
order entries were committed in, each is read once. Through the real gateway, on both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.audit import (
    AuditRecord,
    Pseudonymiser,
    audit_key,
    downgrade_schema,
    open_audit_store,
    open_outbox,
    upgrade_schema,
)
from gateway.audit.pages import CURSOR_PURPOSE, _b64, _seal
from gateway.audit.types import BREAK_GLASS_ALERTS
from gateway.config import Settings
from tests.factories import BREAK_GLASS_REASON, NHS, access, audit_record, outbox_message
from tests.stack import Stack, reference_connectors, running_gateway
from tests.test_audit_paging import AT, HANA
from tests.test_audit_paging import backend as backend  # a fixture: SQLite, then PostgreSQL

AHEAD = timedelta(milliseconds=50)
"""How far ahead of the other gateway's the clock of the one that commits first runs."""
ROUNDS = 3
"""Each round: the gateway ahead commits an entry, the auditor reads on, then the gateway behind
commits one stamped before the entry the auditor read last."""

READING = "query(%s$after: String, $since: DateTime) { %s { auditId cursor } }"
FEEDS = {
    "auditTrail": ("$nhs: String!, ", "auditTrail(nhsNumber: $nhs, after: $after, since: $since)"),
    "userAuditTrail": (
        "$subject: String!, ",
        "userAuditTrail(subject: $subject, after: $after, since: $since)",
    ),
    "overrideAlerts": ("", "overrideAlerts(after: $after, since: $since)"),
    "limitAlerts": ("", "limitAlerts(after: $after, since: $since)"),
}
UNDELIVERED = """query($after: String) {
  undeliveredNotifications(after: $after) { auditId cursor } }"""


def _entry(feed: str, audit_id: str, at: datetime, child_ref: str) -> AuditRecord:
    """A record `feed` gives: Hana's lookup of the child (both trails), her break-glass override,
    or her lookup refused at the rate limit."""
    if feed == "overrideAlerts":
        override = access(
            at=at,
            child_ref=child_ref,
            purpose="EMERGENCY_OVERRIDE",
            justification=BREAK_GLASS_REASON,
        )
        return audit_record(audit_id, access=override, flagged_for_investigation=True)
    looked_up = access(at=at, child_ref=child_ref)
    if feed == "limitAlerts":
        return audit_record(
            audit_id, access=looked_up, outcome="REFUSED", error_code="RATE_LIMITED"
        )
    return audit_record(audit_id, access=looked_up)


@contextlib.contextmanager
def _gateway(tmp_path: Any, backend: dict[str, str]) -> Iterator[tuple[Stack, Settings]]:
    settings = Settings(state_dir=tmp_path, **backend)
    with (
        reference_connectors(tmp_path, {"health": []}) as sources,
        running_gateway(tmp_path, sources, **backend) as gw,
    ):
        yield gw, settings


def _reader(gw: Stack, query: str, variables: dict[str, Any]) -> Callable[[], list[str]]:
    """Reads on, each call, after the last entry the calls before it gave: the audit ids read."""
    after: list[str | None] = [None]

    def read_on() -> list[str]:
        body = gw.post(
            {"query": query, "variables": variables | {"after": after[0]}},
            gw.token("auditor"),
        ).json()
        assert "errors" not in body, body
        (entries,) = body["data"].values()
        if entries:
            after[0] = entries[-1]["cursor"]
        return [e["auditId"] for e in entries]

    return read_on


@pytest.mark.parametrize("since", [None, AT], ids=["from the start", "since a time"])
@pytest.mark.parametrize("feed", list(FEEDS))
def test_an_entry_stamped_before_the_last_one_read_but_committed_after_it_is_read_once(
    tmp_path, backend, feed, since
):
    with _gateway(tmp_path, backend) as (gw, settings):
        child = Pseudonymiser(audit_key(settings)).ref("nhs", NHS)
        ahead, behind = open_audit_store(settings), open_audit_store(settings)
        named, field = FEEDS[feed]
        variables = {"since": since and since.isoformat()}
        variables |= {"nhs": NHS} if "$nhs" in named else {"subject": HANA} if named else {}
        read_on = _reader(gw, READING % (named, field), variables)
        read: list[str] = []
        # Stamped before `since`, committed after reading began: no reading from it gives it.
        early = _entry(feed, "behind-early", AT - AHEAD, child)
        try:
            asyncio.run(behind.append(early))
            for n in range(ROUNDS):
                at = AT + timedelta(seconds=n)
                asyncio.run(ahead.append(_entry(feed, f"ahead-{n}", at + AHEAD, child)))
                read += read_on()
                asyncio.run(behind.append(_entry(feed, f"behind-{n}", at, child)))
            read += read_on() + read_on()
        finally:
            ahead.close()
            behind.close()

    seeded = [i for i in read if i.startswith(("ahead-", "behind-"))]
    expected = {f"{side}-{n}" for side in ("ahead", "behind") for n in range(ROUNDS)}
    if since is None:
        expected.add("behind-early")
    assert sorted(seeded) == sorted(expected)


def test_a_notification_given_up_on_by_a_gateway_whose_clock_is_behind_is_read_once(
    tmp_path, backend
):
    """Dispatchers of several gateways give notifications up, each by its own clock: one given up
    after the auditor read the list, at a time before the last one read, is still read on to."""
    letters = [f"m-{side}-{n}" for n in range(ROUNDS) for side in ("ahead", "behind")]
    with _gateway(tmp_path, backend) as (gw, settings):
        store = open_audit_store(settings)
        try:
            for message_id in letters:
                record = audit_record(message_id.removeprefix("m-"))
                asyncio.run(store.append(record, [outbox_message(message_id, record.audit_id)]))
        finally:
            store.close()
        ahead, behind = open_outbox(settings), open_outbox(settings)
        read_on = _reader(gw, UNDELIVERED, {})
        read: list[str] = []
        try:
            for n in range(ROUNDS):
                given_up = (AT + timedelta(seconds=n)).timestamp()
                ahead.dead(f"m-ahead-{n}", "UNREACHABLE", given_up + AHEAD.total_seconds())
                read += read_on()
                behind.dead(f"m-behind-{n}", "UNREACHABLE", given_up)
            read += read_on() + read_on()
        finally:
            ahead.close()
            behind.close()

    assert sorted(read) == sorted(m.removeprefix("m-") for m in letters)


def _given_up_before_their_order_was_kept(settings: Settings, given_up: dict[str, float]) -> None:
    """The log as a gateway that kept no order of giving up left it, with `given_up` given up at
    those times, then brought to this version's schema: a PostgreSQL schema taken back to the
    revision before and upgraded again (`childlookup db upgrade`); an SQLite log at the version
    before, which the store brings on when it opens it."""
    statement = "UPDATE notification_outbox SET state = 'DEAD', finished_at = %s"
    if settings.database_url is None:
        with contextlib.closing(sqlite3.connect(settings.resolved_audit_db())) as db, db:
            for message_id, at in given_up.items():
                db.execute(
                    statement.replace("%s", "?") + ", given_up_seq = NULL WHERE message_id = ?",
                    (at, message_id),
                )
            db.execute("PRAGMA user_version = 5")
        return
    url, schema = settings.database_url, settings.database_schema
    downgrade_schema(url, schema, "0006")
    with psycopg.connect(url) as db:
        db.execute(f'SET search_path TO "{schema}"')
        for message_id, at in given_up.items():
            db.execute(statement + " WHERE message_id = %s", (at, message_id))
    upgrade_schema(url, schema)


def test_dead_letters_given_up_before_their_order_was_kept_are_read_in_the_order_of_their_times(
    tmp_path, backend
):
    settings = Settings(state_dir=tmp_path, **backend)
    store = open_audit_store(settings)
    messages = [outbox_message(f"m-{n}", "a-1") for n in range(4)]
    asyncio.run(store.append(audit_record("a-1"), messages))
    store.close()
    _given_up_before_their_order_was_kept(settings, {"m-0": 30.0, "m-1": 10.0, "m-2": 20.0})

    store, outbox = open_audit_store(settings), open_outbox(settings)
    try:
        outbox.dead("m-3", "UNREACHABLE", 5.0)  # by a clock far behind, after the upgrade
        letters = store.positioned_dead_letters(10)
    finally:
        store.close()
        outbox.close()

    assert [(place, e.message_id) for place, e in letters] == [
        (1, "m-1"),
        (2, "m-2"),
        (3, "m-0"),
        (4, "m-3"),
    ]


def test_a_cursor_issued_when_the_feeds_were_read_by_time_is_refused_saying_to_start_over(
    tmp_path, backend
):
    """Its place (a time, then a `seq`) has no exact place in commit order: read on from either
    side of it, an entry would be skipped or read twice. Sealed as the gateway sealed it then."""
    with _gateway(tmp_path, backend) as (gw, _):
        key = gw.components.pseudonymiser.derived_keys(CURSOR_PURPOSE)[0]
        payload = _b64(b'["2026-03-14T09:30:00+00:00",7]')
        reading = "alerts:" + ",".join(sorted(BREAK_GLASS_ALERTS))
        cursor = f"{payload}.{_b64(_seal(key, reading, payload))}"
        body = gw.post(
            {"query": READING % ("", FEEDS["overrideAlerts"][1]), "variables": {"after": cursor}},
            gw.token("auditor"),
        ).json()

    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "start over" in error["message"]
