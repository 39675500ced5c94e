"""The auditors' feeds read by cursor (gateway.audit.pages): what the paging tests
(tests/test_audit_paging.py) left unchecked, through the real gateway on both audit stores."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.audit import Pseudonymiser, open_audit_store
from gateway.audit.queries import alerts_query
from gateway.audit.types import BREAK_GLASS_ALERTS, LIMIT_ALERTS, utc_text
from gateway.config import Settings
from tests.factories import NHS, access, audit_record
from tests.stack import reference_connectors, running_gateway
from tests.test_audit_paging import AT, TRAIL, _page
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


def _plan(settings: Settings, statement: str, params: tuple[Any, ...]) -> str:
    """How the store's database would run `statement` (`%s` placeholders) on the log `settings`
    name: EXPLAIN QUERY PLAN in SQLite; in PostgreSQL EXPLAIN with sequential scans and sorts
    priced out, so that it shows whether an index can give the rows in order at all, whatever
    the few rows of a test's table would make cheapest."""
    store = open_audit_store(settings)  # the schema as the store makes (or requires) it
    store.close()
    if settings.database_url is None:
        with sqlite3.connect(settings.resolved_audit_db()) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + statement.replace("%s", "?"), params)
            return "\n".join(str(row[-1]) for row in rows)
    with psycopg.connect(settings.database_url) as pg:
        pg.execute(f'SET search_path TO "{settings.database_schema}"')
        pg.execute("SET enable_seqscan = off")
        pg.execute("SET enable_sort = off")
        return "\n".join(str(row[0]) for row in pg.execute("EXPLAIN " + statement, params))


@pytest.mark.parametrize("kinds", [BREAK_GLASS_ALERTS, LIMIT_ALERTS], ids=["overrides", "limits"])
def test_reading_an_alerts_feed_on_from_a_cursor_is_served_by_an_index(tmp_path, backend, kinds):
    """Each page of overrideAlerts or limitAlerts read on by cursor ran its keyset query over the
    whole alerts table, then sorted what it found: reading a harvesting script's burst of limit
    alerts (one a refused call) page by page read the table once a page, quadratic in its size,
    each read holding the SQLite store's lock. An index on the feed's order serves it: the rows
    come in order from where the cursor stands, and the reading stops at a page."""
    settings = Settings(state_dir=tmp_path, **backend)
    postgres = settings.database_url is not None
    condition = "kind = ANY(%s)" if postgres else "kind IN (SELECT value FROM json_each(%s))"
    since = datetime.min.replace(tzinfo=UTC)
    at = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    params = (
        (since, list(kinds), at, 7, 1000)
        if postgres
        else (utc_text(since), json.dumps(list(kinds)), utc_text(at), 7, 1000)
    )

    plan = _plan(settings, alerts_query(condition, after=True), params)

    assert "audit_alert_time" in plan, plan
    assert "SCAN audit_alert\n" not in plan + "\n", plan
    assert "Seq Scan" not in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
    assert "Sort" not in plan, plan
