"""Serving a mapped database as a connector: start-up checks, the app, its profile.

Everything that can be wrong with the configuration is found before the first lookup: the
mapping file is validated, the mapped tables and columns are reflected and checked, and the
blocking-key table is created and brought up to date. A connector that starts is one whose
mapping a lookup cannot trip over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from starlette.applications import Starlette
from starlette.types import Lifespan

from connectors.app import create_connector_app
from connectors.notifications import NotificationSink, received_notifications
from connectors.reference import REFERENCE_AGENCIES, AgencyProfile
from connectors.sql.backend import SqlBackend, open_tables
from connectors.sql.blocks import BlockingIndex, RefreshSummary
from connectors.sql.engine import create_engine, engine_for
from connectors.sql.mapping import Mapping, load_mapping
from connectors.sql.records import RecordReader
from connectors.sql.tables import MappedTables
from connectors.trust import AnswerSigner, RequestVerifier
from connectors.witness import WitnessStore

T = TypeVar("T")

_DEFAULT_PORT: Final = 8103

_logger = logging.getLogger("childlookup.connector.sql")


def create_sql_app(
    *,
    database_url: str,
    mapping: Path,
    verifier: RequestVerifier | None = None,
    signer: AnswerSigner | None = None,
    notifications: NotificationSink | None = None,
    witness: WitnessStore | None = None,
    source: str = "social_care",
) -> Starlette:
    """A connector app named `source` answering from the database at `database_url` through
    the mapping file `mapping`. `verifier`, `signer`, `notifications` and `witness` are as for
    `create_connector_app` (with a verifier and no sink, notifications go to an in-memory
    `NotificationLog`, as the reference connectors do).

    While serving, it refreshes the blocking keys every `blocking.refresh_seconds` when the
    mapping names `child.updated_at`.

    Raises MappingError for a bad mapping file or a mapped table or column the database lacks,
    ValueError for an unusable URL, and DatabaseUnreachable when the database cannot be reached:
    all at start-up, before any lookup is served. Can be called with or without an event loop
    running (the checks run on a loop of their own).
    """
    loaded = load_mapping(mapping)
    tables = _run_apart(prepare(database_url, loaded))
    backend = SqlBackend(create_engine(database_url), loaded, tables)
    notifications = received_notifications(notifications, verified=verifier is not None)
    return create_connector_app(
        backend,
        source=source,
        verifier=verifier,
        signer=signer,
        notifications=notifications,
        witness=witness,
        lifespan=_lifespan(backend),
    )


def sql_profile(mapping: Mapping, source: str = "social_care") -> AgencyProfile:
    """What a connector serving `mapping` offers the gateway's planner: the fields the mapping
    provides, and shielding authority when it maps a shielded flag. A `source` named like a
    reference agency keeps that agency's title, description and port."""
    reference = REFERENCE_AGENCIES.get(source)
    return AgencyProfile(
        name=source,
        title=reference.title if reference else f"{source} (SQL)",
        description=reference.description
        if reference
        else "An agency database served through a mapping file.",
        provides=mapping.provides(),
        shield_authority=mapping.child.flags.shielded is not None,
        holds_every_child=False,
        default_port=reference.default_port if reference else _DEFAULT_PORT,
    )


async def prepare(database_url: str, mapping: Mapping) -> MappedTables:
    """The start-up work: reflect and check the mapped tables, create the blocking-key table
    when missing, and bring it up to date - fully the first time, then from `updated_at` (a
    mapping without it is refreshed by the operator's schedule instead)."""
    async with engine_for(database_url, schema=None) as engine:
        tables = await open_tables(engine, mapping)
        index = BlockingIndex(mapping, tables, RecordReader(mapping, tables))
        async with engine.begin() as connection:
            await index.create(connection)
            built = await index.built(connection)
            if not built or mapping.child.updated_at is not None:
                summary = await index.refresh(connection, full=not built)
                _logger.info("blocking keys ready", extra={"children": summary.children})
    return tables


async def refresh_blocking_keys(
    database_url: str, mapping: Path, *, full: bool = False
) -> RefreshSummary:
    """Bring the blocking keys up to date once (`childlookup connector index`): incrementally
    when the mapping names `child.updated_at`, else - or with `full` - every child's keys
    rewritten. Run it on a schedule for a mapping without `updated_at`, and after bulk loads.

    Raises MappingError and DatabaseUnreachable as `create_sql_app` does.
    """
    loaded = load_mapping(mapping)
    async with engine_for(database_url) as engine:
        tables = await open_tables(engine, loaded)
        index = BlockingIndex(loaded, tables, RecordReader(loaded, tables))
        async with engine.begin() as connection:
            await index.create(connection)
            return await index.refresh(connection, full=full)


def _lifespan(backend: SqlBackend) -> Lifespan[Starlette]:
    """The app's lifespan: refresh the blocking keys in the background while serving, and close
    the database pool on shutdown."""
    interval = backend.mapping.blocking.refresh_seconds
    incremental = backend.mapping.child.updated_at is not None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if interval > 0 and incremental:
            task = asyncio.create_task(_keep_refreshing(backend, interval))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await backend.engine.dispose()

    return lifespan


async def _keep_refreshing(backend: SqlBackend, interval: float) -> None:
    """Refresh every `interval` seconds; a failed round is logged (type only) and retried at
    the next, so a database blip delays new children's findability, never stops the connector."""
    while True:
        await asyncio.sleep(interval)
        try:
            await backend.refresh()
        except Exception as error:
            _logger.warning("blocking key refresh failed", extra={"error": type(error).__name__})


def _run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to completion on an event loop of its own, in a worker thread, so start-up
    checks can run whether or not the caller already has a loop running."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql-connector-start") as pool:
        return pool.submit(asyncio.run, work).result()
