"""Connectors for real agency formats at their edges: the FHIR connector in front of a FHIR server
answering in pages, not found, heavily or with a very restricted patient's names; a CIN census in
an unreadable encoding; a lookup by a former UPN; and the conformance kit in front of connectors
that break the protocol in ways it should catch."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

import connectors.app
from connectors.conformance import conformance_records
from connectors.conformance.session import MATCH_FIELDS
from connectors.fhir.backend import UNNUMBERED
from connectors.fhir.client import FHIR_JSON, MAX_ANSWER_BYTES
from connectors.fhir.outcomes import operation_outcome
from connectors.fhir.resources import related_person_resources
from connectors.fhir.terminology import SpineError
from connectors.minimisation import minimise
from connectors.protocol import (
    LOOKUP_PATH,
    ConnectorRecord,
    Demographics,
    ErrorCode,
    FieldId,
    Identifiers,
    Sex,
)
from connectors.records import FileBackend
from connectors.serving import BackgroundServer
from connectors.sql import create_sql_app
from connectors.sql import la_case_records as case_records
from connectors.sql.la_case_records.cin_census import read_cin_census
from connectors.sql.la_case_records.returns import ReturnFileError
from gateway.linkage import LinkageModel
from gateway.match import match_records
from gateway.types import LookupQuery, Purpose, SourceAnswer, SourceStatus
from tests.fhir_population import AMELIA, lookup_body
from tests.test_conformance import _failed, _kit, _reference, _sdk
from tests.test_conformance import dataset as dataset
from tests.test_fhir_hostile_server import (
    A,
    HostileServer,
    Stack,
    connected,
    error,
    patient,
    plan_flag,
    raw,
    records,
    searchset,
)
from tests.test_sql_connector import RECORDS as SQL_RECORDS
from tests.test_sql_connector import _set_upns
from tests.test_sql_connector import post as sql_post
from tests.test_sql_connector import request as sql_request
from tests.test_sql_connector import write as sql_write

# --- FHIR: a searchset Bundle is one page of the answer -----------------------------------------


@pytest.fixture(scope="module")
def paged() -> Iterator[Stack]:
    server = HostileServer()
    server.reset()
    with BackgroundServer(server.app()) as fhir:
        yield from connected((server, fhir.url))


def _first_page(url: str, *, total: int) -> dict[str, Any]:
    """An empty first page of a searchset whose `total` results start on the next page."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [
            {"relation": "self", "url": url},
            {"relation": "next", "url": url + "&_page=2"},
        ],
        "entry": [],
    }


def test_a_cp_is_answer_in_pages_is_never_read_as_no_plan(paged):
    """CP-IS answering with the first page of its flags (the plan on the next) must not become
    `child_protection_plan: false`: a partial answer that looks complete."""
    paged.server.answers["flags"] = Response(
        json.dumps(_first_page(f"{paged.url}/cpis/Flag?patient={A}", total=1)),
        media_type=FHIR_JSON,
    )

    response = paged.lookup(nhs=A)

    assert response.status_code != 200, records(response)[0].indicators
    assert error(response) == (500, ErrorCode.INTERNAL)


def test_related_people_in_pages_are_not_read_as_the_whole_list(paged):
    """The first page of a child's related people (one of two) is not all their carers."""
    first = _first_page(f"{paged.url}/pds/Patient/{A}/RelatedPerson?", total=2)
    carers = AMELIA.model_copy(update={"identifiers": Identifiers(nhs_number=A)})
    first["entry"] = searchset(*related_person_resources(carers)[:1])["entry"]
    paged.server.answers["related"] = Response(json.dumps(first), media_type=FHIR_JSON)

    response = paged.lookup(nhs=A, fields=[FieldId.NAME, FieldId.CARERS])

    assert response.status_code != 200, records(response)[0].carers
    assert error(response) == (500, ErrorCode.INTERNAL)


def test_a_flag_bundle_with_a_plan_on_the_first_page_of_two_still_fails(paged):
    """A first page holding a plan, with more to come, is still a partial answer."""
    first = _first_page(f"{paged.url}/cpis/Flag?patient={A}", total=2)
    first["entry"] = searchset(plan_flag(A))["entry"]
    paged.server.answers["flags"] = Response(json.dumps(first), media_type=FHIR_JSON)

    response = paged.lookup(nhs=A)

    assert response.status_code != 200, records(response)[0].indicators
    assert error(response) == (500, ErrorCode.INTERNAL)


def test_a_cp_is_search_answered_not_found_is_not_read_as_no_plan(paged):
    """docs/connectors.md: "CP-IS answering with none sets both false"; any other refusal is
    INTERNAL, and "nothing that fails looks like 'no record'". A 404 RESOURCE_NOT_FOUND to
    `Flag?patient=` (a wrong base path, a proxy in front of CP-IS) is no answer about the plans -
    only PDS's related people use 404 for "none" - yet it became "no plan, not looked after"."""
    paged.server.answers["flags"] = Response(
        json.dumps(operation_outcome(SpineError.RESOURCE_NOT_FOUND, "Not found")),
        status_code=404,
        media_type=FHIR_JSON,
    )

    response = paged.lookup(nhs=A)

    assert response.status_code != 200, records(response)[0].indicators
    assert error(response) == (500, ErrorCode.INTERNAL)


def test_one_patient_without_an_nhs_number_found_by_several_searches_is_one_candidate(paged):
    """docs: a result without an NHS number is "a candidate of its own ... never merged with
    another (two namesakes merged would make the one left look unique)". The same resource
    returned by each of the searches one lookup runs is one patient, not three namesakes: three
    would make the gateway call the child ambiguous (two linked records in one source without a
    shared identifier)."""
    paged.server.answers["search"] = searchset(patient(A, identifier=None))
    asked = Demographics(
        given="Amelia",
        family="Hart",
        date_of_birth=date(2015, 3, 7),
        sex=Sex.FEMALE,
        postcode="LS6 3AB",
    )

    found = records(paged.lookup(demographics=asked))

    assert len([c for c in paged.server.calls if c.startswith("search")]) > 1
    assert [r.record_id for r in found] == [f"{UNNUMBERED}1"]


def test_a_very_restricted_patient_sent_with_its_name_loses_it_as_location_is_lost(paged):
    """V removes the names as well as location (terminology.Confidentiality). The connector
    drops location itself for R and V "should a server ever send it"; the name of a V patient
    must not depend on the server having removed it either."""
    very_restricted = patient(
        A,
        meta={
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}
            ]
        },
    )
    paged.server.answers["read"] = very_restricted

    [record] = records(paged.lookup(nhs=A, fields=[FieldId.NAME, FieldId.ADDRESS]))

    assert record.flags.restricted
    assert record.address is None
    assert record.name is None


def _heavy_patient() -> bytes:
    """Amelia's Patient, valid FHIR, padded to just under the 2 MB the connector reads with
    extensions: cheap to send and to parse as JSON, seconds of CPU to validate as FHIR."""
    extension = {"url": "https://example.org/x"}
    count = (MAX_ANSWER_BYTES - 20_000) // (len(json.dumps(extension)) + 2)
    body = json.dumps(patient(A, extension=[extension] * count)).encode()
    assert len(body) <= MAX_ANSWER_BYTES
    return body


def test_a_heavy_answer_does_not_hold_the_lookup_past_its_deadline(paged):
    """Each FHIR call is bounded by the lookup's deadline (docs/connectors.md). An answer within
    the size cap that takes seconds to validate must not hold the connector's event loop - and
    with it this lookup and every other one - past that deadline."""
    paged.server.answers["read"] = raw(_heavy_patient())
    body = lookup_body(nhs=A, fields=[FieldId.NAME], deadline_in=1.0)

    started = time.monotonic()
    response = paged.connector.post(LOOKUP_PATH, content=body)
    elapsed = time.monotonic() - started

    assert elapsed < 2.5, f"answered {elapsed:.1f} s after a 1 s deadline"
    assert error(response) == (504, ErrorCode.DEADLINE_EXCEEDED)


# --- the CIN census importer ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["x-no-such-encoding", "rot13", "utf-32", "mbcs"])
def test_a_cin_census_in_an_unreadable_encoding_is_a_return_file_error(tmp_path, encoding):
    """Documented: a malformed file is a ReturnFileError listing its problems by line, never a
    value; the CLI turns only ValueError into its one-line message (LookupError escapes it)."""
    path = tmp_path / "cin.xml"
    path.write_bytes(
        f'<?xml version="1.0" encoding="{encoding}"?><Message><Header/></Message>'.encode()
    )

    with pytest.raises(ReturnFileError, match=r"cin\.xml:1:"):
        read_cin_census(path)


# --- the conformance kit -------------------------------------------------------------------------


class _WrongChild:
    """A connector whose identifier lookup answers with the row of the wrong child: the plain
    child's identifiers, with another child's name, date of birth, address and carers (a join on
    the wrong key)."""

    def __init__(self, records: list[ConnectorRecord]) -> None:
        plain, other = records[0], records[1]
        assert plain.identifiers != other.identifiers
        swapped = other.model_copy(
            update={"record_id": plain.record_id, "identifiers": plain.identifiers}
        )
        self._records = FileBackend([swapped, *records[1:]])

    async def lookup(self, request: Any) -> list[ConnectorRecord]:
        return await self._records.lookup(request)


def test_a_connector_answering_with_another_childs_details_fails_the_identifier_check(
    tmp_path, dataset
):
    records = conformance_records("health")
    plain, other = records[0], records[1]
    assert plain.name != other.name
    assert plain.date_of_birth != other.date_of_birth

    report, printed = _kit(tmp_path, "health", _sdk(dataset, _WrongChild))

    assert "finds_by_identifier" in _failed(report), printed


def test_a_connector_oversharing_search_candidates_fails_the_field_checks(
    tmp_path, dataset, monkeypatch
):
    """Minimisation holds for every record that leaves the agency, the other children a search
    turns up included - not only for the child looked up by identifier. A connector that sends
    candidates whole (carers, involvements, GP) passes every check today."""
    matching = frozenset(MATCH_FIELDS)

    def candidates_whole(record: ConnectorRecord, fields: Any) -> ConnectorRecord:
        return record if frozenset(fields) == matching else minimise(record, fields)

    monkeypatch.setattr(connectors.app, "minimise", candidates_whole)

    report, printed = _kit(tmp_path, "health", _reference(dataset))

    assert "returns_only_requested_fields" in _failed(report), printed


def test_the_dataset_plain_child_is_first(dataset: Path):
    """What the tests above rely on: the plain child is the first record of each agency."""
    for agency in ("health", "education", "social_care"):
        [first, *_] = conformance_records(agency)
        assert first.name is not None
        assert first.name.family == "Hartley"


# --- the SQL connector: a UPN lookup matched on the former UPN -----------------------------------


def test_a_lookup_by_a_former_upn_does_not_fail_the_social_care_source(tmp_path):
    """connector-protocol.md: "Return every record whose identifiers **equal** any identifier in
    the request". The SQL connector also matches `child.former_upn` and answers with the child's
    record carrying its current UPN; the gateway's match stage then reads a record whose UPN is
    not the one asked as another child's and fails the whole source (RECORD_MISMATCH) - so a
    lookup by a child's former UPN loses social care, which the second round does not ask again
    (it never retries a failed source)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    current, former = "H801200001001", "X801200001002"
    child = (
        SQL_RECORDS[0]
        .model_copy(update={"identifiers": Identifiers(nhs_number="9434765919", local_id="LA-1")})
        .model_copy(update={"record_id": "LA-1"})
    )
    sql_write(url, [child])
    asyncio.run(_set_upns(url, "LA-1", upn=current, former=former))

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        found = sql_post(s.url, sql_request(Identifiers(upn=former)))

    query = LookupQuery(upn=former, purpose=Purpose.SAFEGUARDING_ENQUIRY)
    answer = SourceAnswer("social_care", SourceStatus.ANSWERED, 1.0, tuple(found))
    [checked] = match_records(query, [answer], LinkageModel.load()).answers

    assert checked.status is not SourceStatus.FAILED, (
        f"social care answered {[r.identifiers.upn for r in found]} to a lookup by {former}, "
        f"and the gateway failed it ({checked.error_code})"
    )
