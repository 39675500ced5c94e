"""What only the PostgreSQL store does: its schema comes from alembic revisions, gateways append as
a role that cannot change what they wrote, several processes extend one chain, and a database
that cannot be reached fails lookups closed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.serving import free_port
from gateway.audit import (
    AuditRecord,
    AuditUnavailable,
    OutboxState,
    PostgresAuditStore,
    PostgresOutbox,
    downgrade_schema,
    open_audit_store,
    open_outbox,
    upgrade_schema,
    writer_role,
)
from gateway.audit.migrations import advisory_key, head
from gateway.config import Settings
from tests.factories import (
    CHECKPOINT_KEY,
    LEGACY_INSERT,
    audit_record,
    legacy_log,
    notifying_record,
    outbox_message,
)
from tests.fault_proxy import FaultProxy


def _store(url, schema, **options):
    return PostgresAuditStore(
        url, schema, checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5, **options
    )


def _admin(url, schema):
    return psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}")


# --- migrations -------------------------------------------------------------------------------


def test_upgrade_creates_the_schema_with_alembic_s_version_table_in_it_and_can_run_again(
    postgres_schema,
):
    url, schema = postgres_schema
    assert upgrade_schema(url, schema) == head()
    assert upgrade_schema(url, schema) == head()

    with _admin(url, schema) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert tables == {
        "alembic_version",
        "audit_log",
        "audit_log_link",
        "audit_alert",
        "audit_checkpoint",
        "audit_heartbeat",
        "notification_outbox",
        "outbox_given_up",
        "audit_archive",
    }
    assert version == head()


def test_a_gateway_refuses_a_schema_that_was_never_migrated(postgres_schema, tmp_path):
    url, schema = postgres_schema
    settings = Settings(state_dir=tmp_path, database_url=url, database_schema=schema)

    with pytest.raises(ValueError, match="run `childlookup db upgrade`"):
        open_audit_store(settings)

    upgrade_schema(url, schema)
    store, outbox = open_audit_store(settings), open_outbox(settings)
    assert isinstance(store, PostgresAuditStore)
    assert isinstance(outbox, PostgresOutbox)
    store.close()
    outbox.close()


def test_downgrade_removes_everything_upgrade_made(postgres_schema):
    url, schema = postgres_schema
    upgrade_schema(url, schema)

    downgrade_schema(url, schema)

    with _admin(url, schema) as conn:
        left = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        role = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (writer_role(schema),)
        ).fetchone()
    assert left == [("alembic_version",)]
    assert role is None
    assert upgrade_schema(url, schema) == head()


# --- the gateway's role -----------------------------------------------------------------------


@pytest.fixture
def gateway_url(postgres_schema):
    """A login role of this test's own in the schema's writer group (roles are cluster-wide:
    dropped afterwards); yields its URL."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    login = f"test_gateway_{uuid.uuid4().hex[:12]}"
    with _admin(url, schema) as conn:
        conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE "{writer_role(schema)}"')
    yield url.replace("postgres@", f"{login}@")
    with _admin(url, schema) as conn:
        conn.execute(f'DROP ROLE "{login}"')


@pytest.mark.anyio
async def test_the_gateway_role_appends_and_delivers_but_cannot_change_the_log(
    postgres_schema, gateway_url
):
    _, schema = postgres_schema
    store = _store(gateway_url, schema)
    outbox = PostgresOutbox(gateway_url, schema)
    try:
        await store.append(*notifying_record("a-1", "m-1"))
        assert store.is_writable()
        (claimed,) = outbox.claim(time.time(), lease_s=10, limit=5)
        outbox.delivered(claimed.message_id, time.time())
        assert [e.state for e in outbox.entries()] == [OutboxState.DELIVERED]
        assert store.verify().ok
    finally:
        outbox.close()
        store.close()

    with _admin(gateway_url, schema) as conn:
        for statement in (
            "UPDATE audit_log SET outcome = 'NOT_FOUND'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "UPDATE audit_checkpoint SET mac = ''",
            "DELETE FROM audit_alert",
            "DELETE FROM audit_log_link",
            "CREATE TABLE audit_log_copy (seq bigint)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


def test_even_the_owner_cannot_truncate_the_log(postgres_schema):
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    with _admin(url, schema) as conn:
        for table in ("audit_log", "audit_log_link", "audit_alert", "audit_checkpoint"):
            with pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(f"TRUNCATE {table}")


# --- one chain, several writers ---------------------------------------------------------------


def test_three_writers_appending_at_once_extend_one_chain(postgres_schema):
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    stores = [_store(url, schema) for _ in range(3)]

    def write(n):
        async def appends():
            for i in range(50):  # one at a time: 50 transactions per writer, interleaved
                await stores[n].append(audit_record(f"w{n}-{i}"))
            await asyncio.gather(*(stores[n].append(audit_record(f"w{n}-b{i}")) for i in range(20)))

        asyncio.run(appends())

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(write, range(len(stores))))
        report = stores[0].verify()
        written = stores[1].records(limit=10_000)
    finally:
        for store in stores:
            store.close()

    assert report.ok, report.describe()
    assert report.records == len(written) == 210
    assert report.checkpoints >= 30  # every 5 records, at least while writes came one by one
    for n in range(3):  # each writer's own records keep their order
        mine = [r["audit_id"] for r in written if r["audit_id"].startswith(f"w{n}-")]
        assert mine[:50] == [f"w{n}-{i}" for i in range(50)]


# --- failing closed ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_unreachable_database_fails_appends_and_readiness(postgres_schema):
    _, schema = postgres_schema
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    store = _store(nowhere, schema, timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(AuditUnavailable):
            await store.append(audit_record("a-1"), [outbox_message("m-1")])
        assert time.monotonic() - started < 5
        assert not store.is_writable()
    finally:
        store.close()


@pytest.mark.anyio
async def test_connections_the_database_dropped_are_replaced_before_the_next_append(
    postgres_schema,
):
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    store = _store(url, schema)
    try:
        await store.append(audit_record("before"))
        assert store.is_writable()
        assert [r["audit_id"] for r in store.records()] == ["before"]  # the reader connected too
        with _admin(url, schema) as conn:
            dropped = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"childlookup:{schema}",),
            ).fetchall()
        await store.append(audit_record("after"))
        assert store.is_writable()
        assert [r["audit_id"] for r in store.records()] == ["before", "after"]
    finally:
        store.close()
    assert len(dropped) >= 2  # the writer's and the reader's


@pytest.mark.anyio
async def test_after_a_network_gone_silent_comes_back_appends_and_readiness_recover(
    postgres_schema,
):
    """Through a connection pooler or sidecar whose far side stalls, TCP sees nothing wrong: the
    work given up on held the writer's connections for good, and once all were held every lookup
    failed until a restart. Now they are severed when given up on, and the next append after the
    network comes back gets a fresh one."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        store = _store(
            url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), schema, timeout_s=1
        )
        try:
            await store.append(audit_record("before"))
            _open_every_writer_connection(store)
            proxy.silence()
            for audit_id in ("lost-1", "lost-2", "lost-3"):
                with pytest.raises(AuditUnavailable):
                    await store.append(audit_record(audit_id))
            silent_ready = store.is_writable()
            proxy.restore()
            recovered_s = await _appended_within(store, audit_record("after"), 20)
            ready = store.is_writable()
        finally:
            store.close()

    assert not silent_ready
    assert recovered_s is not None  # by itself, once the pool has connected again
    assert ready
    with _admin(url, schema) as conn:
        logged = [audit_id for (audit_id,) in conn.execute("SELECT audit_id FROM audit_log")]
    assert logged == ["before", "after"]


def test_reads_a_silent_network_held_are_severed_and_reading_recovers(postgres_schema):
    """The day's children (a user's first lookup of the day) and the auditors' trails are read
    on the reader pool: over a pooler whose far side stalled, each read held its connection for
    good, and once all were held every such read failed until a restart."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    since = datetime.now(UTC) - timedelta(days=1)
    with FaultProxy("127.0.0.1", 5432) as proxy:
        proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        store = _store(proxied, schema, timeout_s=0.5, readers=2, read_bound_s=1.0)
        pool = ThreadPoolExecutor(2)
        try:
            list(pool.map(lambda _: store.children_seen("u", since), range(2)))  # both open
            proxy.silence()
            stalled = [pool.submit(store.children_seen, "u", since) for _ in range(2)]
            ended = concurrent.futures.wait(stalled, timeout=15)
            pool.shutdown(wait=False)  # reads still stuck end when the proxy closes
            proxy.restore()
            started = time.monotonic()
            recovered = None
            while recovered is None and time.monotonic() - started < 15:
                try:
                    recovered = store.children_seen("u", since)
                except psycopg.Error:
                    time.sleep(0.2)
        finally:
            store.close()

    assert not ended.not_done  # the stalled reads ended, failed, rather than waiting for ever
    assert all(future.exception() is not None for future in stalled)
    assert recovered == {}


def test_an_outbox_statement_held_past_its_bound_is_cut_off(postgres_schema):
    """Held here by another session's exclusive lock, as a silent network holds it: its two
    connections held for good, owner notifications stopped until a restart."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    outbox = PostgresOutbox(url, schema, bound_s=1.0)
    try:
        assert outbox.claim(time.time(), 30, 10) == []
        with _admin(url, schema) as admin, admin.transaction():
            admin.execute("LOCK TABLE notification_outbox IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(psycopg.Error):
                outbox.claim(time.time(), 30, 10)
            held_s = time.monotonic() - started
        claimed = outbox.claim(time.time(), 30, 10)
    finally:
        outbox.close()

    assert held_s < 10
    assert claimed == []


def test_a_read_held_past_its_bound_is_cut_off(postgres_schema):
    """Held by the database here (another session's exclusive lock on the log), as a silent
    network holds it: the read fails after its bound rather than waiting as long as it is held."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    store = _store(url, schema, read_bound_s=1.0)
    since = datetime.now(UTC) - timedelta(days=1)
    try:
        assert store.children_seen("u", since) == {}
        with _admin(url, schema) as admin, admin.transaction():
            admin.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(psycopg.Error):
                store.children_seen("u", since)
            held_s = time.monotonic() - started
            (waiting,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (f"childlookup:{schema}",),
            ).fetchone()
    finally:
        store.close()

    assert held_s < 10
    assert waiting == 0  # cancelled by the database too, not left waiting there


@pytest.mark.anyio
async def test_readiness_fails_while_another_session_holds_the_chains_lock(postgres_schema):
    """Every append waits for the chain's lock; held elsewhere (a stuck writer, an operator's
    session), none can be written, and readiness says so rather than staying green."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    store = _store(url, schema, timeout_s=0.5)
    try:
        before = store.is_writable()
        with _admin(url, schema) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(schema, "audit-chain"),))
            held = store.is_writable()
        after = store.is_writable()
    finally:
        store.close()

    assert (before, held, after) == (True, False, True)


async def _appended_within(
    store: PostgresAuditStore, record: AuditRecord, seconds: float
) -> float | None:
    """How long until `record` is appended, trying again while the store is unavailable; None
    if it is not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            await store.append(record)
        except AuditUnavailable:
            await asyncio.sleep(0.2)
        else:
            return time.monotonic() - started
    return None


def _open_every_writer_connection(store: PostgresAuditStore) -> None:
    """The writer's pool at its size, as a busy gateway's is (a batch, a heartbeat, a seal at
    once): a network going silent then finds every connection open."""
    loop, pool, _ = store._writing()

    async def hold_all() -> None:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(pool.max_size):
                await held.enter_async_context(pool.connection())

    loop.submit(hold_all()).result()


@pytest.mark.anyio
async def test_a_log_from_revision_0001_verifies_under_each_rule_up_to_its_point(postgres_schema):
    """Rows written before whole-row hashes keep their rule (body only, MAC'd checkpoints) after
    `db upgrade`; the records appended after it get whole-row hashes and signed checkpoints."""
    url, schema = postgres_schema
    upgrade_schema(url, schema)
    downgrade_schema(url, schema, "0001")
    rows, checkpoint = legacy_log(7, checkpoint_at=5)
    with _admin(url, schema) as conn, conn.cursor() as cur:
        cur.executemany(LEGACY_INSERT.replace("?", "%s"), rows)
        cur.execute(
            "INSERT INTO audit_checkpoint (seq, hash, at, mac) VALUES (%s, %s, now(), %s)",
            checkpoint,
        )
    upgrade_schema(url, schema)

    store = _store(url, schema)
    for i in range(6):
        await store.append(audit_record(f"new{i}"))
    report = store.verify()
    store.close()
    assert (report.ok, report.records, report.checkpoints) == (True, 13, 2)
    with _admin(url, schema) as conn:
        formats = conn.execute("SELECT format, count(*) FROM audit_log GROUP BY 1 ORDER BY 1")
        assert formats.fetchall() == [(1, 7), (2, 6)]
