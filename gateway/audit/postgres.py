"""The shared audit store: the audit log, its outbox and heartbeat in PostgreSQL, written by every
gateway process at once (CHILDLOOKUP_DATABASE_URL, CHILDLOOKUP_DATABASE_SCHEMA).

The schema is made by `childlookup db upgrade` (gateway.audit.migrations), which also says which
role the gateways connect as and what it may do.

One chain, many writers. Appends from all processes extend a single hash chain: each commit takes
a transaction-scoped advisory lock keyed on the schema, reads the chain's tail inside it, links and
inserts its records (with their alerts, owner notifications and any checkpoint due) and commits,
which releases the lock. The records' and alerts' `seq` are so taken in commit order: a batch
takes them only once the one before it is committed (PostgreSQL releases a transaction's locks
after its commit is visible), which is the order the auditors' feeds are read in
(gateway.audit.pages), whatever each gateway's clock says. Within a process appends are
group-committed (gateway.audit.group_commit), so the lock is taken once per batch, not per
lookup.

Connections. Appends and the readiness heartbeat go through an asyncio pool (psycopg_pool) on
the store's own event loop, in a thread of its own: the store is opened before the server's loop
runs, used from several loops and threads, and closed after the server's loop has ended, while an
asyncio pool belongs to one loop. Reads (`verify`, `records`, `alerts`, `children_seen`) are
synchronous, as the interface is, on a second, thread-safe pool. A write that cannot get a
connection, a lock or a commit within `timeout_s` raises AuditUnavailable: the lookup releases
nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from gateway.audit.archive import Run, choose_end, delete_archived, read_anchor, read_archived
from gateway.audit.chain import (
    ALERT_COLUMNS,
    CHECKPOINT_COLUMNS,
    LINK_QUERY,
    NOTICE_QUERY,
    RECORD_COLUMNS,
    ROW_FORMAT,
    SIGNED_CHECKPOINT_COLUMNS,
    Anchor,
    ChainReport,
    alert_rows,
    record_row,
    row_hash,
    verify_chain,
)
from gateway.audit.checkpoints import GENESIS, Checkpoint, CheckpointKeys, canonical_time
from gateway.audit.group_commit import GroupCommit
from gateway.audit.migrations import advisory_key, check_schema_name
from gateway.audit.outbox import (
    OutboxEntry,
    OutboxMessage,
    OutboxRows,
    dead_letters_query,
    outbox_entries,
    pass_on_statement,
    positioned_letters,
)
from gateway.audit.pages import LetterPosition, LogPosition, PositionedFeeds
from gateway.audit.queries import (
    ALERT_KEYS,
    CHILDREN_SEEN_QUERY,
    LATEST_SIGNED_QUERY,
    LINK_INSERT,
    SEGMENT_QUERIES,
    SEGMENT_RECORDS,
    alerts_query,
    children_seen,
    link_rows,
    of_child,
    records_query,
)
from gateway.audit.segments import ArchivedSegment, SegmentRows
from gateway.audit.types import AuditRecord, AuditUnavailable, utc_now, utc_text

T = TypeVar("T")

BODY_JSON: Final = "replace(body, '\\u0000', '\\ufffd')::jsonb"
"""A record's body as jsonb, for the reads that look inside it. jsonb refuses the JSON escape of a
NUL (backslash, u0000), which a body holds where the record did (a practitioner's name from the
token, say): one such record failed every reading of its child (an owner's access history) and
its user (the daily cap). That escape alone is replaced, by U+FFFD's, for the reading only: the
body stored and hashed is untouched, and the parts read (notices, released fields, linked
pseudonyms) never hold it. Preceded by an escaped backslash it is text, and the JSON stays valid
either way."""

_CHILDREN_SEEN = CHILDREN_SEEN_QUERY.format(
    linked=f"CASE WHEN {BODY_JSON} -> 'released' @> '[{{\"field\": \"nhs_number\"}}]'"
    f" THEN {BODY_JSON} ->> 'linked_refs' END"
)

NOTIFIED_RECORDS = (
    "SELECT body FROM audit_log WHERE "  # noqa: S608
    + of_child("{children}", postgres=True)
    + f" AND EXISTS (SELECT 1 FROM jsonb_array_elements({BODY_JSON} -> 'notified') AS notice"  # noqa: S608
    " WHERE notice ->> 'source' = ANY(%s))"
    " ORDER BY at DESC, seq DESC LIMIT %s"
)
"""A child's records notified to some sources (a list), newest first; `{children}` takes one mark
per pseudonym."""

_RECORD_COLUMNS = (
    "audit_id, at, child_ref, subject, role, organisation, purpose, outcome, body, prev_hash, hash,"
    " format"
)
HASHED_AT = """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
"""`at` as the chain hashes it (gateway.audit.checkpoints.canonical_time)."""
_SIGNED_CHECKPOINT = SIGNED_CHECKPOINT_COLUMNS.format(at=HASHED_AT)
_LATEST_SIGNED = LATEST_SIGNED_QUERY.format(columns=_SIGNED_CHECKPOINT)
_BATCH_ROWS = 1_000
"""Records per INSERT statement: well inside PostgreSQL's 65,535 parameters."""


def _insert_records(count: int) -> str:
    """One statement for `count` records: the rows of a VALUES list are inserted, and so take
    their sequence numbers, in the order listed - the chain's order."""
    row = "(" + ", ".join(["%s"] * len(_RECORD_COLUMNS.split(", "))) + ")"
    values = ", ".join([row] * count)
    return f"INSERT INTO audit_log ({_RECORD_COLUMNS}) VALUES {values} RETURNING seq"  # noqa: S608


def _session(schema: str, timeout_s: float, **settings: object) -> dict[str, Any]:
    """Connection parameters putting a session in the audit schema, in UTC, with `settings`;
    `application_name` tells an operator in pg_stat_activity whose connections these are."""
    options = {"search_path": check_schema_name(schema), "TimeZone": "UTC", **settings}
    return {
        "options": " ".join(f"-c {name}={value}" for name, value in options.items()),
        "application_name": f"childlookup:{schema}",
        "connect_timeout": max(2, round(timeout_s)),  # libpq's least
        # A database gone silent (no reset, no answer) is noticed in seconds, not TCP's hours.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }


def _sync_pool(url: str, schema: str, timeout_s: float, size: int, name: str) -> ConnectionPool:
    """A thread-safe pool of sessions in the audit schema, connecting in the background: a store
    opens even while the database is down, and its first use then waits `timeout_s`. Its check of
    a connection it hands out is bounded as the writer's is (`_bounded_check`)."""
    pool = ConnectionPool(
        url,
        kwargs=_session(schema, timeout_s),
        min_size=1,
        max_size=size,
        open=False,
        timeout=timeout_s,
        check=_bounded_sync_check(timeout_s),
        name=f"{name}-{schema}",
    )
    pool.open(wait=False)
    return pool


@contextlib.contextmanager
def _severed_after(conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
    """Sever `conn` (`_sever`) if the block is still using it after `seconds`: a blocking read
    over a silent network would otherwise hold it, and its pool place, for good."""
    timer = threading.Timer(seconds, _sever, (conn,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _bounded_sync_check(timeout_s: float) -> Callable[[psycopg.Connection[Any]], None]:
    """`_bounded_check` for a thread-safe pool."""

    def check(conn: psycopg.Connection[Any]) -> None:
        with _severed_after(conn, timeout_s):
            ConnectionPool.check_connection(conn)

    return check


READ_BOUND_S: Final = 30.0
"""The longest a read on a request's path (a trail, a feed, the day's children) may take before
its connection is severed: far past what any of them takes, short of waiting for ever."""


def _unavailable(error: Exception) -> AuditUnavailable:
    return AuditUnavailable(f"audit store write failed: {type(error).__name__}")


def _require_storable(record: AuditRecord, notifications: Sequence[OutboxMessage]) -> None:
    """Raise AuditUnavailable, for this record alone, if PostgreSQL cannot store it: a text column
    cannot hold a NUL (a token's subject, role or organisation claim may carry one; the body is
    JSON, where it is escaped). Found only at the INSERT, it failed the whole group commit, and
    with it the lookups of everyone else committed in the same transaction."""
    a = record.access
    texts = [
        record.audit_id,
        record.outcome,
        a.child_ref,
        a.subject,
        a.role,
        a.organisation,
        a.purpose,
        a.justification,
    ]
    texts += [value for m in notifications for value in (m.message_id, m.audit_id, m.source)]
    if any(text is not None and "\x00" in text for text in texts):
        raise AuditUnavailable("audit store write refused: a NUL, which PostgreSQL cannot store")


class _Held(list[psycopg.AsyncConnection[Any]]):
    """The connections the work of one `_bounded` call holds from the writer's pool, and
    whether that call has given the work up (a connection taken after that is severed at once:
    the work, not cancelled, may still be waiting for one when it is given up)."""

    given_up = False

    def give_up(self) -> None:
        self.given_up = True
        for conn in self:
            _sever(conn)


_HELD: ContextVar[_Held | None] = ContextVar("held", default=None)


@contextlib.asynccontextmanager
async def _held(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection from `pool`, known to the `_bounded` call around it, which severs it if it
    gives the work up."""
    async with pool.connection() as conn:
        held = _HELD.get()
        if held is None:
            yield conn
            return
        held.append(conn)
        if held.given_up:
            _sever(conn)
        try:
            yield conn
        finally:
            held.remove(conn)  # back in the pool: another's to use, never to be severed for this


def _sever(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down beneath psycopg, which then fails whatever waits on it
    and the pool replaces the connection. For a network gone silent where TCP cannot tell - a
    connection pooler, a proxy or a cloud SQL sidecar that keeps the session open and answers
    keepalives while nothing reaches the database: neither keepalives nor the server's timeouts
    ever end such a wait, and the pool's few connections stayed held by it for good, failing every
    lookup after the network came back. The descriptor itself stays psycopg's to close."""
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed already


def _bounded_check(timeout_s: float) -> Callable[[psycopg.AsyncConnection[Any]], Any]:
    """The pool's check of a connection it hands out, within `timeout_s`: over a silent network
    the check's empty query waits for ever, holding the connection and its caller. The
    connection is severed when the time is up - the check then fails at once and the pool drops
    it - rather than the check cancelled, which psycopg follows with seconds of trying to cancel
    the query over that same network."""

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        severing = asyncio.get_running_loop().call_later(timeout_s, _sever, conn)
        try:
            await AsyncConnectionPool.check_connection(conn)
        finally:
            severing.cancel()

    return check


class _Loop:
    """An event loop running in a daemon thread of its own, for coroutines from anywhere."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class PostgresAuditStore(PositionedFeeds):
    """The audit log in a PostgreSQL schema, shared by every gateway process."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        checkpoint_key: CheckpointKeys,
        checkpoint_every: int = 100,
        timeout_s: float = 2.0,
        readers: int = 4,
        read_bound_s: float = READ_BOUND_S,
    ) -> None:
        self.schema = check_schema_name(schema)
        self._url = url
        self._checkpoint_key = checkpoint_key
        self._checkpoint_every = checkpoint_every
        self._timeout_s = timeout_s
        self._chain_lock = advisory_key(schema, "audit-chain")
        self._archive_lock = advisory_key(schema, "audit-archive")
        self._reader = _sync_pool(url, schema, timeout_s, readers, "audit-read")
        self._read_bound_s = read_bound_s
        self._start = threading.Lock()
        self._writer: tuple[_Loop, AsyncConnectionPool, GroupCommit] | None = None
        self._closed = False

    # --- writing: the store's own loop ---------------------------------------------------------

    def _writing(self) -> tuple[_Loop, AsyncConnectionPool, GroupCommit]:
        """The writer's loop, pool and group commit, started on first use: a store opened only to
        be read (the auditors' commands) never starts them."""
        with self._start:
            if self._closed:
                raise AuditUnavailable("the audit store is closed")
            if self._writer is None:
                loop = _Loop(f"audit-writer-{self.schema}")
                timeout_ms = round(self._timeout_s * 1000)
                pool = AsyncConnectionPool(
                    self._url,
                    # Waits for the chain's lock and each statement are bounded too: a stalled
                    # database fails lookups closed rather than holding them. A writer that
                    # stops mid-transaction (a network gone silent) loses its session, and so
                    # the chain's lock, instead of stalling every gateway's appends.
                    kwargs=_session(
                        self.schema,
                        self._timeout_s,
                        lock_timeout=timeout_ms,
                        statement_timeout=timeout_ms,
                        idle_in_transaction_session_timeout=timeout_ms,
                    ),
                    min_size=1,
                    # One batch in flight at a time, a heartbeat beside it, and one left behind
                    # by a silent network (see _bounded).
                    max_size=3,
                    open=False,
                    timeout=self._timeout_s,
                    check=_bounded_check(self._timeout_s),
                    name=f"audit-write-{self.schema}",
                )
                loop.submit(pool.open(wait=False)).result()
                self._writer = (loop, pool, GroupCommit(self._commit))
            return self._writer

    async def append(
        self, record: AuditRecord, notifications: Sequence[OutboxMessage] = ()
    ) -> None:
        """Return once the record, and the notifications it obliges, are durably committed;
        raise AuditUnavailable otherwise, in which case neither was."""
        _require_storable(record, notifications)
        loop, _, group = self._writing()
        await asyncio.wrap_future(loop.submit(group.append(record, notifications)))

    async def _commit(self, records: list[AuditRecord], notifications: list[OutboxMessage]) -> None:
        try:
            await self._bounded(self._transaction(records, notifications))
        except (psycopg.Error, TimeoutError) as error:
            raise _unavailable(error) from error

    async def _bounded(self, work: Coroutine[Any, Any, T]) -> T:
        """Wait for `work` at most twice `timeout_s`, then raise TimeoutError. The database bounds
        each of its own waits (see _writing); this bounds a network gone silent. `work` is not
        cancelled - psycopg would spend seconds trying to cancel its query over that network -
        but the connections it took through `_held` are severed (`_sever`), so it fails at once
        and the pool replaces them. If it had committed after all, its records are in the log
        though their lookups released nothing, as when a connection drops during COMMIT."""
        held = _Held()
        context = _HELD.set(held)
        try:
            task = asyncio.ensure_future(work)  # its context, copied here, holds `held`
        finally:
            _HELD.reset(context)
        done, _ = await asyncio.wait({task}, timeout=2 * self._timeout_s)
        if task not in done:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            held.give_up()
            raise TimeoutError
        return task.result()

    async def _transaction(
        self, records: list[AuditRecord], notifications: list[OutboxMessage]
    ) -> None:
        assert self._writer is not None
        # Pipelined: statements go out without waiting for each answer, so a batch costs three
        # round trips (lock and tail; records; the rest and the commit).
        async with _held(self._writer[1]) as conn, conn.pipeline(), conn.transaction():
            await self._write(conn, records, notifications)

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any],
        records: list[AuditRecord],
        notifications: list[OutboxMessage],
    ) -> None:
        # The tail must be read by a statement that starts after the lock is held: each
        # statement sees what was committed when it began.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._chain_lock,))
        tail = await (
            await conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        ).fetchone()
        before, previous = tail if tail else (0, GENESIS)
        rows = []
        for r in records:
            columns, raised = record_row(r, canonical_time(r.access.at))
            chain_hash = row_hash(previous, columns, raised)
            # The time is stored as a timestamp, and read back for hashing as it was spelt.
            rows.append((columns[0], r.access.at, *columns[2:], previous, chain_hash, ROW_FORMAT))
            previous = chain_hash
        async with conn.cursor() as cur:
            last = before
            for start in range(0, len(rows), _BATCH_ROWS):
                chunk = rows[start : start + _BATCH_ROWS]
                await cur.execute(_insert_records(len(chunk)), [v for row in chunk for v in row])
                last = max([last, *(seq for (seq,) in await cur.fetchall())])
            links = link_rows(records)
            if links:
                await cur.executemany(LINK_INSERT, links)
            alerts = alert_rows(records, time_as_text=False)
            if alerts:
                await cur.executemany(
                    "INSERT INTO audit_alert"
                    " (at, kind, audit_id, subject, role, organisation, justification)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    alerts,
                )
            if notifications:
                await cur.executemany(
                    "INSERT INTO notification_outbox"
                    " (message_id, audit_id, source, created_at, payload, next_attempt_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (m.message_id, m.audit_id, m.source, m.created_at, m.payload, m.created_at)
                        for m in notifications
                    ],
                )
        if last // self._checkpoint_every != before // self._checkpoint_every:
            # Sign a checkpoint whenever this batch crossed a multiple of checkpoint_every. On a
            # cursor of its own: in the pipeline, the cursor that had just run `executemany` (the
            # alerts, the outbox) now and then handed the checkpoint's SELECT an INSERT's result
            # ("the last operation didn't produce records"), failing the whole batch.
            async with conn.cursor() as own:
                await self._checkpoint(own, last, previous)

    def pass_on(
        self,
        message_ids: Sequence[str],
        how: str,
        now: float,
        record: Callable[[OutboxEntry], AuditRecord],
    ) -> list[OutboxEntry]:
        """Close dead letters as passed on by other means, each with its record, in one
        transaction (see `AuditStore.pass_on`)."""
        if not message_ids:
            return []
        loop, pool, _ = self._writing()
        try:
            # Waited for to its end, not `_bounded`: a close given up on could still commit, and
            # the operator must be told which. The session's lock, statement and idle timeouts
            # and its keepalives bound it (`_writing`).
            return loop.submit(self._pass_on(pool, message_ids, how, now, record)).result()
        except psycopg.Error as error:
            raise _unavailable(error) from error

    async def _pass_on(
        self,
        pool: AsyncConnectionPool,
        message_ids: Sequence[str],
        how: str,
        now: float,
        record: Callable[[OutboxEntry], AuditRecord],
    ) -> list[OutboxEntry]:
        async with pool.connection() as conn, conn.transaction():
            # The chain's lock first, as appends take it: the messages' rows are then locked
            # by the close while its records are chained (`_write` takes the lock again).
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._chain_lock,))
            latest = await (await conn.execute(_LATEST_SIGNED)).fetchone()
            self._checkpoint_key.require_signer_of(None if latest is None else Checkpoint(*latest))
            cursor = await conn.execute(
                pass_on_statement(len(message_ids)), (now, how, *message_ids)
            )
            closed = sorted(outbox_entries(await cursor.fetchall()), key=lambda e: e.message_id)
            await self._write(conn, [record(entry) for entry in closed], [])
        return closed

    def seal(self) -> Checkpoint | None:
        """Sign a checkpoint over the records written since the latest one, if any were: under
        the chain's lock, as appends are, so the checkpoints of every process stay one chain."""
        loop, pool, _ = self._writing()
        try:
            return loop.submit(self._bounded(self._seal(pool))).result()
        except (psycopg.Error, TimeoutError) as error:
            raise _unavailable(error) from error

    async def _seal(self, pool: AsyncConnectionPool) -> Checkpoint | None:
        async with _held(pool) as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._chain_lock,))
            await cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            tail = await cur.fetchone()
            await cur.execute("SELECT max(seq) FROM audit_checkpoint")
            (covered,) = await cur.fetchone() or (None,)
            if tail is None or (covered is not None and covered >= tail[0]):
                return None
            return await self._checkpoint(cur, tail[0], tail[1])

    async def _checkpoint(self, cur: psycopg.AsyncCursor[Any], seq: int, head: str) -> Checkpoint:
        """Sign a checkpoint over the chain's tail (`seq`, `head`), inside the write transaction."""
        await cur.execute(_LATEST_SIGNED)
        last = await cur.fetchone()
        if last is None:  # the first signed checkpoint: count the whole log, once
            prev, since, counted = GENESIS, 0, 0
        else:
            previous = Checkpoint(*last)
            prev, since, counted = previous.digest(), previous.seq, previous.records
        await cur.execute("SELECT count(*) FROM audit_log WHERE seq > %s", (since,))
        (newer,) = await cur.fetchone() or (0,)
        checkpoint = self._checkpoint_key.sign(seq, counted + newer, head, utc_now(), prev)
        await cur.execute(
            "INSERT INTO audit_checkpoint (seq, hash, at, records, prev, key_id, signature)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                checkpoint.seq,
                checkpoint.head,
                datetime.fromisoformat(checkpoint.at),
                checkpoint.records,
                checkpoint.prev,
                checkpoint.key,
                checkpoint.signature,
            ),
        )
        return checkpoint

    def is_writable(self) -> bool:
        """For readiness probes: commit a real write (the heartbeat row, not audit data) through
        the pool records are appended through."""
        try:
            loop, pool, _ = self._writing()
            return loop.submit(self._heartbeat(pool)).result()
        except AuditUnavailable:
            return False

    async def _heartbeat(self, pool: AsyncConnectionPool) -> bool:
        try:
            await self._bounded(self._beat(pool))
        except (psycopg.Error, TimeoutError):
            return False
        return True

    async def _beat(self, pool: AsyncConnectionPool) -> None:
        """The heartbeat row written under the chain's lock, as an append takes it: a lock held
        elsewhere for longer than the lock timeout fails every append, so readiness fails too
        (a heartbeat without it stayed green while no record could be written)."""
        async with _held(pool) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._chain_lock,))
            await conn.execute(
                "INSERT INTO audit_heartbeat (id, at) VALUES (1, now())"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at"
            )

    # --- reading: synchronous, on the reader pool ------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """A reader connection for a read on a request's path, bounded by `read_bound_s` (the
        whole-log reads - verify, archive - take as long as they take): the database cancels the
        statement a little before (a slow or locked database; severing alone would leave it
        running there, and each retry another), and the connection is severed at it (a silent
        network, where no cancel arrives)."""
        timeout_ms = str(max(1, int(self._read_bound_s * 900)))
        with (
            self._reader.connection() as conn,
            _severed_after(conn, self._read_bound_s),
            conn.transaction(),
        ):
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout_ms,))
            yield conn

    def checkpoints(self, after_seq: int, limit: int) -> list[Checkpoint]:
        """Signed checkpoints with `seq` > `after_seq`, oldest first, at most `limit`."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_SIGNED_CHECKPOINT} FROM audit_checkpoint"  # noqa: S608
                " WHERE signature IS NOT NULL AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (after_seq, limit),
            ).fetchall()
        return [Checkpoint(*row) for row in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        with self._read() as conn:
            row = conn.execute(_LATEST_SIGNED).fetchone()
        return None if row is None else Checkpoint(*row)

    def verify(self) -> ChainReport:
        """Check the whole chain and every checkpoint, in one snapshot, streaming the records."""
        with self._reader.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            checkpoints = conn.execute(
                f"SELECT {CHECKPOINT_COLUMNS.format(at=HASHED_AT)} FROM audit_checkpoint"  # noqa: S608
            ).fetchall()
            alerts = conn.execute(
                f"SELECT {ALERT_COLUMNS.format(at=HASHED_AT)} FROM audit_alert ORDER BY seq"  # noqa: S608
            ).fetchall()
            notices = conn.execute(NOTICE_QUERY).fetchall()
            links = conn.execute(LINK_QUERY).fetchall()
            start = read_anchor(_runner(conn))
            with conn.cursor(name="audit_verify") as records:
                records.itersize = 2_000
                records.execute(
                    f"SELECT {RECORD_COLUMNS.format(at=HASHED_AT)} FROM audit_log ORDER BY seq"  # noqa: S608
                )
                return verify_chain(
                    records,
                    alerts,
                    checkpoints,
                    self._checkpoint_key,
                    self._checkpoint_every,
                    notices,
                    start,
                    links,
                )

    def _record_rows(
        self,
        child_refs: Sequence[str],
        subject: str | None,
        since: datetime | None,
        after: LogPosition | None,
        limit: int,
        *,
        by_time: bool,
    ) -> list[tuple[str, int, str]]:
        statement, params = records_query(
            child_refs=child_refs,
            subject=subject,
            since=since,
            after=None if after is None else after.seq,
            limit=limit,
            postgres=True,
            by_time=by_time,
        )
        with self._read() as conn:
            rows = conn.execute(statement, params).fetchall()
        return [(utc_text(at), seq, body) for at, seq, body in rows]

    def notified_records(
        self, child_refs: Sequence[str], sources: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        """Records of this child (by any of its pseudonyms) whose owner notifications went to
        one of `sources`, newest first. The child's index (child_ref, at) finds them; the
        notices are read from the record itself, the hash-chained body, not from a copy."""
        if not sources or not child_refs:
            return []
        statement = NOTIFIED_RECORDS.format(children=", ".join(["%s"] * len(child_refs)))
        with self._read() as conn:
            params = (*child_refs, *child_refs, list(sources), limit)
            rows = conn.execute(statement, params).fetchall()
        return [json.loads(body) for (body,) in rows]

    def _alerts(
        self,
        since: datetime | None,
        kinds: Collection[str] | None,
        after: LogPosition | None,
        limit: int | None,
        *,
        by_time: bool,
    ) -> list[tuple[LogPosition, dict[str, str | None]]]:
        statement = alerts_query(
            None if kinds is None else "kind = ANY(%s)", after=after is not None, by_time=by_time
        )
        params = (
            since or datetime.min.replace(tzinfo=UTC),
            *(() if kinds is None else (list(kinds),)),
            *(() if after is None else (after.seq,)),
            limit,  # NULL: no limit
        )
        with self._read() as conn:
            rows = conn.execute(statement, params).fetchall()
        return [
            (
                LogPosition(seq, utc_text(at)),
                {"at": at.isoformat()} | dict(zip(ALERT_KEYS, rest, strict=True)),
            )
            for at, seq, *rest in rows
        ]

    def children_seen(self, subject: str, since: datetime) -> dict[str, set[str]]:
        """The children a user looked up (and was answered about) since a time, with their links
        (gateway.audit.queries.children_seen)."""
        with self._read() as conn:
            return children_seen(_runner(conn)(_CHILDREN_SEEN, (subject, since)))

    def positioned_dead_letters(
        self, limit: int, after: LetterPosition | None = None
    ) -> list[tuple[LetterPosition, OutboxEntry]]:
        """`dead_letters` strictly after a position, each with its own."""
        statement = dead_letters_query(after=after is not None)
        params = (*(() if after is None else (after,)), limit)
        with self._read() as conn:
            return positioned_letters(_runner(conn)(statement, params))

    def close(self) -> None:
        with self._start:
            if self._closed:
                return
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            loop, pool, _ = writer
            loop.submit(pool.close()).result()
            loop.stop()
        self._reader.close()

    # --- archiving (gateway.audit.archive) ------------------------------------------------------

    def archive_anchor(self) -> Anchor | None:
        """Where the live log begins: the end of the last segment archived, or None."""
        with self._reader.connection() as conn:
            return read_anchor(_runner(conn))

    def archived(self) -> list[ArchivedSegment]:
        """Every segment archived from this log, oldest first."""
        with self._reader.connection() as conn:
            return read_archived(_runner(conn))

    def archivable(self, before: datetime, max_records: int | None = None) -> Checkpoint | None:
        """The checkpoint the next segment may end at, for records before `before`."""
        with self._reader.connection() as conn:
            return choose_end(_runner(conn), before, _SIGNED_CHECKPOINT, max_records)

    @contextlib.contextmanager
    def segment_rows(self, start: Anchor | None, end: Checkpoint) -> Iterator[SegmentRows]:
        """Everything a segment from `start` to `end` holds, read in one snapshot, the records
        streamed while the caller writes them."""
        columns = {
            "checkpoints": CHECKPOINT_COLUMNS.format(at=HASHED_AT),
            "alerts": ALERT_COLUMNS.format(at=HASHED_AT),
        }
        with self._reader.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            run = _runner(conn)
            checkpoints, alerts, receipts = (
                run(query.format(**columns), (end.seq,)) for query in SEGMENT_QUERIES
            )
            with conn.cursor(name="audit_segment") as records:
                records.itersize = 2_000
                records.execute(
                    SEGMENT_RECORDS.format(records=RECORD_COLUMNS.format(at=HASHED_AT)),
                    (end.seq,),
                )
                yield SegmentRows(start, end, checkpoints, alerts, receipts, records)

    def archive(self, segment: ArchivedSegment, start: Anchor | None) -> None:
        """Delete the archived records (and what goes with them) and record the segment, in one
        transaction, which alone lets the append-only guard pass its deletions (migration 0003).
        Appends go on meanwhile: they only add records after the ones deleted. Needs the schema
        owner's credentials; raises ArchiveRefused if the log changed meanwhile."""
        try:
            with self._reader.connection() as conn, conn.transaction():
                conn.execute("SET LOCAL childlookup.archiving = 'on'")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._archive_lock,))
                delete_archived(_runner(conn), segment, start, _SIGNED_CHECKPOINT)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ValueError(
                "archiving deletes from the audit log, which the gateways' writer role may not:"
                f" run it as the owner of schema {self.schema} ({' '.join(str(exc).split())})"
            ) from exc


def _runner(conn: psycopg.Connection[Any]) -> Run:
    """Statements run on `conn`, in its current transaction (gateway.audit.archive.Run)."""

    def run(statement: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []

    return run


class PostgresOutbox(OutboxRows):
    """The delivering side of the outbox (see gateway.audit.outbox) in the audit schema, for
    one dispatcher per gateway process: a claim locks the rows it takes and skips rows another
    dispatcher has locked (FOR UPDATE SKIP LOCKED), so no two claim one message, and none waits
    for another. Each statement's connection is severed past `bound_s`, so a silent network
    cannot hold the outbox's few connections - and stop owner notifications - for good."""

    def __init__(
        self,
        url: str,
        schema: str,
        *,
        timeout_s: float = 5.0,
        size: int = 2,
        bound_s: float = READ_BOUND_S,
    ) -> None:
        self._pool = _sync_pool(url, schema, timeout_s, size, "outbox")
        self._bound_s = bound_s

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxMessage]:
        """Pending messages due by `now`, oldest first, each counted as one more attempt and
        hidden from other claims until `now + lease_s`."""
        with self._pool.connection() as conn, _severed_after(conn, self._bound_s):
            rows = conn.execute(
                "WITH due AS ("
                " SELECT message_id, next_attempt_at FROM notification_outbox"
                " WHERE state = 'PENDING' AND next_attempt_at <= %(now)s"
                " ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                " UPDATE notification_outbox AS o"
                " SET attempts = o.attempts + 1, next_attempt_at = %(until)s FROM due"
                " WHERE o.message_id = due.message_id"
                " RETURNING o.message_id, o.source, o.audit_id, o.payload, o.created_at,"
                " o.attempts, due.next_attempt_at",
                {"now": now, "limit": limit, "until": now + lease_s},
            ).fetchall()
        rows.sort(key=lambda row: (row[6], row[0]))
        return [
            OutboxMessage(mid, source, audit_id, payload, created, attempts)
            for mid, source, audit_id, payload, created, attempts, _ in rows
        ]

    def _rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn, _severed_after(conn, self._bound_s):
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _together(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """One transaction: the pool's connection commits when the block ends."""
        with self._pool.connection() as conn, _severed_after(conn, self._bound_s):
            for statement, params in statements:
                conn.execute(statement, params)

    def close(self) -> None:
        self._pool.close()
