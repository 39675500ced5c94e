"""How the agency connectors read the flags and statuses that protect a child - shielding,
restriction, child protection plans, looked-after status - and whether one child's data can land
on another's record.

- SQL: a NULL in a mapped shield or restricted column, and a plan row with no start date, are
  never read as "clear"; a child surely on a plan is on it whatever another episode's date.
- FHIR CP-IS: a flag CP-IS marks inactive is no plan in force, whatever its period's end says.
- CTF: a newer pupil's `FormerUPN` never removes another child's record, and the answer does not
  depend on the order pupils are listed in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.flag import Flag

from connectors.ctf import write_ctf
from connectors.ctf.folder import CtfFolder
from connectors.fhir import CpisPlan, PlanKind, ResponsibleAuthority
from connectors.fhir.plans import indicators, involvements, plans_from_flags
from connectors.fhir.resources import flag_resource
from connectors.fhir.terminology import SNOMED_SYSTEM
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    FieldId,
    Identifiers,
    Indicators,
    LookupRequest,
    LookupResponse,
    PersonName,
    School,
)
from connectors.serving import BackgroundServer
from connectors.sql import create_sql_app
from connectors.sql.mapping import MappingError, load_mapping
from tests.test_ctf_folder import put
from tests.test_ctf_reader import upn
from tests.test_fhir_hostile_server import (
    A,
    HostileServer,
    Stack,
    connected,
    plan_flag,
    records,
    searchset,
)

# --- SQL: an agency's own schema, its nullable columns --------------------------------------------

NHS = "9434765919"

SCHEMA = """
CREATE TABLE person (id INTEGER PRIMARY KEY, nhs TEXT, forename TEXT, surname TEXT, dob DATE,
                     street TEXT, pcode TEXT, restriction TEXT, shield BOOLEAN, pds_r BOOLEAN);
CREATE TABLE cp_register (person_id INTEGER, registered DATE, deregistered DATE);
INSERT INTO person VALUES (41, '9434765919', 'Amelia', 'Hart', '2015-03-07', '1 High St',
                           'LS6 3AB', NULL, NULL, NULL);
"""

MAPPING = """
[child]
table = "person"
key = "id"
nhs_number = "nhs"
date_of_birth = "dob"
[child.name]
given = "forename"
family = "surname"
[child.address]
lines = ["street"]
postcode = "pcode"
[child.flags]
{flags}
[indicators.child_protection_plan]
table = "cp_register"
child = "person_id"
start = "registered"
end = "deregistered"
"""


def _lookup() -> LookupRequest:
    return LookupRequest(
        request_id="req-review-flags",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA-TEST"),
        identifiers=Identifiers(nhs_number=NHS),
        fields=list(FieldId),
    )


def _serve(tmp_path: Path, flags: str, *sql: str) -> httpx.Response:
    db = tmp_path / "agency.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(SCHEMA)
        for statement in sql:
            connection.execute(statement)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING.format(flags=flags))
    app = create_sql_app(database_url=f"sqlite+aiosqlite:///{db}", mapping=mapping)
    with BackgroundServer(app) as server:
        return httpx.post(server.url + LOOKUP_PATH, content=_lookup().model_dump_json(), timeout=10)


def _record(response: httpx.Response) -> ConnectorRecord:
    assert response.status_code == 200, response.text
    (record,) = LookupResponse.model_validate_json(response.content).records
    return record


def _refused(response: httpx.Response) -> bool:
    return response.status_code == 500 and response.json()["error"]["code"] == "INTERNAL"


@pytest.mark.parametrize(
    ("flag", "flags"),
    [
        ("shielded", 'shielded = { column = "restriction", in = ["S", "X"] }'),
        ("shielded", 'shielded = "shield"'),
        ("restricted", 'restricted = "pds_r"'),
        ("restricted", 'restricted = { column = "restriction", in = ["R"] }'),
    ],
)
def test_a_null_in_a_mapped_shield_or_restriction_column_is_never_read_as_clear(
    tmp_path, flag, flags
):
    """The row's flag column is NULL: the agency has not said the child is not shielded. Read
    as "not shielded", the child's address would be released to every caller."""
    response = _serve(tmp_path, flags)

    if response.status_code == 200:
        record = _record(response)
        assert getattr(record.flags, flag) is True, "a NULL flag was read as clear"
    else:
        assert _refused(response)


@pytest.mark.parametrize(
    ("flags", "shielded"),
    [
        ('shielded = { column = "restriction", in = ["S"], null = false }', False),
        ('shielded = { column = "shield", null = false }', False),
        ('shielded = { column = "shield", null = true }', True),
        ('shielded = { column = "restriction", in = ["S"], null = true }', True),
    ],
)
def test_a_mapping_that_says_what_null_means_is_read_by_it(tmp_path, flags, shielded):
    record = _record(_serve(tmp_path, flags))

    assert record.flags.shielded is shielded


def test_a_null_flag_column_refuses_the_lookup_by_name_when_the_mapping_is_silent(tmp_path):
    response = _serve(tmp_path, 'shielded = "shield"')

    assert _refused(response)


def test_a_nullable_flag_column_with_null_unstated_is_named_at_start_up(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="childlookup.connector.sql"):
        _serve(tmp_path, 'shielded = "shield"\nrestricted = { column = "pds_r", null = false }')

    warned = [r.getMessage() for r in caplog.records if "sql_flag_null_unstated" in r.getMessage()]
    assert warned == ["sql_flag_null_unstated key=child.flags.shielded column=shield"]


def test_a_set_flag_column_is_read_as_before(tmp_path):
    set_flag = "UPDATE person SET restriction = 'S', shield = 1, pds_r = 0"
    record = _record(
        _serve(
            tmp_path,
            'shielded = { column = "restriction", in = ["S"] }\nrestricted = "pds_r"',
            set_flag,
        )
    )

    assert (record.flags.shielded, record.flags.restricted) == (True, False)


@pytest.mark.parametrize(
    "null",
    ['"no"', "1", '["false"]'],
)
def test_what_null_means_must_be_true_or_false(tmp_path, null):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING.format(flags=f'shielded = {{ column = "shield", null = {null} }}'))

    with pytest.raises(MappingError, match=r"child\.flags\.shielded"):
        load_mapping(mapping)


def test_a_plan_row_with_no_start_date_is_not_read_as_no_plan(tmp_path):
    """The register holds a plan for the child whose start was never entered: it may be in
    force. Read as "no plan", no owner is notified and the practitioner is told there is none."""
    record = _record(
        _serve(
            tmp_path,
            "",
            "INSERT INTO cp_register VALUES (41, NULL, NULL)",
        )
    )

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is not False


def test_a_child_surely_on_a_plan_is_on_it_whatever_an_old_episodes_date_says(tmp_path):
    """One plan open today, one old one whose end date is no date: the child is surely on a
    plan. Only a true indicator tells the owning authority of the lookup (release.rego,
    `notified_for_status`), so reading it as unknown silently drops the notification."""
    record = _record(
        _serve(
            tmp_path,
            "",
            "INSERT INTO cp_register VALUES (41, '2025-01-01', NULL)",
            "INSERT INTO cp_register VALUES (41, '2019-01-01', '31/12/2019')",
        )
    )

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is True


def test_a_child_with_only_an_unreadable_episode_date_is_still_unknown(tmp_path):
    record = _record(
        _serve(
            tmp_path,
            "",
            "INSERT INTO cp_register VALUES (41, '2019-01-01', '31/12/2019')",
        )
    )

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is None


PG_SCHEMA = """
CREATE TABLE person (id INTEGER PRIMARY KEY, nhs TEXT, forename TEXT, surname TEXT, dob DATE,
                     street TEXT, pcode TEXT, restriction TEXT, shield BOOLEAN, pds_r BOOLEAN);
CREATE TABLE cp_register (person_id INTEGER, registered DATE, deregistered DATE);
INSERT INTO person VALUES (41, '9434765919', 'Amelia', 'Hart', '2015-03-07', '1 High St',
                           'LS6 3AB', NULL, NULL, NULL);
"""


@pytest.mark.parametrize(
    ("flags", "plans", "expected"),
    [
        ('shielded = "shield"', [], "refused"),
        ('shielded = { column = "shield", null = false }', ["(41, NULL, NULL)"], None),
        (
            'shielded = { column = "shield", null = false }',
            ["(41, NULL, NULL)", "(41, DATE '2025-01-01', NULL)"],
            True,
        ),
        ('shielded = { column = "shield", null = false }', ["(41, DATE '2019-01-01', NULL)"], True),
        (
            'shielded = { column = "shield", null = false }',
            ["(41, DATE '2019-01-01', DATE '2020-01-01')"],
            False,
        ),
    ],
)
def test_null_flags_and_plan_starts_read_alike_on_postgresql(
    tmp_path, postgres_schema, flags, plans, expected
):
    import psycopg

    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
        connection.execute(f'SET search_path TO "{schema}"')
        connection.execute(PG_SCHEMA)
        for values in plans:
            connection.execute(f"INSERT INTO cp_register VALUES {values}")  # noqa: S608 - ours
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(f'schema = "{schema}"\n' + MAPPING.format(flags=flags))
    database = url.replace("postgresql://", "postgresql+psycopg://")
    app = create_sql_app(database_url=database, mapping=mapping)
    with BackgroundServer(app) as server:
        response = httpx.post(
            server.url + LOOKUP_PATH, content=_lookup().model_dump_json(), timeout=10
        )

    if expected == "refused":
        assert _refused(response)
        return
    record = _record(response)
    assert record.flags.shielded is False
    assert record.indicators is not None
    assert record.indicators.child_protection_plan is expected


# --- FHIR CP-IS: status and period ---------------------------------------------------------------

TODAY = date.today()
AUTHORITY = ResponsibleAuthority("Leeds City Council", "E08000035", "0113 222 4401")


def _flag(status: str, **period: str) -> Flag:
    resource = flag_resource(CpisPlan(NHS, PlanKind.CHILD_PROTECTION, None, AUTHORITY), "f1")
    resource["status"] = status
    resource["period"] = period
    return Flag.model_validate(resource)


def test_a_flag_cp_is_marked_inactive_is_no_plan_in_force_whatever_its_end_date():
    """CP-IS ended the plan early: the flag is inactive, its period still names the end once
    planned. Counted as in force, the child is shown on a child protection plan it is not on and
    the authority is told of a lookup as if it were."""
    future = (TODAY + timedelta(days=90)).isoformat()
    plans = plans_from_flags([_flag("inactive", start="2024-05-01", end=future)], NHS)

    shown = indicators(plans, TODAY)

    assert shown.child_protection_plan is False
    assert involvements(plans, TODAY) == []


def test_an_active_flag_still_in_its_period_is_a_plan_in_force():
    future = (TODAY + timedelta(days=90)).isoformat()
    plans = plans_from_flags([_flag("active", start="2024-05-01", end=future)], NHS)

    assert indicators(plans, TODAY).child_protection_plan is True
    assert [i.organisation for i in involvements(plans, TODAY)] == [AUTHORITY.name]


@pytest.fixture(scope="module")
def cpis_stack() -> Iterator[Stack]:
    """The FHIR connector in front of a CP-IS-shaped server answering what each test sets."""
    server = HostileServer()
    server.reset()
    with BackgroundServer(server.app()) as fhir:
        yield from connected((server, fhir.url))


@pytest.fixture
def stack(cpis_stack: Stack) -> Stack:
    cpis_stack.server.reset()
    return cpis_stack


def test_over_http_an_inactive_flag_with_a_future_end_is_no_plan_and_no_involvement(stack):
    future = (date.today() + timedelta(days=90)).isoformat()
    over = plan_flag(A, status="inactive", period={"start": "2024-05-01", "end": future})
    stack.server.answers["flags"] = searchset(over)

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=False, looked_after=False)
    assert record.involvements == []


UNREAD_CODE = {"coding": [{"system": SNOMED_SYSTEM, "code": "999999999999999"}]}


def test_a_cp_is_flag_whose_code_cannot_be_read_leaves_the_statuses_unknown_not_false(stack):
    """CP-IS answers one active flag for the child, coded as this connector does not know (the
    docs warn the live profile may code plans differently). Skipped, it becomes "no child
    protection plan, not looked after" - the plan silently read as absent, no owner told."""
    stack.server.answers["flags"] = searchset(plan_flag(A, code=UNREAD_CODE))

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=None, looked_after=None)


def test_an_unread_flag_leaves_a_plan_surely_in_force_true(stack):
    stack.server.answers["flags"] = searchset(plan_flag(A), plan_flag(A, code=UNREAD_CODE))

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=True, looked_after=None)


@pytest.mark.parametrize("status", ["inactive", "entered-in-error"])
def test_an_unread_flag_that_is_over_or_in_error_says_nothing(stack, status):
    stack.server.answers["flags"] = searchset(plan_flag(A, code=UNREAD_CODE, status=status))

    [record] = records(stack.lookup(nhs=A))

    assert record.indicators == Indicators(child_protection_plan=False, looked_after=False)


# --- CTF: a former UPN never drops another child -------------------------------------------------

NORTH = School(urn="107001", name="Northtown Primary")
SOUTH = School(urn="108002", name="Southgate Academy")
JULY = datetime(2025, 7, 1, 9, tzinfo=UTC)
OLD, NEW = upn("383200701009"), upn("383200901001")


def _pupil(
    number: str,
    given: str,
    family: str,
    born: date,
    former: str | None = None,
) -> ConnectorRecord:
    return ConnectorRecord(
        record_id=number,
        identifiers=Identifiers(upn=number, former_upns=(former,) if former else None),
        name=PersonName(given=given, family=family),
        date_of_birth=born,
        as_of=JULY,
    )


def _served(folder: Path) -> dict[str, str]:
    index = CtfFolder(folder).refresh()
    assert index is not None
    return {
        record.record_id: f"{record.name.given if record.name else ''}" for record in index._records
    }


def test_a_newer_pupil_whose_former_upn_is_another_childs_does_not_remove_that_child(tmp_path):
    """Southgate keys a FormerUPN wrong (or it names a different Hart): Ruby's record, under the
    UPN typed, vanishes from the education source - she is "no record" to every practitioner."""
    ruby = _pupil(OLD, "Ruby", "Hart", date(2013, 1, 20))
    amelia = _pupil(NEW, "Amelia", "Hart", date(2015, 3, 7), former=OLD)
    put(tmp_path, "north.xml", write_ctf([ruby], school=NORTH, created=JULY))
    later = JULY + timedelta(days=30)
    put(tmp_path, "south.xml", write_ctf([amelia], school=SOUTH, created=later))

    shown = _served(tmp_path)

    assert shown == {OLD: "Ruby", NEW: "Amelia"}


@pytest.mark.parametrize("order", ["other_first", "renumbered_first"])
def test_within_one_file_the_pupils_served_do_not_depend_on_their_order(tmp_path, order):
    """Two pupils on one roll: one's FormerUPN names the other's UPN. Both are on the roll the
    school sent; the answer must not change with the order the school listed them in."""
    ruby = _pupil(OLD, "Ruby", "Hart", date(2013, 1, 20))
    amelia = _pupil(NEW, "Amelia", "Hart", date(2015, 3, 7), former=OLD)
    pupils = [ruby, amelia] if order == "other_first" else [amelia, ruby]
    put(tmp_path, "north.xml", write_ctf(pupils, school=NORTH, created=JULY))

    shown = _served(tmp_path)

    assert shown == {OLD: "Ruby", NEW: "Amelia"}


def test_the_same_childs_newer_record_under_a_new_upn_still_replaces_the_old(tmp_path):
    """A temporary UPN replaced by a permanent one: same child (name and date of birth), the old
    record goes."""
    before = _pupil(OLD, "Amelia", "Hart", date(2015, 3, 7))
    after = _pupil(NEW, "Amelia", "Hart", date(2015, 3, 7), former=OLD)
    put(tmp_path, "north.xml", write_ctf([before], school=NORTH, created=JULY))
    later = JULY + timedelta(days=30)
    put(tmp_path, "south.xml", write_ctf([after], school=SOUTH, created=later))

    assert _served(tmp_path) == {NEW: "Amelia"}


def test_a_former_upn_naming_a_child_born_another_day_does_not_remove_them(tmp_path):
    """Same name, different date of birth: not the same-child evidence a merge needs."""
    other = _pupil(OLD, "Amelia", "Hart", date(2016, 9, 1))
    after = _pupil(NEW, "Amelia", "Hart", date(2015, 3, 7), former=OLD)
    put(tmp_path, "north.xml", write_ctf([other], school=NORTH, created=JULY))
    later = JULY + timedelta(days=30)
    put(tmp_path, "south.xml", write_ctf([after], school=SOUTH, created=later))

    assert _served(tmp_path) == {OLD: "Amelia", NEW: "Amelia"}
