"""The mapping file: an agency's own tables configured, not coded - and every mistake in it
named by its key, when the file is read or when the connector starts."""

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import BackgroundServer
from connectors.sql import MappingError, create_sql_app, load_mapping
from connectors.sql import la_case_records as case_records

WORKED = case_records.MAPPING.read_text()


def mapping_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return path


def test_the_worked_mapping_loads():
    mapping = load_mapping(case_records.MAPPING)

    assert mapping.child.table == "children"
    assert set(mapping.episodes()) == {
        FieldId.CHILD_PROTECTION_PLAN,
        FieldId.LOOKED_AFTER,
        FieldId.CHILD_IN_NEED,
        FieldId.EARLY_HELP,
    }


def test_a_misspelt_key_is_named(tmp_path):
    path = mapping_file(tmp_path, WORKED.replace('given = "given_name"', 'gven = "given_name"'))

    with pytest.raises(MappingError) as refused:
        load_mapping(path)

    assert "child.name.given: Field required" in str(refused.value)
    assert "child.name.gven: Extra inputs are not permitted" in str(refused.value)


def test_an_unknown_sex_value_is_named_by_its_key(tmp_path):
    path = mapping_file(tmp_path, WORKED.replace('"1" = "male"', '"1" = "boy"'))

    with pytest.raises(MappingError, match=r"child\.sex\.values\.1"):
        load_mapping(path)


def test_sql_in_a_column_name_is_refused(tmp_path):
    path = mapping_file(tmp_path, WORKED.replace('key = "la_child_id"', 'key = "id; DROP TABLE x"'))

    with pytest.raises(MappingError, match=r"child\.key"):
        load_mapping(path)


def test_a_file_that_is_not_toml_is_refused_naming_it(tmp_path):
    path = mapping_file(tmp_path, "[child\n")

    with pytest.raises(MappingError, match=r"mapping\.toml: not TOML"):
        load_mapping(path)


def test_the_blocking_table_cannot_be_an_agency_table(tmp_path):
    path = mapping_file(
        tmp_path, WORKED.replace('table = "childlookup_blocking_keys"', 'table = "carers"')
    )

    with pytest.raises(MappingError, match=r"blocking\.table"):
        load_mapping(path)


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'case-records.db'}"
    import asyncio

    asyncio.run(case_records.create_tables(url))
    return url


def test_a_column_the_database_lacks_stops_start_up_naming_the_key(tmp_path, database):
    path = mapping_file(
        tmp_path,
        WORKED.replace('given = "given_name"', 'given = "forename"').replace(
            'start = "referral_date"', 'start = "referred_on"'
        ),
    )

    with pytest.raises(MappingError) as refused:
        create_sql_app(database_url=database, mapping=path)

    message = str(refused.value)
    assert "child.name.given names column 'forename', which table 'children' does not have" in (
        message
    )
    assert "indicators.child_in_need.start names column 'referred_on'" in message


def test_a_date_key_on_a_text_column_stops_start_up_naming_the_key(tmp_path, database):
    # Else every date of birth would read as none, and every plan start compare as text.
    path = mapping_file(
        tmp_path,
        WORKED.replace('date_of_birth = "birth_date"', 'date_of_birth = "family_name"'),
    )

    with pytest.raises(MappingError, match=r"child\.date_of_birth names column 'family_name'"):
        create_sql_app(database_url=database, mapping=path)


def test_a_table_the_database_lacks_stops_start_up_naming_it(tmp_path, database):
    path = mapping_file(tmp_path, WORKED.replace('table = "allocations"', 'table = "workers"'))

    with pytest.raises(
        MappingError, match=r"mapped tables not found in the database: \['workers'\]"
    ):
        create_sql_app(database_url=database, mapping=path)


# An agency whose system looks nothing like the worked schema: integer ids, a restriction code
# instead of a shielded column, one current-cases table, and no column naming the service.
OTHER_SCHEMA = """
CREATE TABLE person (id INTEGER PRIMARY KEY, nhs TEXT, forename TEXT, surname TEXT, dob DATE,
                     sex_code INTEGER, street TEXT, pcode TEXT, restriction TEXT);
CREATE INDEX person_nhs ON person (nhs);
CREATE TABLE cp_register (person_id INTEGER, registered DATE);
CREATE TABLE key_worker (person_id INTEGER, worker TEXT, phone TEXT);
INSERT INTO person VALUES (41, '9434765919', 'Amelia', 'Hart', '2015-03-07', 2, '1 High St',
                           'LS6 3AB', 'S');
INSERT INTO cp_register VALUES (41, '2025-01-01');
INSERT INTO key_worker VALUES (41, 'Sam Patel', '01632 960001');
"""

OTHER_MAPPING = """
[child]
table = "person"
key = "id"
nhs_number = "nhs"
date_of_birth = "dob"
[child.name]
given = "forename"
family = "surname"
[child.sex]
column = "sex_code"
values = { "1" = "male", "2" = "female" }
[child.address]
lines = ["street"]
postcode = "pcode"
[child.flags]
shielded = { column = "restriction", in = ["S", "X"] }
[indicators.child_protection_plan]
table = "cp_register"
child = "person_id"
start = "registered"
[[involvements]]
table = "key_worker"
child = "person_id"
service = { value = "Children's social care" }
organisation = { value = "Northtown Children's Services" }
practitioner_name = "worker"
practitioner_phone = "phone"
lead = { column = "worker", in = ["Sam Patel"] }
"""


def test_an_agencys_own_schema_is_served_by_configuration_alone(tmp_path):
    db = tmp_path / "agency.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(OTHER_SCHEMA)
    path = mapping_file(tmp_path, OTHER_MAPPING)
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA-TEST"),
        identifiers=Identifiers(nhs_number="9434765919"),
        fields=list(FieldId),
    )

    app = create_sql_app(database_url=f"sqlite+aiosqlite:///{db}", mapping=path)
    with BackgroundServer(app) as server:
        response = httpx.post(
            server.url + LOOKUP_PATH, content=request.model_dump_json(), timeout=10
        )

    (record,) = LookupResponse.model_validate_json(response.content).records
    assert record.record_id == record.identifiers.local_id == "41"
    assert record.date_of_birth == date(2015, 3, 7)
    assert record.flags.shielded is True
    assert record.indicators is not None
    assert record.indicators.child_protection_plan is True
    assert record.indicators.looked_after is None  # not mapped: unknown, not "no"
    (involvement,) = record.involvements or []
    assert involvement.service == "Children's social care"
    assert involvement.practitioner is not None
    assert involvement.practitioner.name == "Sam Patel"
    assert involvement.lead is True
