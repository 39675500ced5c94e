"""The worked example: a local authority's case records, their mapping, and loading them.

`MAPPING` maps `schema.metadata` to protocol fields. Loading, each in one transaction:
`import_cin_census` (a children in need census XML file), `import_ssda903` (the SSDA903 header
and episodes CSV files) and `write_records` (connector records, e.g. the synthetic population's
social care records) - each creating the tables first when they are missing. After loading, the
connector's blocking keys catch up on their own (the mapping names `updated_at`), or at once with
`connectors.sql.refresh_blocking_keys`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Final

from connectors.protocol import ConnectorRecord
from connectors.sql.engine import engine_for
from connectors.sql.la_case_records.cin_census import read_cin_census
from connectors.sql.la_case_records.returns import ImportSummary, ReturnFileError, store_return
from connectors.sql.la_case_records.schema import metadata
from connectors.sql.la_case_records.ssda903 import read_ssda903
from connectors.sql.la_case_records.writer import insert_records

MAPPING: Final = Path(__file__).with_name("mapping.toml")
"""The worked mapping file for `metadata`."""


async def create_tables(database_url: str, *, schema: str | None = None) -> None:
    """Create the case records tables that do not exist yet (in `schema`, if given)."""
    async with engine_for(database_url, schema=schema) as engine, engine.begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)


async def import_cin_census(
    database_url: str, path: Path, *, schema: str | None = None
) -> ImportSummary:
    """Import a CIN census XML file as a snapshot as of its ReferenceDate.

    Raises ReturnFileError (naming lines and elements, never values) before writing anything.
    """
    # Reading and checking is file work: off the event loop.
    parsed, digest = await asyncio.to_thread(lambda: (read_cin_census(path), _digest(path)))
    async with engine_for(database_url, schema=schema) as engine, engine.begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)
        return await store_return(connection, parsed, digest)


async def import_ssda903(
    database_url: str,
    header: Path,
    episodes: Path,
    *,
    reference_date: date,
    schema: str | None = None,
) -> ImportSummary:
    """Import SSDA903 header and episodes CSV files as a snapshot as of `reference_date` (the
    collection year's end, 31 March: the files do not say it).

    Raises ReturnFileError (naming files, lines and columns, never values) before writing
    anything.
    """
    parsed, digest = await asyncio.to_thread(
        lambda: (read_ssda903(header, episodes, reference_date), _digest(header, episodes))
    )
    async with engine_for(database_url, schema=schema) as engine, engine.begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)
        return await store_return(connection, parsed, digest)


async def write_records(
    database_url: str, records: Iterable[ConnectorRecord], *, schema: str | None = None
) -> int:
    """Write connector records into the schema (see `writer`), replacing what it held for the
    same children; returns how many were written."""
    async with engine_for(database_url, schema=schema) as engine, engine.begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)
        return await insert_records(connection, records)


def _digest(*paths: Path) -> str:
    """SHA-256 over the files, in order: which snapshot an import came from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


__all__ = [
    "MAPPING",
    "ImportSummary",
    "ReturnFileError",
    "create_tables",
    "import_cin_census",
    "import_ssda903",
    "metadata",
    "write_records",
]
