"""The SQL connector over real SQLite files and the machine's PostgreSQL, served over HTTP: the
worked case records schema answers as the reference file connector does for the same records."""

import asyncio
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, insert

from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    Demographics,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.records import FileBackend
from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import BackgroundServer
from connectors.sql import (
    SqlBackend,
    create_engine,
    create_sql_app,
    load_mapping,
    open_tables,
    prepare,
    refresh_blocking_keys,
    sql_profile,
)
from connectors.sql import la_case_records as case_records
from connectors.sql.la_case_records.schema import child_protection_plans, children
from connectors.synthetic import generate_population
from tests.test_witness import checkpoints_kept_by

POPULATION = generate_population(11, 500)
RECORDS = POPULATION.social_care
SOCIAL_CARE_FIELDS = list(REFERENCE_AGENCIES["social_care"].provides)


def write(url: str, records) -> None:
    asyncio.run(case_records.write_records(url, records))


def request(
    identifiers: Identifiers | None = None, demographics: Demographics | None = None
) -> LookupRequest:
    return LookupRequest(
        request_id=f"req-{uuid.uuid4().hex[:8]}",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA-TEST"),
        identifiers=identifiers or Identifiers(),
        demographics=demographics,
        fields=SOCIAL_CARE_FIELDS,
    )


def post(url: str, lookup: LookupRequest) -> list[ConnectorRecord]:
    response = httpx.post(url + LOOKUP_PATH, content=lookup.model_dump_json(), timeout=10)
    assert response.status_code == 200, response.text
    return LookupResponse.model_validate_json(response.content).records


def described(record: ConnectorRecord) -> Demographics:
    assert record.name is not None
    return Demographics(
        given=record.name.given,
        family=record.name.family,
        date_of_birth=record.date_of_birth,
        postcode=None if record.address is None else record.address.postcode,
    )


def test_records_written_to_sql_come_back_through_the_connector_unchanged(database_url):
    write(database_url, RECORDS)

    with BackgroundServer(
        create_sql_app(database_url=database_url, mapping=case_records.MAPPING)
    ) as server:
        found = {
            record.record_id: post(server.url, request(Identifiers(local_id=record.record_id)))
            for record in RECORDS
        }

    assert all(len(answer) == 1 for answer in found.values())
    # Social care records carry nothing the schema drops (no school, GP, restricted flag).
    assert [found[r.record_id][0] for r in RECORDS] == list(RECORDS)


def test_identifier_lookups_use_nhs_number_upn_and_former_upn(database_url):
    child = (
        RECORDS[0]
        .model_copy(
            update={"identifiers": Identifiers(nhs_number="9434765919", local_id="LA-1")},
        )
        .model_copy(update={"record_id": "LA-1"})
    )
    write(database_url, [child])
    asyncio.run(_set_upns(database_url, "LA-1", upn="H801200001001", former="X801200001002"))

    with BackgroundServer(
        create_sql_app(database_url=database_url, mapping=case_records.MAPPING)
    ) as server:
        by_nhs = post(server.url, request(Identifiers(nhs_number="9434765919")))
        by_upn = post(server.url, request(Identifiers(upn="H801200001001")))
        by_former = post(server.url, request(Identifiers(upn="X801200001002")))
        by_other = post(server.url, request(Identifiers(nhs_number="9000000009")))
        # A local id never matches a UPN made of the same characters.
        crossed = post(server.url, request(Identifiers(local_id="H801200001001")))

    assert [r.record_id for r in by_nhs + by_upn + by_former] == ["LA-1"] * 3
    assert by_upn[0].identifiers.upn == "H801200001001"
    assert by_other == crossed == []


async def _set_upns(url: str, child: str, *, upn: str, former: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            children.update()
            .where(children.c.la_child_id == child)
            .values(upn=upn, former_upn=former)
        )
    await engine.dispose()


def test_demographic_search_finds_what_the_in_memory_index_finds(database_url):
    write(database_url, RECORDS)
    reference = FileBackend(RECORDS)
    queries = [described(r) for r in RECORDS if r.name is not None][:60]

    async def compare() -> list[tuple[list[str], list[str]]]:
        mapping = load_mapping(case_records.MAPPING)
        tables = await prepare(database_url, mapping)
        backend = SqlBackend(create_engine(database_url), mapping, tables)
        pairs = []
        for query in queries:
            sql = await backend.lookup(request(demographics=query))
            memory = await reference.lookup(request(demographics=query))
            pairs.append((sorted(r.record_id for r in sql), sorted(r.record_id for r in memory)))
        await backend.engine.dispose()
        return pairs

    pairs = asyncio.run(compare())

    assert all(sql == memory for sql, memory in pairs)
    assert sum(len(sql) for sql, _ in pairs) >= len(queries)  # each finds at least itself


def test_a_closed_plan_is_not_an_open_one(database_url):
    child = next(r for r in RECORDS if r.indicators and r.indicators.child_protection_plan)
    write(database_url, [child])
    asyncio.run(_close_plans(database_url, child.record_id, ended=date(2020, 1, 1)))

    with BackgroundServer(
        create_sql_app(database_url=database_url, mapping=case_records.MAPPING)
    ) as server:
        (record,) = post(server.url, request(Identifiers(local_id=child.record_id)))

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is False
    assert record.indicators.child_in_need is True


def _sqlite_file(tmp_path: Path, records) -> tuple[str, Path]:
    path = tmp_path / "case-records.db"
    url = f"sqlite+aiosqlite:///{path}"
    write(url, records)
    return url, path


def _set_raw(path: Path, sql: str, *params: object) -> None:
    """Write a value as a case system might: SQLite stores whatever it is given."""
    with sqlite3.connect(path) as db:
        db.execute(sql, params)


_SET_CHILD_COLUMN = {
    column: f"UPDATE children SET {column} = ? WHERE la_child_id = ?"  # noqa: S608 - ours
    for column in ("birth_date", "as_of")
}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("birth_date", "2015-02-30"),
        ("birth_date", "01/06/2015"),
        ("birth_date", 20150601),
        ("as_of", "yesterday"),
    ],
)
def test_a_row_whose_date_cannot_be_read_is_refused_by_name_never_answered_as_no_record(
    tmp_path, caplog, column, value
):
    bad, good = RECORDS[0], RECORDS[1]
    url, path = _sqlite_file(tmp_path, [bad, good])
    _set_raw(path, _SET_CHILD_COLUMN[column], value, bad.record_id)

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as server:
        served = post(server.url, request(Identifiers(local_id=good.record_id)))
        lookup = request(Identifiers(local_id=bad.record_id))
        refused = httpx.post(server.url + LOOKUP_PATH, content=lookup.model_dump_json())
        # By what the practitioner knows of the child: reached by name and postcode, refused,
        # never "no record" for a child the search missed.
        search = request(demographics=described(bad))
        searched = httpx.post(server.url + LOOKUP_PATH, content=search.model_dump_json())

    assert [r.record_id for r in served] == [good.record_id]
    for answer in (refused, searched):
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "INTERNAL"
    logged = [r.getMessage() for r in caplog.records if "sql_row_unreadable" in r.getMessage()]
    assert f"child={bad.record_id} column={column}" in logged[0]
    assert all(str(value) not in message for message in logged)


def test_an_unreadable_row_fails_only_a_search_it_is_a_candidate_of(tmp_path):
    """A sibling at the same address shares the unreadable child's postcode block: searching
    for the sibling finds the sibling; only a search the unreadable child could answer is
    refused."""
    bad = RECORDS[0]
    assert bad.name is not None
    assert RECORDS[1].name is not None
    sibling = RECORDS[1].model_copy(
        update={
            "address": bad.address,
            "name": RECORDS[1].name.model_copy(update={"given": "Zebedee", "family": "Quorn"}),
            "date_of_birth": date(2012, 1, 1),
        }
    )
    url, path = _sqlite_file(tmp_path, [bad, sibling])
    _set_raw(path, _SET_CHILD_COLUMN["birth_date"], "2015-02-30", bad.record_id)

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as server:
        found = post(server.url, request(demographics=described(sibling)))
        search = request(demographics=described(bad).model_copy(update={"date_of_birth": None}))
        refused = httpx.post(server.url + LOOKUP_PATH, content=search.model_dump_json())

    assert [r.record_id for r in found] == [sibling.record_id]
    assert refused.status_code == 500


def test_a_plan_whose_start_date_cannot_be_read_is_unknown_not_absent(tmp_path):
    child = next(r for r in RECORDS if r.indicators and r.indicators.child_protection_plan)
    url, path = _sqlite_file(tmp_path, [child])
    # '30/05/2024' compared as text is after '2026-...': the plan would read as not started.
    _set_raw(
        path,
        "UPDATE child_protection_plans SET start_date = '30/05/2024' WHERE la_child_id = ?",
        child.record_id,
    )

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as server:
        (record,) = post(server.url, request(Identifiers(local_id=child.record_id)))

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is None
    assert record.indicators.child_in_need is True


async def _close_plans(url: str, child: str, *, ended: date) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            child_protection_plans.update()
            .where(child_protection_plans.c.la_child_id == child)
            .values(start_date=date(2019, 1, 1), end_date=ended)
        )
    await engine.dispose()


def test_a_child_added_after_start_up_is_found_by_demographics_once_refreshed(database_url):
    newcomer, *others = RECORDS
    write(database_url, others)
    asyncio.run(_age_rows(database_url, hours=1))
    search = request(demographics=described(newcomer))

    with BackgroundServer(
        create_sql_app(database_url=database_url, mapping=case_records.MAPPING)
    ) as server:
        write(database_url, [newcomer])
        by_id = post(server.url, request(Identifiers(local_id=newcomer.record_id)))
        before = post(server.url, search)
        summary = asyncio.run(refresh_blocking_keys(database_url, case_records.MAPPING))
        after = post(server.url, search)

    assert [r.record_id for r in by_id] == [newcomer.record_id]  # identifiers: at once
    assert newcomer.record_id not in {r.record_id for r in before}
    assert newcomer.record_id in {r.record_id for r in after}
    assert not summary.full
    assert summary.children == 1  # only the rows changed since the last look


async def _age_rows(url: str, *, hours: int) -> None:
    """Make every child row look last changed `hours` ago, outside a refresh's overlap."""
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            children.update().values(updated_at=datetime.now(UTC) - timedelta(hours=hours))
        )
    await engine.dispose()


def test_a_serving_connector_refreshes_its_blocking_keys_by_itself(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'case-records.db'}"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        case_records.MAPPING.read_text().replace("refresh_seconds = 60", "refresh_seconds = 0.2")
    )
    newcomer, *others = RECORDS
    write(url, others)

    with BackgroundServer(create_sql_app(database_url=url, mapping=mapping)) as server:
        write(url, [newcomer])
        found = False
        for _ in range(50):
            found = newcomer.record_id in {
                r.record_id for r in post(server.url, request(demographics=described(newcomer)))
            }
            if found:
                break
            asyncio.run(asyncio.sleep(0.1))

    assert found


def test_the_connector_witnesses_the_gateways_audit_checkpoints(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'case-records.db'}"
    write(url, [])
    app = partial(create_sql_app, database_url=url, mapping=case_records.MAPPING)

    assert checkpoints_kept_by(app, tmp_path / "witness.db", "social_care") == [100, 200]


def test_the_profile_says_what_the_mapping_provides():
    profile = sql_profile(load_mapping(case_records.MAPPING))

    assert set(profile.provides) == set(REFERENCE_AGENCIES["social_care"].provides)
    assert profile.shield_authority
    assert profile.default_port == REFERENCE_AGENCIES["social_care"].default_port


# --- demographic search reads the blocks, not the table -------------------------------------

LARGE = 30_000


def _fill(path: Path) -> None:
    """LARGE children with names, dates and postcodes spread like a city's."""
    given = ["Amelia", "Oliver", "Isla", "Noah", "Ava", "Leo", "Mia", "Jack", "Ella", "Harry"]
    family = [f"Family{n:03d}" for n in range(400)]
    rows = [
        {
            "la_child_id": f"LA-{n:06d}",
            "given_name": given[n % len(given)],
            "family_name": family[(n * 7) % len(family)],
            "birth_date": date(2008, 1, 1) + timedelta(days=(n * 13) % 6500),
            "gender": "2",
            "address_line1": f"{n} High Street",
            "postcode": f"LS{n % 30} {n % 10}AB",
            "shielded": False,
            "updated_at": datetime.now(UTC),
        }
        for n in range(LARGE)
    ]

    async def load() -> None:
        url = f"sqlite+aiosqlite:///{path}"
        await case_records.create_tables(url)
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(insert(children), rows)
        await engine.dispose()

    asyncio.run(load())


def test_demographic_search_on_a_large_table_reads_indexes_only(tmp_path):
    path = tmp_path / "large.db"
    _fill(path)
    url = f"sqlite+aiosqlite:///{path}"
    issued: list[tuple[str, tuple]] = []

    async def search() -> list[ConnectorRecord]:
        mapping = load_mapping(case_records.MAPPING)
        await prepare(url, mapping)
        engine = create_engine(url)
        backend = SqlBackend(engine, mapping, await open_tables(engine, mapping))

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def record(conn, cursor, statement, parameters, context, executemany):
            issued.append((statement, tuple(parameters)))

        query = Demographics(
            given="Amelia", family="Family000", date_of_birth=date(2008, 1, 1), postcode="LS0 0AB"
        )
        found = await backend.lookup(request(demographics=query))
        await engine.dispose()
        return found

    found = asyncio.run(search())
    with sqlite3.connect(path) as db:
        plans = [
            " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", params))
            for statement, params in issued
            if statement.lstrip().upper().startswith("SELECT")
        ]

    assert "LA-000000" in {r.record_id for r in found}
    assert plans
    # SQLite says SCAN for a full table scan and SEARCH for an index lookup.
    assert not [plan for plan in plans if "SCAN children" in plan or "SCAN childlookup" in plan]
    assert all("SEARCH" in plan for plan in plans)


def test_an_unreachable_database_stops_start_up_without_showing_its_password():
    from connectors.serving import free_port
    from connectors.sql import DatabaseUnreachable

    url = f"postgresql+psycopg://lookup:s3cret@127.0.0.1:{free_port()}/cases"

    with pytest.raises(DatabaseUnreachable) as refused:
        create_sql_app(database_url=url, mapping=case_records.MAPPING)

    assert "127.0.0.1" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_replicas_take_turns_on_one_schemas_keys_but_not_on_another_schemas(postgres_schema):
    """A refresh skips its round while another replica refreshes the same blocking keys (the
    advisory lock of that table, in that schema), and only then: connectors whose tables are in
    other schemas of the database - chosen by their search path - refresh regardless."""
    import psycopg

    url, schema = postgres_schema
    other = f"{schema}_other"
    table = load_mapping(case_records.MAPPING).blocking.table
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(f'CREATE SCHEMA "{other}"')
    in_schema = {
        s: f"{url.replace('postgresql://', 'postgresql+psycopg://')}?options=-csearch_path%3D{s}"
        for s in (schema, other)
    }
    try:
        for database_url in in_schema.values():
            write(database_url, RECORDS[:3])
        with psycopg.connect(url, autocommit=True) as replica:  # refreshing `schema` meanwhile
            replica.execute(
                "SELECT pg_advisory_lock(hashtext(%s))", (f"childlookup:{schema}:{table}",)
            )
            held = asyncio.run(refresh_blocking_keys(in_schema[schema], case_records.MAPPING))
            free = asyncio.run(refresh_blocking_keys(in_schema[other], case_records.MAPPING))
        after = asyncio.run(refresh_blocking_keys(in_schema[schema], case_records.MAPPING))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
    assert held.skipped
    assert not free.skipped
    assert free.children == 3
    assert not after.skipped
