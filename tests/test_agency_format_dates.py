"""The agency-format connectors at real-world edges: a CP-IS plan judged on England's
date whatever the server's own zone, a CTF pupil whose school recorded their leaving, and a child
whose answer rests on two statutory returns of different years."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from connectors.ctf import read_ctf
from connectors.fhir import CpisPlan, PlanKind
from connectors.fhir.resources import flag_resource
from connectors.protocol import Identifiers, School
from connectors.serving import BackgroundServer
from connectors.sql import create_sql_app, today_in_england
from connectors.sql import la_case_records as case_records
from tests.test_ctf_reader import CONTACTS, FULL_PUPIL, ctf
from tests.test_fhir_hostile_server import (
    AUTHORITY,
    A,
    HostileServer,
    Stack,
    connected,
    records,
    searchset,
)
from tests.test_sql_import import EPISODES, HEADER, UPN, census, cin_child, lookup
from tests.test_sql_import import url as url

# --- CP-IS: "today" is England's date, not the server's ----------------------------------------


@pytest.fixture
def cpis(zone_apart: date) -> Iterator[tuple[Stack, date]]:
    server = HostileServer()
    server.reset()
    with BackgroundServer(server.app()) as fhir:
        for stack in connected((server, fhir.url)):
            yield stack, zone_apart


def test_a_cp_is_plan_is_judged_on_englands_date_not_the_servers(cpis):
    stack, local = cpis
    england = today_in_england()
    if local < england:  # the server still in yesterday: a plan that ended then is over
        plan = CpisPlan(A, PlanKind.CHILD_PROTECTION, date(2024, 5, 1), AUTHORITY, end=local)
    else:  # the server already in tomorrow: a plan starting then has not started
        plan = CpisPlan(A, PlanKind.CHILD_PROTECTION, local, AUTHORITY)
    flag = flag_resource(plan, "f1") | {"status": "active"}
    stack.server.answers["flags"] = searchset(flag)

    (record,) = records(stack.lookup(nhs=A))

    assert record.indicators is not None
    assert record.indicators.child_protection_plan is False
    assert record.involvements == []


# --- CTF: a pupil the school recorded as left is not on its roll --------------------------------

LEFT_PUPIL = FULL_PUPIL.replace(
    "<EntryDate>2019-09-04</EntryDate>",
    "<EntryDate>2019-09-04</EntryDate><LeavingDate>2025-07-11</LeavingDate>",
)


def test_a_pupil_who_left_the_sending_school_is_not_on_its_roll():
    (pupil,) = read_ctf(ctf(LEFT_PUPIL), CONTACTS).pupils

    assert pupil.record.school is None
    (previous,) = pupil.record.involvements or []
    assert previous.service == "Previous school safeguarding"
    assert previous.until == date(2025, 7, 11)


def test_a_pupil_leaving_after_the_file_was_made_is_still_on_roll_as_of_it():
    leaving_later = LEFT_PUPIL.replace("2025-07-11", "2025-07-25")

    (pupil,) = read_ctf(ctf(leaving_later), CONTACTS).pupils

    assert pupil.record.school == School(
        urn="107001", name="Headingley Primary School", phone="0113 496 0500"
    )


# --- Returns: an answer resting on two snapshots is as old as the older -------------------------


def _import_both(tmp_path, url: str, *, ssda903_first: bool) -> None:
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    header.write_text(HEADER.format(upn=UPN))
    episodes.write_text(EPISODES)
    path = tmp_path / "cin.xml"
    path.write_text(census(cin_child("C903-1"), reference="2025-03-31"))
    loads = [
        lambda: case_records.import_ssda903(
            url, header, episodes, reference_date=date(2024, 3, 31)
        ),
        lambda: case_records.import_cin_census(url, path),
    ]
    for load in loads if ssda903_first else loads[::-1]:
        asyncio.run(load())


@pytest.mark.parametrize("ssda903_first", [True, False])
def test_a_child_in_two_returns_of_different_years_is_as_of_the_older(tmp_path, url, ssda903_first):
    _import_both(tmp_path, url, ssda903_first=ssda903_first)

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        (record,) = lookup(s.url, Identifiers(local_id="C903-1"))

    assert record.indicators is not None
    assert record.indicators.looked_after is True  # from the SSDA903 of 31 March 2024
    assert record.as_of == datetime(2024, 3, 31, tzinfo=UTC)


def test_a_later_years_return_moves_the_as_of_date_on(tmp_path, url):
    _import_both(tmp_path, url, ssda903_first=True)
    header, episodes = tmp_path / "header.csv", tmp_path / "episodes.csv"
    asyncio.run(
        case_records.import_ssda903(url, header, episodes, reference_date=date(2025, 3, 31))
    )

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        (record,) = lookup(s.url, Identifiers(local_id="C903-1"))

    assert record.as_of == datetime(2025, 3, 31, tzinfo=UTC)
