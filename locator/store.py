"""The locator's store: SQLAlchemy Core over PostgreSQL (production) or SQLite (embedded, demo).

A publication is one transaction, applied at most once (its batch id is kept with a digest of
its content); publishing what is held or withdrawing what is not changes nothing. A locate is
one indexed query for all of its pseudonyms, audited by counts alone in the same transaction.

SQLite allows one writer at a time: writes from this process queue on a lock rather than fail
with "database is locked", and the database runs in WAL mode so lookups read while a batch is
written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import sqlalchemy
from sqlalchemy import Connection, Insert, Table, delete, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.locator import (
    Holder,
    HoldingsPage,
    PseudonymRef,
    PublishReceipt,
    PublishRequest,
)
from connectors.sql import create_engine
from locator.tables import agencies, holdings, key_versions, metadata, publications, queries

_T = TypeVar("_T")

FORGOTTEN_COLUMNS: Final = (("holdings", "published_at"),)
"""Columns stores made by earlier versions have and this one drops at start-up: a holding's
publication time told when an agency began to hold the child's record (a case opened, a child
taken into care), which is what it holds, not only that it holds."""

PUBLICATIONS_KEPT_S: Final = 24 * 3600
"""How long an agency's publication is remembered: its batch id and digest are there to answer a
retry (seconds to minutes) with the first receipt, and to refuse the id sent again with other
content. Kept for good, the log dated each batch, and a small batch's plain digest names the
pseudonyms in it to anyone who hashes the ones they know: when an agency began to hold a child's
record, and when it let go of it - what it holds, not only that it holds."""

CHUNK: Final = 1_000
"""Most pseudonyms bound into one statement (SQLite and PostgreSQL cap the parameters)."""


class StoreRefusal(ValueError):
    """A publication the store will not apply, or a question it cannot answer; the message is
    safe to show the agency or the gateway."""


@dataclass(frozen=True)
class VersionCoverage:
    """How far a key version reaches: for rotation, compare the new version's agencies with the
    old one's before retiring the old."""

    version: str
    agencies: int
    holdings: int
    retired: bool


@dataclass(frozen=True)
class Coverage:
    versions: tuple[VersionCoverage, ...]
    agencies: int
    """Agencies holding anything under any version."""


@dataclass(frozen=True)
class Query:
    """One locate, as the locator's own access audit keeps it: who asked, when, and how much."""

    at: int
    request_id: str
    issuer: str
    pseudonyms: int
    agencies: int


@dataclass(frozen=True)
class Located:
    holders: list[Holder]
    agencies: int
    """Distinct agencies named, for the audit."""


class Store:
    """The holdings index, the publications log and the query audit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        if self._sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._one_writer = asyncio.Lock() if self._sqlite else None
        self._sqlite_writer: sqlalchemy.Engine | None = None
        if self._sqlite:
            # Publications are written with the plain driver in a thread, one transaction per
            # hop: through aiosqlite each statement costs ~0.5 ms of CPU in round trips to its
            # thread, 40 times what SQLite takes, and thousands of small first publications
            # are mostly statements.
            url = engine.url.set(drivername="sqlite")
            self._sqlite_writer = sqlalchemy.create_engine(
                url, connect_args={"check_same_thread": False}
            )
            event.listen(self._sqlite_writer, "connect", _sqlite_pragmas)
            event.listen(self._sqlite_writer, "connect", _explicit_transactions)
            event.listen(self._sqlite_writer, "begin", _begin_immediate)
        self._agency_ids: dict[str, int] = {}
        self._version_ids: dict[str, int] = {}
        self.key_versions: frozenset[str] | None = None
        """The federation's key versions (`Settings.key_versions`); None: any."""

    @classmethod
    def open(
        cls, url: str, *, schema: str | None = None, key_versions: Iterable[str] = ()
    ) -> Store:
        """A store on `url` (a SQLAlchemy async URL); `schema` for PostgreSQL; `key_versions`,
        the only ones published under and searched (none given: any)."""
        store = cls(create_engine(url, schema=schema))
        store.key_versions = frozenset(key_versions) or None
        return store

    async def create(self) -> None:
        """Create the tables that do not exist yet, and drop the columns stores made earlier
        kept and this one must not (FORGOTTEN_COLUMNS)."""
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(_drop_forgotten_columns)

    async def close(self) -> None:
        await self._engine.dispose()
        if self._sqlite_writer is not None:
            self._sqlite_writer.dispose()

    async def ping(self) -> None:
        """Raise unless the store answers a query."""
        async with self._engine.connect() as conn:
            await conn.execute(select(func.count()).select_from(key_versions))

    async def publish(self, request: PublishRequest) -> PublishReceipt:
        """Apply one publication, once. Raises StoreRefusal for a retired key version, or a batch
        id used before for other content.

        One transaction does it all - naming a new agency or key version included - because at
        national scale most publications are an agency's first and small, and the fixed cost of
        each statement and connection (each a round trip to SQLite's thread) is what counts."""
        if self.key_versions is not None and request.key_version not in self.key_versions:
            raise StoreRefusal(
                f"Key version {request.key_version!r} is not one of this federation's: publish"
                " under the versions in your pseudonym key file, as the operators issued them."
            )
        publish, withdraw = _raw(request.publish), _raw(request.withdraw)
        digest = _digest(request)

        def transaction(conn: Connection) -> tuple[PublishReceipt, int, int]:
            agency_id = self._named(conn, agencies, "name", request.agency)
            version_id = self._named(conn, key_versions, "version", request.key_version)
            receipt = self._apply(
                conn, request.batch_id, agency_id, version_id, publish, withdraw, digest
            )
            return receipt, agency_id, version_id

        async def apply() -> PublishReceipt:
            receipt, agency_id, version_id = await self._write(transaction)
            # Only ids of committed rows are kept: a refused batch rolls back a name it made.
            self._agency_ids[request.agency] = agency_id
            self._version_ids[request.key_version] = version_id
            return receipt

        try:
            return await apply()
        except IntegrityError:
            # Another replica applied the same batch (or a row of it) first: read it again.
            return await apply()

    def _apply(
        self,
        conn: Connection,
        batch_id: str,
        agency_id: int,
        version_id: int,
        publish: list[bytes],
        withdraw: list[bytes],
        digest: bytes,
    ) -> PublishReceipt:
        retired = conn.scalar(
            select(key_versions.c.retired_at)
            .where(key_versions.c.id == version_id)
            .with_for_update(read=True)
        )
        if retired is not None:
            raise StoreRefusal("This key version has been retired: publish under the current one.")
        earlier = (
            conn.execute(
                select(publications).where(
                    publications.c.agency_id == agency_id, publications.c.batch_id == batch_id
                )
            )
        ).first()
        if earlier is not None:
            if earlier.digest != digest or earlier.key_version_id != version_id:
                raise StoreRefusal("This batch id was used before for another batch.")
            held = _count(conn, agency_id, version_id)
            return PublishReceipt(
                batch_id=batch_id,
                published=earlier.published,
                withdrawn=earlier.withdrawn,
                held=held,
            )
        now = int(time.time())
        conn.execute(
            delete(publications).where(
                publications.c.agency_id == agency_id,
                publications.c.at < now - PUBLICATIONS_KEPT_S,
            )
        )
        added = removed = 0
        # Inserting what is held already, or deleting what is not, does nothing: each statement
        # returns the rows it changed, so nothing is read first.
        for chunk in _chunks(list(dict.fromkeys(publish))):
            rows = [
                {
                    "key_version_id": version_id,
                    "pseudonym": value,
                    "agency_id": agency_id,
                }
                for value in chunk
            ]
            inserted = conn.execute(
                self._insert_new(holdings).returning(holdings.c.pseudonym), rows
            )
            added += len(inserted.all())
        for chunk in _chunks(withdraw):
            deleted = conn.execute(
                delete(holdings)
                .where(
                    holdings.c.key_version_id == version_id,
                    holdings.c.pseudonym.in_(chunk),
                    holdings.c.agency_id == agency_id,
                )
                .returning(holdings.c.pseudonym)
            )
            removed += len(deleted.all())
        conn.execute(
            insert(publications).values(
                agency_id=agency_id,
                batch_id=batch_id,
                key_version_id=version_id,
                published=added,
                withdrawn=removed,
                at=now,
                digest=digest,
            )
        )
        return PublishReceipt(
            batch_id=batch_id,
            published=added,
            withdrawn=removed,
            held=_count(conn, agency_id, version_id),
        )

    async def listed(
        self, agency: str, key_version: str, after: str | None, limit: int
    ) -> HoldingsPage:
        """One page of `agency`'s pseudonyms under `key_version`, in byte order after `after`:
        one statement (an agency or version never seen lists nothing)."""
        query = (
            select(holdings.c.pseudonym)
            .where(
                holdings.c.agency_id == self._id_of(agencies, "name", agency, self._agency_ids),
                holdings.c.key_version_id
                == self._id_of(key_versions, "version", key_version, self._version_ids),
            )
            .order_by(holdings.c.pseudonym)
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(holdings.c.pseudonym > _raw([after])[0])
        async with self._engine.connect() as conn:
            found = [_text(p) for p in (await conn.scalars(query)).all()]
        more = len(found) > limit
        return HoldingsPage(pseudonyms=found[:limit], next=found[limit - 1] if more else None)

    async def locate(
        self, refs: Sequence[PseudonymRef], *, request_id: str, issuer: str
    ) -> Located:
        """The agencies holding each of `refs`, in one indexed query, and the question audited
        (by counts only) in the same transaction: no answer leaves unaudited.

        Raises StoreRefusal when none of `refs` is under a key version searched here - one not
        of the federation's `key_versions`, never published under, or retired (its holdings
        deleted): an empty answer would say that nobody
        holds the child when nobody was looked for, and the gateway would call its lookup
        complete. A gateway holding an old version beside the current one (a rotation under way)
        is answered from the current one."""
        holders: dict[PseudonymRef, list[str]] = {}
        async with self._writing() as conn:
            asked_versions = {ref.key_version for ref in refs}
            if self.key_versions is not None:
                asked_versions &= self.key_versions
            searched = await conn.execute(
                select(key_versions.c.version, key_versions.c.id).where(
                    key_versions.c.version.in_(asked_versions),
                    key_versions.c.retired_at.is_(None),
                )
            )
            current: dict[str, int] = {version: version_id for version, version_id in searched}
            asked = {
                (current[ref.key_version], _raw([ref.value])[0]): ref
                for ref in refs
                if ref.key_version in current
            }
            if refs and not asked:
                raise StoreRefusal(
                    "No pseudonym asked about is under a key version searched here (never"
                    " published under, or retired): ask under the current version."
                )
            if asked:
                # Two lists rather than pairs: both databases then seek the primary key for each
                # combination; one not asked about is dropped (one key's HMAC is never another's).
                query = (
                    select(holdings.c.key_version_id, holdings.c.pseudonym, agencies.c.name)
                    .join_from(holdings, agencies)
                    .where(
                        holdings.c.key_version_id.in_({version_id for version_id, _ in asked}),
                        holdings.c.pseudonym.in_([value for _, value in asked]),
                    )
                    .order_by(agencies.c.name)
                )
                for version_id, value, name in await conn.execute(query):
                    if (version_id, value) in asked:
                        holders.setdefault(asked[version_id, value], []).append(name)
            named = len({name for names in holders.values() for name in names})
            await conn.execute(
                insert(queries).values(
                    at=int(time.time()),
                    request_id=request_id,
                    issuer=issuer,
                    pseudonyms=len(refs),
                    agencies=named,
                )
            )
        return Located(
            [
                Holder(key_version=ref.key_version, value=ref.value, agencies=names)
                for ref, names in holders.items()
            ],
            named,
        )

    async def queries_since(self, at: int, limit: int = 1_000) -> list[Query]:
        """The audited locates from Unix time `at` on, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(queries).where(queries.c.at >= at).order_by(queries.c.id).limit(limit)
            )
            return [
                Query(row.at, row.request_id, row.issuer, row.pseudonyms, row.agencies)
                for row in rows
            ]

    async def coverage(self) -> Coverage:
        """Per key version, the agencies and holdings under it."""
        async with self._engine.connect() as conn:
            counted = {
                row.key_version_id: row
                for row in await conn.execute(
                    select(
                        holdings.c.key_version_id,
                        func.count().label("holdings"),
                        func.count(holdings.c.agency_id.distinct()).label("agencies"),
                    ).group_by(holdings.c.key_version_id)
                )
            }
            publishing = await conn.scalar(select(func.count(holdings.c.agency_id.distinct())))
            versions = (await conn.execute(select(key_versions).order_by(key_versions.c.id))).all()
        return Coverage(
            versions=tuple(
                VersionCoverage(
                    version=v.version,
                    agencies=counted[v.id].agencies if v.id in counted else 0,
                    holdings=counted[v.id].holdings if v.id in counted else 0,
                    retired=v.retired_at is not None,
                )
                for v in versions
            ),
            agencies=publishing or 0,
        )

    async def held_only_under(self, version: str) -> list[str]:
        """The agencies holding anything under `version` and nothing under any other live key
        version: retiring `version` now would hide their children from every lookup. Judged
        agency by agency - another version reaching as many agencies is not enough, since an
        agency publishing under it alone would make up the count for one that has not yet."""
        version_id = await self._find(key_versions, "version", version)
        if version_id is None:
            return []
        other = holdings.alias("other")
        live = key_versions.alias("live")
        query = (
            select(agencies.c.name)
            .where(
                select(holdings.c.agency_id)
                .where(
                    holdings.c.agency_id == agencies.c.id,
                    holdings.c.key_version_id == version_id,
                )
                .exists(),
                ~select(other.c.agency_id)
                .join(live, other.c.key_version_id == live.c.id)
                .where(
                    other.c.agency_id == agencies.c.id,
                    live.c.id != version_id,
                    live.c.retired_at.is_(None),
                )
                .exists(),
            )
            .order_by(agencies.c.name)
        )
        async with self._engine.connect() as conn:
            return list((await conn.scalars(query)).all())

    async def remove_agency(self, name: str) -> int:
        """Delete every holding `name` published, under every key version; the number deleted.
        For an agency taken out of the agencies file: it can no longer withdraw them itself.
        Raises StoreRefusal for an agency that never published here."""
        agency_id = await self._find(agencies, "name", name)
        if agency_id is None:
            raise StoreRefusal(f"No agency {name!r} has published here.")
        async with self._writing() as conn:
            removed = await conn.execute(delete(holdings).where(holdings.c.agency_id == agency_id))
        return removed.rowcount

    async def retire(self, version: str) -> int:
        """Retire `version`: refuse its publications from now on and delete its holdings, agency
        by agency so no one transaction holds the store long. Returns the holdings deleted;
        raises StoreRefusal for a version the store has never seen."""
        version_id = await self._find(key_versions, "version", version)
        if version_id is None:
            raise StoreRefusal(f"No holdings were ever published under key version {version!r}.")
        async with self._writing() as conn:
            await conn.execute(
                update(key_versions)
                .where(key_versions.c.id == version_id, key_versions.c.retired_at.is_(None))
                .values(retired_at=int(time.time()))
            )
        async with self._engine.connect() as conn:
            holding_agencies = (
                await conn.scalars(
                    select(holdings.c.agency_id)
                    .distinct()
                    .where(holdings.c.key_version_id == version_id)
                )
            ).all()
        deleted = 0
        for agency_id in holding_agencies:
            async with self._writing() as conn:
                result = await conn.execute(
                    delete(holdings).where(
                        holdings.c.key_version_id == version_id,
                        holdings.c.agency_id == agency_id,
                    )
                )
                deleted += result.rowcount
        return deleted

    def _insert_new(self, table: Table) -> Insert:
        """An INSERT that skips rows whose primary key is there already (ON CONFLICT DO NOTHING,
        in each database's dialect)."""
        dialect_insert = sqlite_insert if self._sqlite else postgresql_insert
        return dialect_insert(table).on_conflict_do_nothing()

    async def _write(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in one write transaction: on SQLite in a thread with the plain driver, one
        writer at a time; elsewhere through the async driver."""
        if self._sqlite_writer is None:
            async with self._engine.begin() as conn:
                return await conn.run_sync(work)
        writer = self._sqlite_writer

        def transaction() -> _T:
            with writer.begin() as conn:
                return work(conn)

        assert self._one_writer is not None  # made with the SQLite writer
        async with self._one_writer:
            return await asyncio.to_thread(transaction)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; on SQLite, one at a time."""
        if self._one_writer is None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._one_writer, self._engine.begin() as conn:
            yield conn

    async def _find(self, table: Any, column: str, value: str) -> int | None:
        async with self._engine.connect() as conn:
            found: int | None = await conn.scalar(
                select(table.c.id).where(table.c[column] == value)
            )
        return found

    def _named(self, conn: Connection, table: Table, column: str, value: str) -> int:
        """The id of the row naming `value` in `table`, made in `conn`'s transaction when there
        is none yet."""
        cache = self._agency_ids if table is agencies else self._version_ids
        if value in cache:
            return cache[value]
        dialect_insert = sqlite_insert if self._sqlite else postgresql_insert
        # ON CONFLICT DO UPDATE (to the same value), not DO NOTHING: so the row is returned
        # whether this statement made it or it was there already.
        upsert = (
            dialect_insert(table)
            .values({column: value})
            .on_conflict_do_update(index_elements=[table.c[column]], set_={column: value})
            .returning(table.c.id)
        )
        found: int | None = conn.scalar(upsert)
        if found is None:
            raise RuntimeError(f"{table.name}: the row naming it cannot be read back")
        return found

    @staticmethod
    def _id_of(table: Table, column: str, value: str, cache: dict[str, int]) -> Any:
        """The id of the row naming `value`: known, or looked up within the statement."""
        if value in cache:
            return cache[value]
        return select(table.c.id).where(table.c[column] == value).scalar_subquery()


def _count(conn: Connection, agency_id: int, version_id: int) -> int:
    held = conn.scalar(
        select(func.count()).where(
            holdings.c.agency_id == agency_id, holdings.c.key_version_id == version_id
        )
    )
    return int(held or 0)


def _chunks(values: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _raw(texts: Iterable[str]) -> list[bytes]:
    """Pseudonyms as the 32 bytes they encode; raises StoreRefusal for one not written the one
    way `connectors.locator.pseudonym` writes it (so each holding has exactly one spelling)."""
    raw = []
    for text in texts:
        try:
            value = base64.urlsafe_b64decode(text + "=")
        except (binascii.Error, ValueError):
            raise StoreRefusal("A pseudonym is not base64url.") from None
        if len(value) != 32 or _text(value) != text:
            raise StoreRefusal("A pseudonym is not the base64url of an HMAC-SHA256.")
        raw.append(value)
    return raw


def _text(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def _digest(request: PublishRequest) -> bytes:
    content = "\n".join(
        [request.key_version, ",".join(sorted(request.publish)), ",".join(sorted(request.withdraw))]
    )
    return hashlib.sha256(content.encode()).digest()


def _drop_forgotten_columns(conn: Connection) -> None:
    """Drop each of FORGOTTEN_COLUMNS still in the store (in the schema its tables are in)."""
    schema = conn.get_execution_options().get("schema_translate_map", {}).get(None)
    quote = conn.dialect.identifier_preparer.quote
    for table, column in FORGOTTEN_COLUMNS:
        columns = {c["name"] for c in sqlalchemy.inspect(conn).get_columns(table, schema=schema)}
        if column in columns:
            name = quote(table) if schema is None else f"{quote(schema)}.{quote(table)}"
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP COLUMN {quote(column)}")


def _explicit_transactions(dbapi_connection: Any, connection_record: Any) -> None:
    """The driver's own BEGIN, deferred to the first write, left out: `_begin_immediate` says."""
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    """A publication's transaction takes SQLite's write lock as it begins, before it reads
    whether its key version is retired: begun deferred, a `retire-key` from another process
    could commit between that read and the first insert, and the batch be taken under a
    version already retired."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL, so reads go on while a batch is written; a wait rather than an error when another
    process (the CLI retiring a key) is writing."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
