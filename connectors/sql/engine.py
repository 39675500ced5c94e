"""Async engines for the agency's database, and saying which database without its password.

One place makes engines so every entry point - the connector, the blocking-key refresh, the
importers and the writer - reaches the database alike: PostgreSQL as `postgresql+psycopg://`,
SQLite as `sqlite+aiosqlite:///path`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class DatabaseUnreachable(ConnectionError):
    """The database could not be reached or opened; the message names it without its password."""


def redacted(database_url: str) -> str:
    """The URL as it may be logged or shown: the password masked."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def create_engine(database_url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine; with `schema`, tables declared without one (the worked schema's) are
    read and written in `schema`.

    Raises ValueError for a URL SQLAlchemy cannot use (naming it, password masked).
    """
    try:
        engine = create_async_engine(database_url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as error:
        raise ValueError(f"cannot use database URL {redacted(database_url)}: {error}") from None
    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


@asynccontextmanager
async def engine_for(database_url: str, *, schema: str | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine for one piece of work, disposed after it; a database that cannot be reached
    raises DatabaseUnreachable rather than a driver's error."""
    engine = create_engine(database_url, schema=schema)
    try:
        yield engine
    except OperationalError as error:
        raise DatabaseUnreachable(
            f"the database at {redacted(database_url)} failed: {error.orig}"
        ) from None
    finally:
        await engine.dispose()
