"""The locator never receives personal data: after agencies publish records carrying names, dates
of birth, addresses and identifiers, and the gateway asks about some of those children, every
value in every column of every table, the store's files on disk, and every byte of every request
the locator received are searched for any of it. What may be there is listed: pseudonyms, agency
names, key versions, batch and request ids, counts and times."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, inspect, select

from connectors.locator import pseudonyms
from connectors.protocol import ConnectorRecord
from connectors.records import FileBackend
from connectors.synthetic.population import generate_population
from tests.locator.conftest import AGENCIES, GATEWAY_ID, RunningLocator

pytestmark = pytest.mark.anyio

LA, GP, SCHOOL = AGENCIES


def _personal(records: list[ConnectorRecord]) -> set[str]:
    """Everything a record says that could identify a child or reveal what is held, in the
    forms it might be written: every text of six characters or more, and every date of birth
    and postcode however it is spelt."""
    found: set[str] = set()
    for record in records:
        found.update(s for s in _strings(record.model_dump(mode="json")) if len(s) >= 6)
        if record.date_of_birth is not None:
            born = record.date_of_birth
            found.update({born.isoformat(), born.strftime("%d/%m/%Y"), born.strftime("%Y%m%d")})
        if record.address is not None and record.address.postcode:
            found.add(record.address.postcode.replace(" ", ""))
    found.discard(LA)  # not personal, whatever a record's organisation is called
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


async def _stored_rows(locator: RunningLocator) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table in the locator's store, by table."""
    store = locator.store()
    schema = locator.settings.database_schema
    try:
        async with store._engine.connect() as conn:  # the test reads the store as a DBA would

            def reflect(sync_conn: Any) -> MetaData:
                metadata = MetaData(schema=schema)
                names = inspect(sync_conn).get_table_names(schema=schema)
                metadata.reflect(sync_conn, only=names)
                return metadata

            metadata = await conn.run_sync(reflect)
            return {
                table.name: [dict(row._mapping) for row in await conn.execute(select(table))]
                for table in metadata.sorted_tables
            }
    finally:
        await store.close()


async def test_nothing_personal_reaches_or_stays_in_the_locator(locator: RunningLocator):
    population = generate_population(seed=16, children=80)
    published = {
        GP: list(population.health),
        SCHOOL: list(population.education),
        LA: list(population.social_care),
    }
    key = locator.pseudonym_keys[0]
    asked = [r.identifiers for r in population.health[:5]]
    async with httpx.AsyncClient() as client:
        for agency, records in published.items():
            await locator.publisher(agency, client).sync(FileBackend(records).identifiers())
        for number, identifiers in enumerate(asked):
            refs = [(key.version, p) for p in pseudonyms(key, identifiers)]
            answer = await locator.locate(client, refs, request_id=f"req-{number}")
            assert answer.status_code == 200
    personal = _personal([r for records in published.values() for r in records])
    every_pseudonym = {
        p for records in published.values() for r in records for p in pseudonyms(key, r.identifiers)
    }
    assert personal
    assert len(every_pseudonym) > 100

    rows = await _stored_rows(locator)
    assert set(rows) == {"agencies", "key_versions", "holdings", "publications", "queries"}
    allowed_text = {*AGENCIES, key.version, GATEWAY_ID} | {f"req-{n}" for n in range(len(asked))}
    for table, table_rows in rows.items():
        for row in table_rows:
            for column, value in row.items():
                where = f"{table}.{column}"
                if isinstance(value, bytes):
                    assert len(value) == 32, where
                    if column == "pseudonym":
                        text = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
                        assert text in every_pseudonym, where
                elif isinstance(value, str):
                    assert value in allowed_text or re.fullmatch(r"[0-9a-f]{32}", value), where
                else:
                    assert value is None or isinstance(value, int), where
    assert len(rows["holdings"]) == len(every_pseudonym) + _shared(published, key)
    assert [q["pseudonyms"] for q in rows["queries"]] == [
        len(list(pseudonyms(key, identifiers))) for identifiers in asked
    ]

    received = b"\n".join(locator.recording.bodies)
    heads = b"\n".join(
        path.encode() + b"".join(name + b"=" + value for name, value in headers)
        for path, headers in locator.recording.heads
    )
    tokens = b"\n".join(_token_payloads(locator))
    on_disk = b""  # SQLite's files, write-ahead log included; PostgreSQL's are not ours to read
    if locator.settings.database_schema is None:
        folder = Path(locator.settings.store_url.split("///")[-1]).parent
        on_disk = b"".join(p.read_bytes() for p in folder.glob("locator.sqlite3*"))
        assert on_disk
    for text in personal:
        needle = text.encode()
        assert needle not in received, "a request body carried personal data"
        assert needle not in heads, "a request line or header carried personal data"
        assert needle not in tokens, "a token carried personal data"
        assert needle not in on_disk, "the store's files hold personal data"
    for body in locator.recording.bodies:
        if body:
            for text in _strings(json.loads(body)):
                assert text in allowed_text | every_pseudonym | {"1"} or re.fullmatch(
                    r"[0-9a-f]{32}", text
                )


def _shared(published: dict[str, list[ConnectorRecord]], key: Any) -> int:
    """Holdings beyond one per pseudonym: the same pseudonym published by several agencies."""
    per_agency = [
        {p for r in records for p in pseudonyms(key, r.identifiers)}
        for records in published.values()
    ]
    return sum(len(s) for s in per_agency) - len(set().union(*per_agency))


def _token_payloads(locator: RunningLocator) -> Iterator[bytes]:
    """The claims of every bearer token the locator was sent, decoded."""
    for _, headers in locator.recording.heads:
        for name, value in headers:
            if name == b"authorization":
                payload = value.split(b" ", 1)[1].split(b".")[1]
                yield base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
