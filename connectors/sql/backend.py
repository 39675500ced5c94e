"""`SqlBackend`: an agency's relational database answering lookups through its mapping.

It reads the agency's own tables where they are (SQLAlchemy Core, async: PostgreSQL through
psycopg, SQLite through aiosqlite), so the records are as current as the case system, and a
lookup is a handful of indexed queries whatever the number of children:

- identifiers: one query on the identifier columns (NHS number, UPN and former UPN, the key);
- demographics: one query on the blocking-key table (connectors.sql.blocks) for the children in
  the query's blocks, ranked in memory by `connectors.search.rank_candidates`;
- then carers and involvements for the few children in the answer, when the lookup asked for
  them. Indicators ride on the child query as EXISTS over each indicator's episodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import ColumnElement, or_
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.backend import ConnectorError, today_in_england
from connectors.protocol import ConnectorRecord, ErrorCode, Identifiers, LookupRequest
from connectors.search import query_blocking_keys, rank_candidates
from connectors.sql.blocks import BlockingIndex, RefreshSummary
from connectors.sql.mapping import Mapping
from connectors.sql.records import RecordReader, UnreadableRecord
from connectors.sql.tables import MappedTables, reflect_tables

_logger = logging.getLogger("childlookup.connector.sql")


class SqlBackend:
    """A `ConnectorBackend` over the tables `mapping` names, reached through `engine`."""

    def __init__(
        self,
        engine: AsyncEngine,
        mapping: Mapping,
        tables: MappedTables,
        *,
        today: Callable[[], date] = today_in_england,
    ) -> None:
        """Use `tables` as reflected by `open_tables` (the engine's own start-up check);
        `today` is the day indicators and involvements are judged open on."""
        self.engine = engine
        self.mapping = mapping
        self._tables = tables
        self._reader = RecordReader(mapping, tables)
        self.blocks = BlockingIndex(mapping, tables, self._reader)
        self._today = today

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        """Records sharing an identifier with the request, in key order; then, with
        demographics, the candidates among the children in the query's blocks, ranked as
        `CandidateIndex.search` ranks them. Each record once, at its first place.

        Raises ConnectorError(UNAVAILABLE) when the database cannot be reached, and
        ConnectorError(INTERNAL) when a record it reaches cannot be read (a date that is no
        date), so the gateway reports a failed source rather than "no record".
        """
        today, now = self._today(), datetime.now(UTC)
        try:
            async with self.engine.connect() as connection:
                found = await self._by_identifiers(connection, request.identifiers, today, now)
                if request.demographics is not None:
                    seen = {record.record_id for record in found}
                    candidates = await self._candidates(connection, request, today, now)
                    found += [record for record in candidates if record.record_id not in seen]
                if not found:
                    return []
                return await self._reader.with_contacts(connection, found, request.fields, today)
        except UnreadableRecord as unreadable:
            unreadable.log(_logger)
            raise ConnectorError(
                ErrorCode.INTERNAL, "A case record this lookup reached could not be read."
            ) from None
        except (OperationalError, OSError) as error:
            _logger.warning("database unreachable", extra={"error": type(error).__name__})
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, "The case records database could not be reached."
            ) from None
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, "The case records database connection was lost."
            ) from None

    async def _by_identifiers(
        self, connection: AsyncConnection, identifiers: Identifiers, today: date, now: datetime
    ) -> list[ConnectorRecord]:
        child, table = self.mapping.child, self._tables.child
        matches: list[ColumnElement[bool]] = []
        if identifiers.nhs_number is not None and child.nhs_number is not None:
            matches.append(table.c[child.nhs_number] == identifiers.nhs_number)
        if identifiers.upn is not None:
            matches += [
                table.c[column] == identifiers.upn
                for column in (child.upn, child.former_upn)
                if column is not None
            ]
        if identifiers.local_id is not None:
            key = self._reader.key_for(identifiers.local_id)
            if key is not None:
                matches.append(self._reader.key == key)
        if not matches:
            return []
        query = self._reader.select(today).where(or_(*matches)).order_by(self._reader.key)
        found = [self._reader.record(row, now) for row in await connection.execute(query)]
        return _without_claimed_former(found, identifiers)

    async def _candidates(
        self, connection: AsyncConnection, request: LookupRequest, today: date, now: datetime
    ) -> list[ConnectorRecord]:
        assert request.demographics is not None
        keys = query_blocking_keys(request.demographics)
        if not keys:
            return []
        # Ranked by what can be read of each row (a date that is no date left out), so one
        # unreadable row fails only a search it is a candidate of, not every search that shares
        # a block with it; a candidate is then read whole, and one that cannot be is refused.
        fetched = await connection.execute(self.blocks.candidates(keys, today))
        rows = {str(row._mapping["key"]): row for row in fetched}
        readable = [self._reader.record(row, now, to_index=True) for row in rows.values()]
        ranked = rank_candidates(request.demographics, readable)
        return [self._reader.record(rows[record.record_id], now) for record in ranked]

    async def refresh(self, *, full: bool = False) -> RefreshSummary:
        """Refresh the blocking keys in one transaction (see `BlockingIndex.refresh`)."""
        async with self.engine.begin() as connection:
            return await self.blocks.refresh(connection, full=full)


def _without_claimed_former(
    records: list[ConnectorRecord], identifiers: Identifiers
) -> list[ConnectorRecord]:
    """`records` less those that answer the request by a former UPN alone when another row holds
    that UPN as its own: the UPN is that child's in this database, and a row listing it as former
    is another child (a UPN keyed wrong, or issued twice) - the gateway would link both rows as
    one child, merging two children in one answer."""
    upn = identifiers.upn
    if upn is None or not any(r.identifiers.upn == upn for r in records):
        return records
    return [r for r in records if r.identifiers.upn == upn or _linked_otherwise(r, identifiers)]


def _linked_otherwise(record: ConnectorRecord, identifiers: Identifiers) -> bool:
    """Whether `record` answers the request by an identifier other than a UPN."""
    held = record.identifiers
    return (identifiers.nhs_number is not None and held.nhs_number == identifiers.nhs_number) or (
        identifiers.local_id is not None and held.local_id == identifiers.local_id
    )


async def open_tables(engine: AsyncEngine, mapping: Mapping) -> MappedTables:
    """Reflect and check the mapped tables (raises MappingError naming the key at fault)."""
    async with engine.connect() as connection:
        return await connection.run_sync(reflect_tables, mapping)
