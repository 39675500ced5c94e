"""The blocking-key table: demographic search in SQL, on an index, over any number of children.

`connectors.search` finds candidates in blocks - children born on the query's date (or with day
and month swapped), at its postcode, or whose names sound like its names. Here each child's
blocks are rows of an indexed table the connector owns (`child_key`, `block`), so a search is one
indexed `IN` over a dozen block strings and reads only the children in them: a few hundred rows
for a million children, never the whole table. The strings come from `search.blocking_keys`, so
the blocks are those of `CandidateIndex` by construction, and ranking the fetched rows with
`search.rank_candidates` answers exactly as the in-memory index would.

Keeping the table current is the price. Soundex of a name's parts, accents folded, cannot be
computed alike by every database's SQL (PostgreSQL's `soundex` does not split "Anne-Marie"; SQLite
has none), and triggers would put connector code inside the agency's case system. So the
connector refreshes the table itself, from the child table's `updated_at` column (mapping key
`child.updated_at`): every `blocking.refresh_seconds` it re-reads the rows changed since its last
look (with an overlap, for transactions that committed late) - a new or renamed child is findable
by demographics within about that long, and by identifier at once. Without `updated_at` each
refresh re-reads every child, which an operator runs on a schedule (`refresh_blocking_keys`,
`childlookup connector index`). A deleted child drops out of every answer at once (the search
joins the child table); its keys go at the next full refresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.search import blocking_keys
from connectors.sql.mapping import Mapping
from connectors.sql.records import RecordReader, UnreadableRecord
from connectors.sql.tables import MappedTables

_BATCH: Final = 2_000
"""Children read, and their keys written, per round trip of a refresh."""

_OVERLAP: Final = timedelta(minutes=5)
"""How far before the last refresh's start an incremental refresh reads again: a transaction
that set `updated_at` before the last refresh began but committed after it, or a case system
whose clock runs a little behind the connector's, is still picked up."""

_STATE_NAME: Final = "child"

_logger = logging.getLogger("childlookup.connector.sql")


@dataclass(frozen=True, slots=True)
class RefreshSummary:
    """What one refresh did; `skipped` when another process held the refresh lock."""

    children: int
    keys: int
    full: bool
    skipped: bool = False


class BlockingIndex:
    """The connector's blocking-key table and its state row, beside the agency's tables."""

    def __init__(self, mapping: Mapping, tables: MappedTables, reader: RecordReader) -> None:
        self._mapping = mapping
        self._reader = reader
        child = mapping.child
        self._updated_at = None if child.updated_at is None else tables.child.c[child.updated_at]
        name = mapping.blocking.table
        self._metadata = MetaData(schema=mapping.schema_)
        self.table = Table(
            name,
            self._metadata,
            Column("child_key", reader.key.type, primary_key=True),
            Column("block", Text, primary_key=True),
            # Covering: a search reads the index alone, never the table.
            Index(f"{name}_by_block", "block", "child_key"),
        )
        self._state = Table(
            f"{name}_state",
            self._metadata,
            Column("name", String(32), primary_key=True),
            Column("refreshed_at", DateTime(timezone=True), nullable=False),
        )

    async def create(self, connection: AsyncConnection) -> None:
        """Create the table and its state row's table when they do not exist yet."""
        await connection.run_sync(self._metadata.create_all, checkfirst=True)

    async def built(self, connection: AsyncConnection) -> bool:
        """Whether a refresh has ever completed."""
        query = select(self._state.c.name).where(self._state.c.name == _STATE_NAME)
        return (await connection.execute(query)).first() is not None

    def candidates(self, keys: set[str], today: date) -> Select[Any]:
        """The children in any of the blocks `keys`, with their indicators on `today`, in key
        order (the order equally strong candidates are ranked in)."""
        blocked = select(self.table.c.child_key).where(self.table.c.block.in_(sorted(keys)))
        key = self._reader.key
        return self._reader.select(today).where(key.in_(blocked)).order_by(key)

    async def refresh(self, connection: AsyncConnection, *, full: bool = False) -> RefreshSummary:
        """Bring the table up to date with the child table, inside the caller's transaction.

        Incremental (rows whose `updated_at` is at or after the last refresh's start, less an
        overlap) when the mapping names `child.updated_at` and a refresh has run before; else
        `full`: every key rewritten. On PostgreSQL, replicas refreshing at once take turns on an
        advisory lock, and one that finds it held skips this round.
        """
        started = datetime.now(UTC)
        if not await self._locked(connection):
            return RefreshSummary(children=0, keys=0, full=full, skipped=True)
        since = None if full or self._updated_at is None else await self._since(connection)
        full = since is None
        if full:
            await connection.execute(delete(self.table))
        children = keys = 0
        last: Any = None
        while True:
            query = self._reader.select(None).order_by(self._reader.key).limit(_BATCH)
            if since is not None and self._updated_at is not None:
                query = query.where(self._updated_at >= since)
            if last is not None:
                query = query.where(self._reader.key > last)
            rows = (await connection.execute(query)).all()
            if not rows:
                break
            last = rows[-1]._mapping["key"]
            batch = [(row._mapping["key"], self._blocks(row, started)) for row in rows]
            if not full:
                changed = self.table.c.child_key.in_([key for key, _ in batch])
                await connection.execute(delete(self.table).where(changed))
            values = [
                {"child_key": key, "block": block} for key, blocks in batch for block in blocks
            ]
            if values:
                await connection.execute(insert(self.table), values)
            children += len(rows)
            keys += len(values)
        await connection.execute(delete(self._state).where(self._state.c.name == _STATE_NAME))
        await connection.execute(insert(self._state).values(name=_STATE_NAME, refreshed_at=started))
        _logger.info(
            "blocking keys refreshed", extra={"children": children, "keys": keys, "full": full}
        )
        return RefreshSummary(children=children, keys=keys, full=full)

    def _blocks(self, row: Row[Any], now: datetime) -> set[str]:
        """The row's blocking keys. A row whose date of birth or as-of cannot be read is logged
        by key and column, and indexed by what can be read of it (its names and postcode): a
        search reaching it is then refused as unreadable, as a lookup by identifier is - never
        answered "no record" for a child it missed."""
        try:
            return blocking_keys(self._reader.record(row, now))
        except UnreadableRecord as unreadable:
            unreadable.log(_logger)
            return blocking_keys(self._reader.record(row, now, to_index=True))

    async def _locked(self, connection: AsyncConnection) -> bool:
        """Whether this replica may refresh now: it holds the lock of this very table, named by
        the schema it is in - the mapping's, else the connection's own (its search path) - so
        connectors on other schemas of one database never skip each other's rounds."""
        if connection.dialect.name != "postgresql":
            return True
        query = text(
            "SELECT pg_try_advisory_xact_lock(hashtext("
            "'childlookup:' || coalesce(:schema, current_schema()) || ':' || :table))"
        )
        params = {"schema": self._mapping.schema_, "table": self.table.name}
        return bool((await connection.execute(query, params)).scalar())

    async def _since(self, connection: AsyncConnection) -> date | datetime | None:
        """Where an incremental refresh starts reading: the last refresh's start less the overlap
        (as a date, for a date column: that whole day again); None when none has run."""
        query = select(self._state.c.refreshed_at).where(self._state.c.name == _STATE_NAME)
        last = (await connection.execute(query)).scalar()
        if last is None or self._updated_at is None:
            return None
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        since: datetime = last - _OVERLAP
        if _python_type(self._updated_at) is date:
            return since.date()
        return since

    async def count(self, connection: AsyncConnection) -> int:
        """How many keys the table holds (for operators' summaries and tests)."""
        return int(
            (await connection.execute(select(func.count()).select_from(self.table))).scalar_one()
        )


def _python_type(column: Any) -> type:
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:
        return datetime
    return python_type
