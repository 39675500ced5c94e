"""The locator's privacy (principle 1: a locator may know which agencies hold a record
under a keyed pseudonym, never what they hold), against a real locator on loopback over SQLite
and a PostgreSQL schema of the test's own, with real agencies publishing and the gateway's key
locating.

What the locator keeps after real publications and locates is read as its DBA would read it, and
what it logs is read as its operator would."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, inspect, select

from connectors.locator import pseudonym, pseudonyms
from connectors.protocol import Identifiers
from tests.locator.conftest import (  # noqa: F401 - the fixtures, used by name
    AGENCIES,
    RunningLocator,
    locator,
    locator_database,
)

pytestmark = pytest.mark.anyio

LA, GP, SCHOOL = AGENCIES
DAY_S = 24 * 3600


async def _rows(running: RunningLocator, table_name: str) -> list[dict[str, Any]]:
    """Every row of one of the locator's tables, as a DBA reads it (every column there is)."""
    store = running.store()
    schema = running.settings.database_schema
    try:
        async with store._engine.connect() as conn:

            def reflect(sync_conn: Any) -> MetaData:
                metadata = MetaData(schema=schema)
                assert table_name in inspect(sync_conn).get_table_names(schema=schema)
                metadata.reflect(sync_conn, only=[table_name])
                return metadata

            metadata = await conn.run_sync(reflect)
            table = next(t for t in metadata.sorted_tables if t.name == table_name)
            return [dict(row._mapping) for row in await conn.execute(select(table))]
    finally:
        await store.close()


async def test_a_holding_keeps_no_time_that_dates_the_childs_record(
    locator: RunningLocator,  # noqa: F811 - the fixture
):
    """A social care authority publishes "I hold a record for P" when it opens P's case (a
    connector publishing changes as they happen, as docs/national.md advises large agencies to):
    a time kept on the holding would tell whoever reads the locator's tables when the child came
    into that authority's care - what the authority holds, not only that it holds. A holding is
    a key version, a pseudonym and an agency (locator/tables.py): nothing else is needed to
    locate, list or withdraw it."""
    key = locator.pseudonym_keys[0]
    started = int(time.time())
    async with httpx.AsyncClient() as client:
        publisher = locator.publisher(LA, client)
        await publisher.publish(key.version, [pseudonym(key, "nhs_number", "9434765919")])
        await publisher.publish(key.version, [pseudonym(key, "nhs_number", "9000000009")])
    finished = int(time.time())

    holdings = await _rows(locator, "holdings")
    assert len(holdings) == 2
    for holding in holdings:
        dated = {
            column: value
            for column, value in holding.items()
            if isinstance(value, int) and started - DAY_S <= value <= finished + DAY_S
        }
        assert not dated, f"a holding says when the agency began to hold it: {dated}"


async def test_the_locators_logs_name_no_pseudonym_and_no_identifier(
    locator: RunningLocator,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
):
    """Publications, lists, locates and refusals are logged by agency, batch, request id and
    counts: never by a pseudonym (which, with the key file, is the child) nor an identifier."""
    key = locator.pseudonym_keys[0]
    child = Identifiers(nhs_number="9434765919", upn="H801200001001")
    own = list(pseudonyms(key, child))
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as client:
        await locator.publisher(SCHOOL, client).sync([child])
        await locator.publisher(GP, client).sync([Identifiers(nhs_number=child.nhs_number)])
        answer = await locator.locate(client, [(key.version, p) for p in own])
        assert answer.status_code == 200
        assert {a for h in answer.json()["holders"] for a in h["agencies"]} == {SCHOOL, GP}
        refused = await locator.locate(client, [("never-issued", own[0])], request_id="req-2")
        assert refused.status_code == 400
        await locator.publisher(SCHOOL, client).sync([])  # the record closes
    logged = "\n".join(
        f"{r.getMessage()} {getattr(r, 'context', '')}"
        for r in caplog.records
        if r.name.startswith("childlookup")
    )
    assert "locator_publish" in logged
    assert "locator_locate" in logged
    for secret in [*own, child.nhs_number, child.upn]:
        assert secret not in logged


async def test_a_store_made_before_keeps_no_publication_times_once_the_locator_starts(
    tmp_path,
    locator_database: dict[str, Any],  # noqa: F811 - the fixture
):
    """A store made by an earlier locator has holdings with their publication times: the locator
    started over it drops them, and publishes into it as into a new one."""
    from sqlalchemy import BigInteger, Column, insert

    from connectors.locator import PublishRequest, new_pseudonym_key
    from locator.settings import Settings
    from locator.store import Store
    from locator.tables import metadata

    settings = Settings(state_dir=tmp_path / "state", **locator_database)
    old = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(old)
    old.tables["holdings"].append_column(Column("published_at", BigInteger, nullable=False))
    key = new_pseudonym_key("2026-11")
    store = Store.open(settings.store_url, schema=settings.database_schema)
    try:
        async with store._engine.begin() as conn:  # the store an earlier locator made
            await conn.run_sync(old.create_all)
            await conn.execute(insert(old.tables["agencies"]).values(id=1, name=LA))
            await conn.execute(insert(old.tables["key_versions"]).values(id=1, version=key.version))
            await conn.execute(
                insert(old.tables["holdings"]).values(
                    key_version_id=1,
                    pseudonym=b"\x01" * 32,
                    agency_id=1,
                    published_at=int(time.time()),
                )
            )
        await store.create()
        await store.create()  # and again: nothing left to drop
        receipt = await store.publish(
            PublishRequest(
                agency=LA,
                batch_id="b1",
                key_version=key.version,
                publish=[pseudonym(key, "nhs_number", "9434765919")],
            )
        )
        assert receipt.held == 2
    finally:
        await store.close()

    class Running:  # what _rows reads
        def __init__(self) -> None:
            self.settings = settings

        def store(self) -> Store:
            return Store.open(settings.store_url, schema=settings.database_schema)

    holdings = await _rows(Running(), "holdings")  # type: ignore[arg-type]
    assert len(holdings) == 2
    assert all(set(row) == {"key_version_id", "pseudonym", "agency_id"} for row in holdings)
