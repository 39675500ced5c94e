"""What the day's first fixes left at the edges: a former UPN another kept child holds as its own
(CTF and SQL connectors joined the two children), a plan with no start but an end long past read
as unknown, and a test package mirroring the policy's refused. Real components throughout."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.ctf import create_ctf_app, write_ctf
from connectors.protocol import LOOKUP_PATH, Identifiers
from connectors.serving import BackgroundServer
from connectors.sql import create_sql_app
from connectors.sql import la_case_records as case_records
from gateway.demo import reference_source
from gateway.policy import load_bundle
from tests.factories import POLICY_DIR
from tests.stack import running_gateway, serving
from tests.test_ctf_folder import put
from tests.test_flags_fail_closed import JULY, NEW, NORTH, OLD, PG_SCHEMA, SOUTH, _pupil
from tests.test_flags_fail_closed import MAPPING as FLAGS_MAPPING
from tests.test_flags_fail_closed import _lookup as _flags_lookup
from tests.test_flags_fail_closed import _record as _flags_record
from tests.test_flags_fail_closed import _serve as _flags_serve
from tests.test_sql_connector import RECORDS as SQL_RECORDS
from tests.test_sql_connector import write as sql_write

_BY_UPN = (
    "query($upn: String!) { child(identify: {upn: $upn}, purpose: SAFEGUARDING_ENQUIRY)"
    " { outcome records { source method score } child { school { urn } name { given } } } }"
)


def _lookup_by_upn(tmp_path: Path, folder: Path, upn: str) -> dict:
    apps = {"education": create_ctf_app(folder=folder)}
    with (
        serving(apps) as urls,
        running_gateway(
            tmp_path, [reference_source(name, u) for name, u in urls.items()]
        ) as gateway,
    ):
        token = gateway.token("social_worker", "LA-LEEDS")
        return gateway.post({"query": _BY_UPN, "variables": {"upn": upn}}, token).json()


# --- CTF: a FormerUPN naming another child --------------------------------------------------------


@pytest.mark.parametrize("files", ["two_files", "one_roll"])
def test_a_former_upn_naming_another_kept_child_never_joins_the_two_children(tmp_path, files):
    """Southgate keys Amelia's FormerUPN wrong: it is Ruby's UPN. The fix keeps Ruby's record
    (`_same_pupil` says they differ) but Amelia's record still claims Ruby's UPN as its former
    one, so a lookup by Ruby's UPN links Ruby's and Amelia's records as one child: two children
    merged in one answer (names, schools, contacts)."""
    folder = tmp_path / "ctf"
    folder.mkdir()
    ruby = _pupil(OLD, "Ruby", "Hart", date(2013, 1, 20))
    amelia = _pupil(NEW, "Amelia", "Hart", date(2015, 3, 7), former=OLD)
    if files == "two_files":
        put(folder, "north.xml", write_ctf([ruby], school=NORTH, created=JULY))
        put(folder, "south.xml", write_ctf([amelia], school=SOUTH, created=JULY + timedelta(30)))
    else:  # both on one roll: the school sent both as its pupils
        put(folder, "south.xml", write_ctf([amelia, ruby], school=SOUTH, created=JULY))

    body = _lookup_by_upn(tmp_path, folder, OLD)

    assert body.get("data"), body
    found = body["data"]["child"]
    # Ruby's record alone answers to her UPN: Amelia's (at Southgate) is another child's.
    assert len(found["records"]) == 1, body


# --- policy bundle: a test package of its own refused ---------------------------------------------


def test_tests_in_a_package_of_their_own_that_mirrors_the_policy_are_not_refused(tmp_path):
    """`package test.childlookup.release` is a package of its own (neither a policy package nor
    above or below one, and no policy module reads it), a common way to keep tests apart. The
    check reads each ending of the test package as a name a policy module might use for it, and
    `childlookup.release` - the policy's own package, named by its package line and by every
    module reading it - is one such ending: the whole policy is refused."""
    directory = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, directory)
    module = directory / "release_test.rego"
    source = module.read_text()
    module.write_text(
        source.replace("package childlookup.release_test", "package test.childlookup.release")
    )

    bundle = load_bundle(directory)

    assert "release_test.rego" in bundle.modules
    assert "release_test.rego" not in bundle.policy_modules


# --- SQL: a former UPN that is another child's current UPN in the same database ------------------


def test_a_social_care_database_holding_a_upn_as_one_childs_and_anothers_former_joins_neither(
    tmp_path,
):
    """One LA's case records: Ruby's row holds OLD as her UPN; Amelia's lists OLD as her former
    UPN (keyed wrong, or a UPN issued twice). Before former UPNs were matched, Amelia's record
    answering a lookup by OLD failed the source (RECORD_MISMATCH); now the gateway links both rows
    as one child: the answer for OLD merges Ruby with Amelia."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    first, second = SQL_RECORDS[0], SQL_RECORDS[1]
    ruby = first.model_copy(
        update={"record_id": "LA-1", "identifiers": Identifiers(upn=OLD, local_id="LA-1")}
    )
    amelia = second.model_copy(
        update={
            "record_id": "LA-2",
            "identifiers": Identifiers(upn=NEW, local_id="LA-2", former_upns=(OLD,)),
        }
    )
    sql_write(url, [ruby, amelia])
    apps = {"social_care": create_sql_app(database_url=url, mapping=case_records.MAPPING)}

    with (
        serving(apps) as urls,
        running_gateway(
            tmp_path, [reference_source(name, u) for name, u in urls.items()]
        ) as gateway,
    ):
        token = gateway.token("social_worker", "LA-LEEDS")
        body = gateway.post({"query": _BY_UPN, "variables": {"upn": OLD}}, token).json()

    assert body.get("data"), body
    found = body["data"]["child"]
    assert found["outcome"] != "FOUND" or len(found["records"]) == 1, body


# --- SQL: an old plan with no start date -------------------------------------------------------


def test_an_ended_plan_with_no_start_date_does_not_leave_the_status_unknown(tmp_path):
    """A plan ended in 2019 whose start was never entered (common in migrated case records): it
    is surely not in force - it ended. Since the no-start fix every such child's plan status
    is null (unknown) for good, whatever else the register says: practitioners are told the
    authority does not know whether the child is on a plan."""
    record = _flags_record(
        _flags_serve(tmp_path, "", "INSERT INTO cp_register VALUES (41, NULL, '2019-12-31')")
    )

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is False


def test_a_plan_that_starts_in_the_future_with_an_unreadable_end_is_not_in_force(tmp_path):
    record = _flags_record(
        _flags_serve(
            tmp_path, "", "INSERT INTO cp_register VALUES (41, '2999-01-01', '31/12/2999')"
        )
    )

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is False


def test_an_ended_plan_with_no_start_date_reads_alike_on_postgresql(tmp_path, postgres_schema):
    import psycopg

    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
        connection.execute(f'SET search_path TO "{schema}"')
        connection.execute(PG_SCHEMA)
        connection.execute("INSERT INTO cp_register VALUES (41, NULL, DATE '2019-12-31')")
    mapping = tmp_path / "mapping.toml"
    flags = 'shielded = { column = "shield", null = false }'
    mapping.write_text(f'schema = "{schema}"\n' + FLAGS_MAPPING.format(flags=flags))
    database = url.replace("postgresql://", "postgresql+psycopg://")
    app = create_sql_app(database_url=database, mapping=mapping)
    with BackgroundServer(app) as server:
        response = httpx.post(
            server.url + LOOKUP_PATH, content=_flags_lookup().model_dump_json(), timeout=10
        )

    record = _flags_record(response)
    assert record.indicators is not None
    assert record.indicators.child_protection_plan is False
