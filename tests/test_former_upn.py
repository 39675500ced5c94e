"""Former UPNs (the DfE's FormerUPN): a record says which it holds (`identifiers.former_upns`),
the SQL and CTF connectors fill it, and the gateway links a record by the UPN asked when it is
one of them - but never lets a former UPN join two children."""

import json
from datetime import UTC, datetime
from functools import partial

import httpx

from connectors.ctf.reader import read_ctf
from connectors.ctf.writer import write_ctf
from connectors.protocol import LOOKUP_PATH, ConnectorRecord, ErrorCode, Identifiers
from connectors.serving import BackgroundServer
from connectors.sql import create_sql_app
from connectors.sql import la_case_records as case_records
from gateway.demo import reference_source
from gateway.linkage import LinkageModel
from gateway.match import FORMER_UPN, RECORD_MISMATCH
from gateway.match import match_records as match_with
from gateway.types import (
    AmbiguityReason,
    LookupQuery,
    MatchMethod,
    Purpose,
    SourceAnswer,
    SourceStatus,
)
from tests.factories import NHS, OTHER_NHS, school_record, social_care_record
from tests.stack import reference_apps, running_gateway, serving
from tests.test_sql_connector import RECORDS as SQL_RECORDS
from tests.test_sql_connector import post as sql_post
from tests.test_sql_connector import request as sql_request
from tests.test_sql_connector import write as sql_write

CURRENT, FORMER = "H801200001001", "X801200001002"
ANOTHER = "A801200001003"
"""Another pupil's current UPN."""
BY_FORMER = LookupQuery(upn=FORMER, purpose=Purpose.SAFEGUARDING_ENQUIRY)
match_records = partial(match_with, model=LinkageModel.load())


def _answer(source: str, *records: ConnectorRecord) -> SourceAnswer:
    return SourceAnswer(source, SourceStatus.ANSWERED, 1.0, tuple(records))


def _renumbered(upn: str | None, nhs: str | None = NHS, **changes: object) -> ConnectorRecord:
    """The social care record under `upn`, listing FORMER as its former UPN."""
    identifiers = Identifiers(nhs_number=nhs, upn=upn, local_id="LA-1", former_upns=(FORMER,))
    return social_care_record(identifiers=identifiers, **changes)


# --- the gateway's match stage -------------------------------------------------------------------


def test_a_record_listing_the_upn_asked_as_former_is_linked_by_upn_and_says_so():
    result = match_records(BY_FORMER, [_answer("social_care", _renumbered(CURRENT))])

    (answer,) = result.answers
    (linked,) = result.matched
    assert answer.status is SourceStatus.ANSWERED
    assert (linked.method, linked.score, linked.reasons) == (MatchMethod.UPN, 1.0, (FORMER_UPN,))


def test_a_record_holding_the_upn_asked_as_its_own_is_linked_with_no_reason():
    result = match_records(
        LookupQuery(upn=CURRENT, purpose=Purpose.SAFEGUARDING_ENQUIRY),
        [_answer("social_care", _renumbered(CURRENT))],
    )
    assert [(m.method, m.reasons) for m in result.matched] == [(MatchMethod.UPN, ())]


def test_a_record_under_another_upn_not_listing_the_upn_asked_still_fails_its_source():
    other = social_care_record(
        identifiers=Identifiers(upn=ANOTHER, local_id="LA-2", former_upns=(CURRENT,))
    )
    result = match_records(
        BY_FORMER, [_answer("social_care", _renumbered(CURRENT), other.model_copy())]
    )

    (answer,) = result.answers
    assert (answer.status, answer.error_code, answer.records) == (
        SourceStatus.FAILED,
        RECORD_MISMATCH,
        (),
    )
    assert result.matched == ()


def test_a_former_upn_listed_under_two_current_upns_links_neither_child():
    """Two pupils claiming one former UPN (a UPN allocated twice): it names neither for sure."""
    one = _renumbered(CURRENT, nhs=None)
    other = _renumbered(ANOTHER, nhs=None, record_id="LA-2")
    at_school = school_record(None, identifiers=other.identifiers)
    for answers in (
        [_answer("social_care", one), _answer("education", at_school)],
        [_answer("social_care", one, other)],
    ):
        result = match_records(BY_FORMER, answers)

        assert result.matched == ()
        assert result.ambiguity is not None
        assert result.ambiguity.reason is AmbiguityReason.UPNS_DIFFER
        assert {r.method for r in result.ambiguity.records} == {MatchMethod.UPN}
        assert sum(r.count for r in result.ambiguity.records) == 2


def test_a_record_linked_by_a_former_upn_with_another_nhs_number_links_neither_child():
    """The school holds FORMER as a pupil's own UPN; social care lists it as the former UPN of a
    child with another NHS number: one UPN, two children."""
    holder = school_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    result = match_records(
        BY_FORMER,
        [_answer("education", holder), _answer("social_care", _renumbered(CURRENT, OTHER_NHS))],
    )

    assert result.matched == ()
    assert result.ambiguity is not None
    assert result.ambiguity.reason is AmbiguityReason.NHS_NUMBERS_DIFFER


def test_the_old_and_the_new_record_of_one_child_are_both_linked():
    """The school still holds the child under FORMER; social care has the new UPN: one child."""
    old = school_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    duplicate = _renumbered(CURRENT, record_id="LA-9")
    result = match_records(
        BY_FORMER,
        [_answer("education", old), _answer("social_care", _renumbered(CURRENT), duplicate)],
    )

    assert result.ambiguity is None
    assert [(m.key, m.reasons) for m in result.matched] == [
        ("education:E1", ()),
        ("social_care:LA-000001", (FORMER_UPN,)),
        ("social_care:LA-9", (FORMER_UPN,)),
    ]


# --- the protocol --------------------------------------------------------------------------------


def test_a_record_without_former_upns_is_sent_as_before_and_one_with_them_round_trips():
    plain = json.loads(social_care_record().model_dump_json())
    renumbered = _renumbered(CURRENT)

    assert "former_upns" not in plain["identifiers"]
    assert ConnectorRecord.model_validate_json(renumbered.model_dump_json()) == renumbered


def test_a_request_carrying_former_upns_is_refused(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    sql_write(url, SQL_RECORDS[:1])
    body = json.loads(sql_request(Identifiers(upn=FORMER)).model_dump_json())
    body["identifiers"]["former_upns"] = [FORMER]

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        response = httpx.post(s.url + LOOKUP_PATH, json=body, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == ErrorCode.BAD_REQUEST


# --- the connectors ------------------------------------------------------------------------------


def test_the_sql_connector_says_which_former_upn_its_record_answers_to(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    identifiers = Identifiers(nhs_number=NHS, upn=CURRENT, local_id="LA-1", former_upns=(FORMER,))
    child = SQL_RECORDS[0].model_copy(update={"record_id": "LA-1", "identifiers": identifiers})
    sql_write(url, [child])

    with BackgroundServer(create_sql_app(database_url=url, mapping=case_records.MAPPING)) as s:
        by_former = sql_post(s.url, sql_request(Identifiers(upn=FORMER)))
        by_nhs = sql_post(s.url, sql_request(Identifiers(nhs_number=NHS)))

    assert by_former == by_nhs == [child]


def test_a_ctf_pupil_with_a_former_upn_lists_it_and_writes_it_back():
    pupil = school_record(None, identifiers=Identifiers(upn=CURRENT, former_upns=(FORMER,)))
    assert pupil.school is not None
    written = write_ctf([pupil], school=pupil.school, created=datetime(2026, 11, 1, tzinfo=UTC))

    (read,) = read_ctf(written).pupils

    assert read.record.identifiers == Identifiers(upn=CURRENT, former_upns=(FORMER,))
    assert read.former_upn == FORMER


# --- end to end ----------------------------------------------------------------------------------


def test_a_lookup_by_a_former_upn_through_the_gateway_finds_the_social_care_record(tmp_path):
    """Social care (the SQL connector) holds the child under its new UPN, the school under the
    old one: asked by the old one, the gateway links both and reports social care as answering."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    identifiers = Identifiers(nhs_number=NHS, upn=CURRENT, local_id="LA-1", former_upns=(FORMER,))
    child = SQL_RECORDS[0].model_copy(update={"record_id": "LA-1", "identifiers": identifiers})
    sql_write(url, [child])
    school = school_record(
        NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER), date_of_birth=child.date_of_birth
    )
    apps = reference_apps(tmp_path, {"education": [school]})
    apps["social_care"] = create_sql_app(database_url=url, mapping=case_records.MAPPING)
    query = (
        "query($upn: String!) { child(identify: {upn: $upn}, purpose: SAFEGUARDING_ENQUIRY)"
        " { outcome auditId records { source method score } sources { source status } } }"
    )

    with (
        serving(apps) as urls,
        running_gateway(
            tmp_path, [reference_source(name, u) for name, u in urls.items()]
        ) as gateway,
    ):
        token = gateway.token("social_worker", "LA-LEEDS")
        body = gateway.post({"query": query, "variables": {"upn": FORMER}}, token).json()
        found = body["data"]["child"]
        audited = gateway.audited(found["auditId"])

    assert found["outcome"] == "FOUND", body
    statuses = {s["source"]: s["status"] for s in found["sources"]}
    assert statuses["social_care"] == statuses["education"] == "ANSWERED"
    assert {(r["source"], r["method"], r["score"]) for r in found["records"]} == {
        ("social_care", "UPN", 1.0),
        ("education", "UPN", 1.0),
    }
    reasons = {m["source"]: m["reasons"] for m in audited["matches"]}
    assert reasons == {"social_care": [FORMER_UPN], "education": []}
