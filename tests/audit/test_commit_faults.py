"""Failing closed when the audit store fails at commit, in ways tests/audit does not reach: a
PostgreSQL writer whose backend is terminated inside its transaction, and a SQLite log that cannot
grow when the batch is written. Either way the append raises AuditUnavailable (so the lookup
releases nothing, tests/test_lookup_e2e.py), leaves no part of the batch in the log, and the next
append extends an intact chain."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gateway.audit import AuditUnavailable, upgrade_schema
from gateway.audit.migrations import advisory_key
from tests.audit.test_postgres import _admin, _store
from tests.factories import audit_record, outbox_message


@pytest.mark.anyio
async def test_a_writer_terminated_inside_its_transaction_commits_nothing(postgres_schema):
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    store = _store(url, schema, timeout_s=5)
    try:
        await store.append(audit_record("before"))
        with _admin(url, schema) as admin, _admin(url, schema) as holder:
            # The writer takes the chain's lock inside its transaction: held here, it waits there.
            holder.execute("BEGIN")
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s)", (advisory_key(schema, "audit-chain"),)
            )
            appending = asyncio.ensure_future(
                store.append(audit_record("during"), [outbox_message("m-1")])
            )
            await asyncio.sleep(0.5)
            terminated = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (f"childlookup:{schema}",),
            ).fetchall()
            with pytest.raises(AuditUnavailable):
                await asyncio.wait_for(appending, 5)
            holder.execute("ROLLBACK")
            queued = admin.execute("SELECT count(*) FROM notification_outbox").fetchone()
        await store.append(audit_record("after"))
        ids = [r["audit_id"] for r in store.records()]
        report = store.verify()
    finally:
        store.close()

    assert terminated == [(True,)]
    assert queued == (0,)
    assert ids == ["before", "after"]
    assert report.ok


_APPEND_WHILE_THE_DISK_IS_FULL = """
import asyncio, resource, signal, sys
from pathlib import Path
from gateway.audit import AuditUnavailable, SqliteAuditStore
from tests.factories import CHECKPOINT_KEY, audit_record, outbox_message

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk answers EFBIG, as ENOSPC would
directory = Path(sys.argv[1])


async def main():
    store = SqliteAuditStore(directory / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    await store.append(audit_record("before"))
    largest = max(p.stat().st_size for p in directory.iterdir())
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest, hard))  # no file may grow
    try:
        await store.append(audit_record("during"), [outbox_message("m-1")])
    except AuditUnavailable:
        print("refused")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    await store.append(audit_record("after"))
    print([r["audit_id"] for r in store.records()], store.verify().ok)
    store.close()


asyncio.run(main())
"""


def test_a_log_that_cannot_grow_at_commit_refuses_the_append_and_keeps_its_chain(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", _APPEND_WHILE_THE_DISK_IS_FULL, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["refused", "['before', 'after'] True"]
