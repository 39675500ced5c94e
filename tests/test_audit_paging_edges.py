"""The auditors' feeds read by cursor (gateway.audit.pages): what the paging tests
(tests/test_audit_paging.py) left unchecked, through the real gateway on both audit stores."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.audit import Pseudonymiser, open_audit_store
from gateway.audit.outbox import dead_letters_query
from gateway.audit.queries import alerts_query, records_query
from gateway.audit.types import BREAK_GLASS_ALERTS, LIMIT_ALERTS, utc_text
from gateway.config import Settings
from tests.factories import NHS, access, audit_record
from tests.stack import reference_connectors, running_gateway
from tests.test_audit_paging import AT, HANA, TRAIL, _page
from tests.test_audit_paging import backend as backend  # a fixture: SQLite, then PostgreSQL

OLD_KEY = "0f" * 32
NEW_KEY = "e1" * 32


def test_a_childs_trail_reads_on_from_a_cursor_issued_before_the_audit_key_was_rotated(
    tmp_path, backend
):
    """The cursor's seal is made under a key derived from the audit key, and any previous key
    still opens one (docs/architecture.md, Paging), so an auditor part way through a child's
    trail reads on after a rotation. The child's trail bound its cursors to the child's pseudonym
    under the current key, which a rotation changes: every cursor issued before it was refused
    as BAD_USER_INPUT, the auditor sent back to the first page."""
    settings: dict[str, Any] = backend
    old_ref = Pseudonymiser(OLD_KEY.encode()).ref("nhs", NHS)
    store = open_audit_store(Settings(state_dir=tmp_path, audit_key=OLD_KEY, **settings))
    try:
        for n in range(2):
            record = audit_record(
                f"before-{n}", access=access(at=AT + timedelta(seconds=n), child_ref=old_ref)
            )
            asyncio.run(store.append(record))
    finally:
        store.close()

    with (
        reference_connectors(tmp_path, {"health": []}) as sources,
        running_gateway(tmp_path, sources, audit_key=OLD_KEY, **settings) as gw,
    ):
        cursor = _page(gw, TRAIL, {"nhs": NHS})[0]["cursor"]
    with (
        reference_connectors(tmp_path, {"health": []}) as sources,
        running_gateway(
            tmp_path, sources, audit_key=NEW_KEY, audit_previous_keys=(OLD_KEY,), **settings
        ) as gw,
    ):
        read_on = _page(gw, TRAIL, {"nhs": NHS, "after": cursor})

    assert read_on[0]["auditId"] == "before-1"
    assert "before-0" not in {e["auditId"] for e in read_on}


def _plan(settings: Settings, statement: str, params: Sequence[Any], *, sorts: bool = False) -> str:
    """How the store's database would run `statement` (`%s` placeholders) on the log `settings`
    name: EXPLAIN QUERY PLAN in SQLite; in PostgreSQL EXPLAIN with sequential scans and (unless
    `sorts`) sorts priced out, so that it shows whether an index can give the rows in order at
    all, whatever the few rows of a test's table would make cheapest."""
    store = open_audit_store(settings)  # the schema as the store makes (or requires) it
    store.close()
    if settings.database_url is None:
        with sqlite3.connect(settings.resolved_audit_db()) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + statement.replace("%s", "?"), params)
            return "\n".join(str(row[-1]) for row in rows)
    with psycopg.connect(settings.database_url) as pg:
        pg.execute(f'SET search_path TO "{settings.database_schema}"')
        pg.execute("SET enable_seqscan = off")
        pg.execute(f"SET enable_sort = {'on' if sorts else 'off'}")
        return "\n".join(str(row[0]) for row in pg.execute("EXPLAIN " + statement, params))


def _page_query(feed: str, postgres: bool) -> tuple[str, tuple[Any, ...]]:
    """The statement the store reads a page of `feed` on from a cursor with, and its parameters."""
    since = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    if feed == "undeliveredNotifications":
        return dead_letters_query(after=True), (7, 1000)
    if feed == "userAuditTrail":
        return records_query(
            child_refs=(),
            subject=HANA,
            since=since if postgres else utc_text(since),
            after=7,
            limit=1000,
            postgres=postgres,
        )
    kinds = BREAK_GLASS_ALERTS if feed == "overrideAlerts" else LIMIT_ALERTS
    condition = "kind = ANY(%s)" if postgres else "kind IN (SELECT value FROM json_each(%s))"
    chosen = list(kinds) if postgres else json.dumps(list(kinds))
    return alerts_query(condition, after=True), (
        since if postgres else utc_text(since),
        chosen,
        7,
        1000,
    )


_IN_ORDER = {
    "overrideAlerts": ("audit_alert_pkey", "USING INTEGER PRIMARY KEY (rowid>?)"),
    "limitAlerts": ("audit_alert_pkey", "USING INTEGER PRIMARY KEY (rowid>?)"),
    "userAuditTrail": ("audit_log_subject_seq", "audit_log_subject_seq (subject=? AND seq>?)"),
    "undeliveredNotifications": (
        "notification_outbox_given_up",
        "notification_outbox_given_up (state=? AND given_up_seq>?)",
    ),
}
"""Each feed's index in its order (`seq`, commit order: gateway.audit.pages), by store."""


@pytest.mark.parametrize("feed", list(_IN_ORDER))
def test_reading_a_feed_on_from_a_cursor_is_served_by_an_index_in_its_order(
    tmp_path, backend, feed
):
    """Each page of a feed read on by cursor ran its keyset query over the whole table, then
    sorted what it found: reading a harvesting script's burst of limit alerts (one a refused
    call) page by page read the table once a page, quadratic in its size, each read holding the
    SQLite store's lock. The feeds are read in commit order (`seq`, the dead letters'
    `given_up_seq`), and an index in that order serves each: the rows come in order from where
    the cursor stands, and the reading stops at a page."""
    settings = Settings(state_dir=tmp_path, **backend)
    postgres = settings.database_url is not None

    plan = _plan(settings, *_page_query(feed, postgres))

    assert _IN_ORDER[feed][0 if postgres else 1] in plan, plan
    assert "SCAN audit_alert\n" not in plan + "\n", plan
    assert "Seq Scan" not in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert "Sort" not in plan, plan


def test_a_childs_trail_is_read_through_the_childs_indexes(tmp_path, backend):
    """A child's trail, in the log's order, is found through the child's own indexes (looked up
    by its pseudonyms, or reaching records that hold them): what is sorted is that child's
    records, never the log."""
    settings = Settings(state_dir=tmp_path, **backend)
    postgres = settings.database_url is not None
    statement, params = records_query(
        child_refs=("nhs:one", "nhs:other"), subject=None, since=None, limit=1000, postgres=postgres
    )

    plan = _plan(settings, statement, params, sorts=True)

    assert "audit_log_child" in plan, plan
    assert "audit_log_link" in plan, plan
    assert "SCAN audit_log\n" not in plan + "\n", plan
    assert "Seq Scan on audit_log " not in plan, plan
