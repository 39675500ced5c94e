"""Loading statutory returns into the case records schema: a CIN census XML file and SSDA903
CSV files, as snapshots whose reference date the records then carry, re-importable safely, and
refused with line-and-field errors that never quote a child's data."""

import asyncio
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
from connectors.sql import create_engine, create_sql_app
from connectors.sql import la_case_records as case_records
from connectors.sql.la_case_records import ReturnFileError
from connectors.sql.la_case_records.schema import (
    child_protection_plans,
    children,
    cin_episodes,
    looked_after_episodes,
    section47_enquiries,
)

UPN = "H801200001001"
FORMER_UPN = "X801200001002"


def cin_child(
    child_id: str, *, cpp_end: str = "", upn: str = UPN, former: str = FORMER_UPN, born="2015-03-27"
) -> str:
    end = f"<CPPendDate>{cpp_end}</CPPendDate>" if cpp_end else ""
    return f"""
        <Child>
            <ChildIdentifiers>
                <LAchildID>{child_id}</LAchildID>
                <UPN>{upn}</UPN>
                <FormerUPN>{former}</FormerUPN>
                <PersonBirthDate>{born}</PersonBirthDate>
                <Sex>2</Sex>
            </ChildIdentifiers>
            <CINdetails>
                <CINreferralDate>2024-10-06</CINreferralDate>
                <ReferralSource>1A</ReferralSource>
                <PrimaryNeedCode>N1</PrimaryNeedCode>
                <Section47>
                    <S47ActualStartDate>2024-10-20</S47ActualStartDate>
                    <ICPCnotRequired>false</ICPCnotRequired>
                </Section47>
                <ChildProtectionPlans>
                    <CPPstartDate>2024-11-02</CPPstartDate>{end}
                    <InitialCategoryOfAbuse>NEG</InitialCategoryOfAbuse>
                </ChildProtectionPlans>
            </CINdetails>
        </Child>"""


def census(*children_xml: str, reference: str = "2025-03-31") -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Message>
    <Header>
        <CollectionDetails>
            <Collection>CIN</Collection>
            <Year>2025</Year>
            <ReferenceDate>{reference}</ReferenceDate>
        </CollectionDetails>
    </Header>
    <Children>{"".join(children_xml)}
    </Children>
</Message>
"""


HEADER = "CHILD,SEX,DOB,ETHNIC,UPN,MOTHER,MC_DOB\nC903-1,1,14/02/2012,WBRI,{upn},,\n"
EPISODES = (
    "CHILD,DECOM,RNE,LS,CIN,PLACE,PLACE_PROVIDER,DEC,REC,REASON_PLACE_CHANGE,HOME_POST,PL_POST,URN\n"
    "C903-1,01/04/2023,S,C2,N1,U3,PR1,10/09/2023,E11,,LS6,LS7,\n"
    "C903-1,10/09/2023,P,C2,N1,U4,PR1,,,CARPL,LS6,LS8,\n"
)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'case-records.db'}"


def rows(url: str, table) -> list[dict]:
    async def read() -> list[dict]:
        engine = create_engine(url)
        async with engine.connect() as connection:
            found = [dict(r._mapping) for r in await connection.execute(table.select())]
        await engine.dispose()
        return found

    return asyncio.run(read())


def lookup(server_url: str, identifiers: Identifiers):
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=10),
        purpose="CHILD_PROTECTION_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA-TEST"),
        identifiers=identifiers,
        fields=[FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER, FieldId.CHILD_IN_NEED],
    )
    response = httpx.post(server_url + LOOKUP_PATH, content=request.model_dump_json(), timeout=10)
    return LookupResponse.model_validate_json(response.content).records


def test_a_census_child_is_served_with_the_census_reference_date_as_of(tmp_path, url):
    path = tmp_path / "cin.xml"
    path.write_text(
        census(cin_child("DFE-1"), cin_child("DFE-2", cpp_end="2025-01-15", upn="", former=""))
    )

    summary = asyncio.run(case_records.import_cin_census(url, path))
    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        (open_plan,) = lookup(s.url, Identifiers(upn=FORMER_UPN))
        (ended_plan,) = lookup(s.url, Identifiers(local_id="DFE-2"))

    assert (summary.children, summary.created, summary.reference_date) == (2, 2, date(2025, 3, 31))
    assert summary.rows == {
        "cin_episodes": 2,
        "child_protection_plans": 2,
        "section47_enquiries": 2,
    }
    assert open_plan.record_id == "DFE-1"
    assert open_plan.as_of == datetime(2025, 3, 31, tzinfo=UTC)
    assert open_plan.indicators is not None
    assert open_plan.indicators.child_protection_plan is True
    assert open_plan.indicators.child_in_need is True
    assert ended_plan.indicators is not None
    assert ended_plan.indicators.child_protection_plan is False
    # Returns carry no names: the child is served by identifier until the LA's system names them.
    assert open_plan.name is None


def test_importing_the_same_census_twice_leaves_what_importing_it_once_did(tmp_path, url):
    path = tmp_path / "cin.xml"
    path.write_text(census(cin_child("DFE-1")))

    asyncio.run(case_records.import_cin_census(url, path))
    once = [rows(url, t) for t in (cin_episodes, child_protection_plans, section47_enquiries)]
    again = asyncio.run(case_records.import_cin_census(url, path))
    twice = [rows(url, t) for t in (cin_episodes, child_protection_plans, section47_enquiries)]

    strip = lambda tables: [[{**r, "id": None} for r in table] for table in tables]  # noqa: E731
    assert strip(twice) == strip(once)
    assert [len(t) for t in twice] == [1, 1, 1]
    assert again.created == 0


def test_an_import_keeps_what_the_authoritys_own_system_wrote(tmp_path, url):
    asyncio.run(case_records.create_tables(url))

    async def named_child() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                children.insert().values(
                    la_child_id="DFE-1",
                    given_name="Amelia",
                    family_name="Hart",
                    birth_date=date(2015, 3, 28),
                    shielded=True,
                    updated_at=datetime.now(UTC),
                )
            )
        await engine.dispose()

    asyncio.run(named_child())
    path = tmp_path / "cin.xml"
    path.write_text(census(cin_child("DFE-1", born="2015-03-27")))

    asyncio.run(case_records.import_cin_census(url, path))
    (child,) = rows(url, children)

    assert (child["given_name"], child["family_name"], child["shielded"]) == (
        "Amelia",
        "Hart",
        True,
    )
    assert child["birth_date"] == date(2015, 3, 28)  # the case system's, not the snapshot's
    assert child["upn"] == UPN  # an empty column is filled


def test_ssda903_episodes_make_a_child_looked_after_as_of_the_year_end(tmp_path, url):
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    header.write_text(HEADER.format(upn=UPN))
    episodes.write_text(EPISODES)

    summary = asyncio.run(
        case_records.import_ssda903(url, header, episodes, reference_date=date(2024, 3, 31))
    )
    asyncio.run(
        case_records.import_ssda903(url, header, episodes, reference_date=date(2024, 3, 31))
    )
    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        (record,) = lookup(s.url, Identifiers(upn=UPN))

    stored = sorted(rows(url, looked_after_episodes), key=lambda r: r["start_date"])
    assert summary.rows == {"looked_after_episodes": 2}
    assert [(r["start_date"], r["end_date"], r["placement_type"]) for r in stored] == [
        (date(2023, 4, 1), date(2023, 9, 10), "U3"),
        (date(2023, 9, 10), None, "U4"),
    ]
    assert record.record_id == "C903-1"
    assert record.indicators is not None
    assert record.indicators.looked_after is True
    assert record.as_of == datetime(2024, 3, 31, tzinfo=UTC)


# --- malformed files: refused whole, every problem placed, no child data echoed -------------


def test_a_malformed_census_is_refused_naming_lines_and_elements_but_no_values(tmp_path, url):
    bad = cin_child("DFE-1").replace("2024-11-02", "02/11/2024")
    bad_sex = cin_child("DFE-2").replace("<Sex>2</Sex>", "<Sex>F</Sex>")
    no_id = cin_child("").replace("<LAchildID></LAchildID>", "")
    path = tmp_path / "cin.xml"
    text = census(bad, bad_sex, no_id)
    path.write_text(text)

    with pytest.raises(ReturnFileError) as refused:
        asyncio.run(case_records.import_cin_census(url, path))

    message = str(refused.value)
    lines = text.splitlines()
    cpp_line = next(n for n, line in enumerate(lines, 1) if "02/11/2024" in line)
    plan = "Children/Child[1]/CINdetails[1]/ChildProtectionPlans[1]"
    assert f"cin.xml:{cpp_line}: {plan}/CPPstartDate: not a date (YYYY-MM-DD)" in message
    assert "Child[2]/ChildIdentifiers/Sex: not a sex code" in message
    assert "Child[3]/ChildIdentifiers/LAchildID: missing LA child id" in message
    for value in ("02/11/2024", "DFE-1", "DFE-2", UPN, "2015-03-27"):
        assert value not in message
    database = Path(url.removeprefix("sqlite+aiosqlite:///"))
    assert not database.exists() or rows(url, children) == []


def test_a_census_that_is_not_well_formed_xml_is_refused_with_its_line(tmp_path, url):
    path = tmp_path / "cin.xml"
    path.write_text(census(cin_child("DFE-1")).replace("</Sex>", "</Gender>"))

    with pytest.raises(ReturnFileError, match=r"cin\.xml:\d+: not well-formed XML"):
        asyncio.run(case_records.import_cin_census(url, path))


def test_a_census_with_a_document_type_is_refused(tmp_path, url):
    path = tmp_path / "cin.xml"
    path.write_text(
        census(cin_child("DFE-1")).replace(
            "<Message>", '<!DOCTYPE Message [<!ENTITY x "y">]>\n<Message>'
        )
    )

    with pytest.raises(ReturnFileError, match="document type declaration is not allowed"):
        asyncio.run(case_records.import_cin_census(url, path))


def test_malformed_ssda903_rows_are_refused_by_file_line_and_column(tmp_path, url):
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    header.write_text(HEADER.format(upn=UPN))
    episodes.write_text(
        EPISODES
        + "C903-1,31/02/2024,S,C2,N1,U3,PR1,,,,LS6,LS7,\n"  # no 31 February
        + "C903-9,01/05/2024,S,C2,N1,U3,PR1,,,,LS6,LS7,\n"  # not in the header
        + "C903-1,01/06/2024,S\n"  # too few cells
        + "C903-1,01/07/2024,S,C2,N1,U3,PR1,01/01/2024,E11,,LS6,LS7,\n"  # ends before it starts
    )

    with pytest.raises(ReturnFileError) as refused:
        asyncio.run(
            case_records.import_ssda903(url, header, episodes, reference_date=date(2024, 3, 31))
        )

    problems = str(refused.value).splitlines()
    assert problems == [
        f"{episodes}:4: DECOM: not a date (dd/mm/yyyy)",
        f"{episodes}:5: CHILD: not in the header file",
        f"{episodes}:6: 3 cells where the header has 13",
        f"{episodes}:7: DEC: before DECOM",
    ]


def test_an_ssda903_header_missing_a_required_column_is_refused(tmp_path, url):
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    header.write_text("CHILD,SEX,ETHNIC\nC903-1,1,WBRI\n")
    episodes.write_text(EPISODES)

    with pytest.raises(ReturnFileError, match=r"header\.csv:1: missing columns: DOB"):
        asyncio.run(
            case_records.import_ssda903(url, header, episodes, reference_date=date(2024, 3, 31))
        )
