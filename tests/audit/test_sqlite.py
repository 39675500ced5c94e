"""What only the SQLite store does: bring a log written by an older gateway up to date in place
(PostgreSQL's schema changes go through alembic revisions instead, see test_postgres)."""

import sqlite3

import pytest

from gateway.audit import SqliteAuditStore
from tests.factories import BREAK_GLASS_REASON, CHECKPOINT_KEY, break_glass_record

# The audit_alert table as it was before alerts carried the justification.
_ALERTS_WITHOUT_JUSTIFICATION = """
CREATE TABLE audit_alert (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    organisation TEXT NOT NULL
);
CREATE TRIGGER audit_alert_no_update BEFORE UPDATE ON audit_alert
BEGIN SELECT RAISE(ABORT, 'audit_alert is append-only'); END;
INSERT INTO audit_alert (at, kind, audit_id, subject, role, organisation)
VALUES ('2026-11-20T09:00:00+00:00', 'BREAK_GLASS', 'old', 'dev:X:u', 'social_worker', 'X1');
"""


@pytest.mark.anyio
async def test_an_existing_log_gains_the_justification_column_and_stays_append_only(tmp_path):
    path = tmp_path / "audit.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript(_ALERTS_WITHOUT_JUSTIFICATION)
    raw.close()

    store = SqliteAuditStore(path, checkpoint_key=CHECKPOINT_KEY)
    try:
        await store.append(break_glass_record("new"))
        alerts = store.alerts()
    finally:
        store.close()

    assert [(a["audit_id"], a["justification"]) for a in alerts] == [
        ("old", None),
        ("new", BREAK_GLASS_REASON),
    ]
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_alert SET justification = 'edited'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_alert")
    raw.close()
