"""The agency's tables as the database has them, checked against the mapping at start-up.

Reflecting rather than declaring the tables is what lets an agency bring its own schema: the
connector learns column types from the database, so dates compare as dates and keys as keys. The
check runs once, before any lookup, so a mapping naming a table or column the database does not
have stops the connector with the mapping key at fault - not the first practitioner whose lookup
touches it, who would see a failed source and no reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from sqlalchemy import Column, Connection, MetaData, Table, inspect

from connectors.logs import log_event
from connectors.protocol import FieldId
from connectors.sql.mapping import Mapping, MappingError, RecordFlag

_logger = logging.getLogger("childlookup.connector.sql")

_DATE_KEYS: Final = frozenset(
    {"date_of_birth", "as_of", "updated_at", "start", "end", "since", "until"}
)
"""Mapping keys (their last part) that name a date or time column. A text column there would
compare as text (so '30/05/2024' is before '2026-01-01') and read as no date at all."""


@dataclass(frozen=True)
class MappedTables:
    """The reflected tables a mapping reads, each once."""

    child: Table
    episodes: dict[FieldId, Table]
    carers: Table | None
    involvements: tuple[Table, ...]


def reflect_tables(connection: Connection, mapping: Mapping) -> MappedTables:
    """Reflect every table `mapping` names (run through `AsyncConnection.run_sync`).

    Raises MappingError naming every missing table, or else every missing column, or else every
    date key naming a column that is not a date or time, each with the mapping key at fault, so
    one start-up shows the agency all it must fix.
    """
    existing = set(inspect(connection).get_table_names(schema=mapping.schema_))
    missing_tables = sorted(mapping.tables() - existing)
    if missing_tables:
        where = f" in schema {mapping.schema_!r}" if mapping.schema_ else ""
        raise MappingError(f"mapped tables not found in the database{where}: {missing_tables}")
    metadata = MetaData(schema=mapping.schema_)
    metadata.reflect(connection, only=sorted(mapping.tables()))
    tables = {table.name: table for table in metadata.tables.values()}
    missing = [
        f"{key} names column {column!r}, which table {table!r} does not have"
        for key, table, column in mapping.columns()
        if column not in tables[table].columns
    ]
    if missing:
        raise MappingError("; ".join(missing))
    not_dates = [
        f"{key} names column {column!r} of table {table!r}, which is not a date or time column"
        for key, table, column in mapping.columns()
        if key.rpartition(".")[2] in _DATE_KEYS and not _holds_dates(tables[table].c[column])
    ]
    if not_dates:
        raise MappingError("; ".join(not_dates))
    _warn_of_silent_nulls(mapping, tables[mapping.child.table])
    return MappedTables(
        child=tables[mapping.child.table],
        episodes={field: tables[e.table] for field, e in mapping.episodes().items()},
        carers=None if mapping.carers is None else tables[mapping.carers.table],
        involvements=tuple(tables[i.table] for i in mapping.involvements),
    )


def _holds_dates(column: Column[Any]) -> bool:
    """Whether the database declares the column a date or a date and time; a type SQLAlchemy
    does not know passes, since it cannot be told either way."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return True
    return issubclass(python_type, date)


def _warn_of_silent_nulls(mapping: Mapping, child: Table) -> None:
    """Log each flag whose column may hold NULL while the mapping does not say what a NULL means:
    a child whose row holds one is refused (never read as not shielded), so the agency should
    state it (`null = false`) or make the column NOT NULL before a practitioner meets it."""
    for flag in ("shielded", "restricted"):
        source = getattr(mapping.child.flags, flag)
        if source is None or (isinstance(source, RecordFlag) and source.null is not None):
            continue
        column = source.column if isinstance(source, RecordFlag) else source
        if child.c[column].nullable:
            log_event(
                _logger,
                logging.WARNING,
                "sql_flag_null_unstated",
                key=f"child.flags.{flag}",
                column=column,
            )
