"""Former UPNs beyond the first round: the second round takes the new UPN a record linked by a
former one carries as the child's (and asks with it), file-backed connectors (reference, CTF)
answer a lookup by a former UPN, and the conformance kit accepts a record listing the UPN asked
as a former one - while a record under any other UPN is still another child's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.conformance import conformance_records
from connectors.ctf import CtfFolderBackend
from connectors.protocol import ConnectorRecord, Identifiers, LookupRequest
from connectors.records import FileBackend
from connectors.sql import create_sql_app
from connectors.sql import la_case_records as case_records
from gateway.demo import reference_source
from gateway.linkage import LinkageModel
from gateway.match import FORMER_UPN, RECORD_MISMATCH, MatchResult, match_records
from gateway.second_round import FoundIdentifier, combined, found_identifier, identifiers_found
from gateway.types import IdentifiedBy, LookupQuery, Purpose, SourceAnswer
from gateway.types import SourceStatus as Status
from tests.factories import NHS, OTHER_NHS, health_record, school_record, social_care_record
from tests.stack import reference_apps, running_gateway, serving
from tests.test_conformance import _failed, _kit, _sdk
from tests.test_conformance import dataset as dataset
from tests.test_ctf_folder import JULY, NORTH, SOUTH, put, school_file
from tests.test_ctf_folder import pupil as ctf_pupil
from tests.test_ctf_reader import AMELIA as NEW_CTF
from tests.test_ctf_reader import FORMER as FORMER_CTF
from tests.test_former_upn import ANOTHER, CURRENT, FORMER
from tests.test_sql_connector import request as sql_request
from tests.test_sql_connector import write as sql_write

BY_FORMER = LookupQuery(upn=FORMER, purpose=Purpose.SAFEGUARDING_ENQUIRY)
LINKAGE = LinkageModel.load()


def _renumbered(nhs: str | None = NHS) -> ConnectorRecord:
    """Social care's record of the child under CURRENT, listing FORMER as its former UPN."""
    identifiers = Identifiers(nhs_number=nhs, upn=CURRENT, local_id="LA-1", former_upns=(FORMER,))
    return social_care_record(nhs, record_id="LA-1", identifiers=identifiers)


def _answer(source: str, *records: ConnectorRecord) -> SourceAnswer:
    status = Status.ANSWERED if records else Status.NO_RECORD
    return SourceAnswer(source, status, 1.0, tuple(records))


def _first(*answers: SourceAnswer) -> MatchResult:
    return match_records(BY_FORMER, answers, LINKAGE)


# --- which identifier the second round asks with ------------------------------------------------


def test_the_new_upn_of_a_record_linked_by_a_former_one_is_found_when_no_nhs_number_is():
    first = _first(_answer("social_care", _renumbered(nhs=None)), _answer("education"))

    assert found_identifier(BY_FORMER, first) == FoundIdentifier(IdentifiedBy.UPN, CURRENT)
    # Routing keeps to the UPN asked with, as the locator was asked with it.
    assert identifiers_found(BY_FORMER, first) == ()


def test_the_nhs_number_is_still_preferred_and_a_lookup_by_the_own_upn_finds_no_upn():
    first = _first(_answer("social_care", _renumbered()))
    assert found_identifier(BY_FORMER, first) == FoundIdentifier(IdentifiedBy.NHS_NUMBER, NHS)

    at_school = school_record(None, identifiers=Identifiers(upn=FORMER))
    direct = _first(_answer("education", at_school))
    assert found_identifier(BY_FORMER, direct) is None


# --- what a later record may carry --------------------------------------------------------------


def _again(record: ConnectorRecord) -> MatchResult:
    by_nhs = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)
    return match_records(by_nhs, [_answer("health", record)], LINKAGE)


@pytest.mark.parametrize(
    ("upn", "status"),
    [(CURRENT, Status.ANSWERED), (FORMER, Status.ANSWERED), (ANOTHER, Status.FAILED)],
)
def test_a_later_record_may_carry_the_new_upn_or_the_old_but_no_other(upn, status):
    first = _first(_answer("social_care", _renumbered()), _answer("health"))
    later = health_record(identifiers=Identifiers(nhs_number=NHS, upn=upn))

    both = combined(BY_FORMER, first, _again(later), LINKAGE)

    health = next(a for a in both.answers if a.source == "health")
    assert health.status is status
    assert (health.error_code == RECORD_MISMATCH) is (status is Status.FAILED)


def test_the_new_upn_is_the_childs_only_where_a_record_was_linked_by_the_former_one():
    """Found under FORMER as its own UPN, the child has no other: CURRENT on a later record is
    another child's, whatever record elsewhere lists FORMER."""
    at_school = school_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    first = _first(_answer("education", at_school), _answer("health"))
    later = health_record(identifiers=Identifiers(nhs_number=NHS, upn=CURRENT))

    both = combined(BY_FORMER, first, _again(later), LINKAGE)

    health = next(a for a in both.answers if a.source == "health")
    assert (health.status, health.error_code) == (Status.FAILED, RECORD_MISMATCH)


# --- end to end: a real gateway in front of connectors on loopback ------------------------------

LOOKUP = """
query($upn: String!) {
  child(identify: {upn: $upn}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete auditId
    records { source method }
    sources { source status errorCode askedWith }
  }
}
"""


def _lookup_by_former(
    tmp_path: Path,
    reference: dict[str, Sequence[ConnectorRecord]],
    in_sql: Sequence[ConnectorRecord] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Look FORMER up through the gateway: social care is the SQL connector over `in_sql` unless
    `reference` names it, the rest reference connectors; the answer and its audit record."""
    apps = reference_apps(tmp_path, reference)
    if "social_care" not in reference:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
        sql_write(url, list(in_sql))
        apps["social_care"] = create_sql_app(database_url=url, mapping=case_records.MAPPING)
    with serving(apps) as urls:
        sources = [reference_source(name, url) for name, url in urls.items()]
        with running_gateway(tmp_path, sources) as gateway:
            token = gateway.token("social_worker", "LA-LEEDS")
            body = gateway.post({"query": LOOKUP, "variables": {"upn": FORMER}}, token).json()
            assert "errors" not in body, body
            found = body["data"]["child"]
            return found, gateway.audited(found["auditId"])


def _sources(found: dict[str, Any]) -> dict[str, tuple[str, str | None, list[str]]]:
    return {s["source"]: (s["status"], s["errorCode"], s["askedWith"]) for s in found["sources"]}


def _records(found: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["source"], r["method"]) for r in found["records"]}


def test_health_asked_again_with_the_nhs_number_may_hold_the_child_under_the_new_upn(tmp_path):
    """Social care has the child under the new UPN (and the NHS number), health under the NHS
    number with the new UPN too: asked again by NHS number, health is the child's, not another's."""
    at_health = health_record(identifiers=Identifiers(nhs_number=NHS, upn=CURRENT))

    found, audited = _lookup_by_former(
        tmp_path, {"health": [at_health], "education": []}, [_renumbered()]
    )

    assert found["outcome"] == "FOUND"
    assert found["complete"] is True
    assert _sources(found) == {
        "health": ("ANSWERED", None, ["UPN", "NHS_NUMBER"]),
        "education": ("NO_RECORD", None, ["UPN", "NHS_NUMBER"]),
        "social_care": ("ANSWERED", None, ["UPN"]),
    }
    assert _records(found) == {("social_care", "UPN"), ("health", "NHS_NUMBER")}
    reasons = {m["source"]: m["reasons"] for m in audited["matches"]}
    assert reasons["social_care"] == [FORMER_UPN]


def test_a_record_under_yet_another_upn_still_fails_its_source(tmp_path):
    at_health = health_record(identifiers=Identifiers(nhs_number=NHS, upn=ANOTHER))

    found, _ = _lookup_by_former(
        tmp_path, {"health": [at_health], "education": []}, [_renumbered()]
    )

    assert _sources(found)["health"] == ("FAILED", RECORD_MISMATCH, ["UPN", "NHS_NUMBER"])
    assert _records(found) == {("social_care", "UPN")}
    assert found["complete"] is False


def _school_under_the_new_upn(**changes: Any) -> ConnectorRecord:
    """The school's record under CURRENT alone: no NHS number, no former UPN."""
    return school_record(None, identifiers=Identifiers(upn=CURRENT), **changes)


def test_a_school_holding_the_child_only_under_the_new_upn_is_asked_again_with_it(tmp_path):
    found, _ = _lookup_by_former(
        tmp_path,
        {"health": [], "education": [_school_under_the_new_upn()]},
        [_renumbered(nhs=None)],
    )

    assert found["outcome"] == "FOUND"
    assert found["complete"] is True
    assert _sources(found) == {
        "health": ("NO_RECORD", None, ["UPN", "UPN"]),
        "education": ("ANSWERED", None, ["UPN", "UPN"]),
        "social_care": ("ANSWERED", None, ["UPN"]),
    }
    assert _records(found) == {("social_care", "UPN"), ("education", "UPN")}


def test_a_record_under_the_new_upn_born_on_another_day_is_another_childs(tmp_path):
    other = _school_under_the_new_upn(date_of_birth=date(2017, 6, 1))

    found, _ = _lookup_by_former(
        tmp_path, {"health": [], "education": [other]}, [_renumbered(nhs=None)]
    )

    assert _sources(found)["education"] == ("FAILED", RECORD_MISMATCH, ["UPN", "UPN"])
    assert _records(found) == {("social_care", "UPN")}


def test_a_reference_connector_answers_a_lookup_by_a_former_upn(tmp_path):
    found, audited = _lookup_by_former(
        tmp_path,
        {"health": [health_record()], "education": [], "social_care": [_renumbered()]},
    )

    assert found["outcome"] == "FOUND"
    assert _sources(found)["social_care"] == ("ANSWERED", None, ["UPN"])
    assert _records(found) == {("social_care", "UPN"), ("health", "NHS_NUMBER")}
    reasons = {m["source"]: m["reasons"] for m in audited["matches"]}
    assert reasons == {"social_care": [FORMER_UPN], "health": []}


# --- file-backed connectors ---------------------------------------------------------------------


def _asking(**identifiers: str) -> LookupRequest:
    return sql_request(Identifiers(**identifiers))


def test_the_file_backend_finds_a_record_by_a_former_upn_only_as_a_upn():
    renumbered = _renumbered()
    plain = social_care_record(OTHER_NHS, record_id="LA-2")
    backend = FileBackend([plain, renumbered])

    def found(**identifiers: str) -> list[ConnectorRecord]:
        return asyncio.run(backend.lookup(_asking(**identifiers)))

    assert found(upn=FORMER) == found(upn=CURRENT) == [renumbered]
    assert found(local_id=FORMER) == found(nhs_number=FORMER) == []


def test_the_ctf_connector_answers_the_old_upn_with_the_transferred_record(tmp_path):
    """The newer file holds the pupil under a new UPN with the old one as its FormerUPN: the
    record under the old one is dropped, and a lookup by it finds the one that replaced it."""
    put(tmp_path, "north.xml", school_file(NORTH, ctf_pupil(FORMER_CTF)))
    moved = ctf_pupil(NEW_CTF).model_copy(
        update={"identifiers": Identifiers(upn=NEW_CTF, former_upns=(FORMER_CTF,))}
    )
    put(tmp_path, "south.xml", school_file(SOUTH, moved, created=JULY + timedelta(days=1)))
    backend = CtfFolderBackend(tmp_path)

    by_former = asyncio.run(backend.lookup(_asking(upn=FORMER_CTF)))
    by_new = asyncio.run(backend.lookup(_asking(upn=NEW_CTF)))

    assert by_former == by_new
    (record,) = by_former
    assert record.school is not None
    assert record.school.urn == SOUTH.urn
    assert record.identifiers == Identifiers(upn=NEW_CTF, former_upns=(FORMER_CTF,))


# --- the conformance kit ------------------------------------------------------------------------


class _WithRenumberedCopy:
    """The education agency's records, answering a lookup by the plain child's UPN with the child
    and a copy of it under `upn` - listing the UPN asked as former when `lists_former`."""

    def __init__(self, records: list[ConnectorRecord], upn: str, lists_former: bool) -> None:
        self._records = FileBackend(records)
        plain = records[0]
        asked = plain.identifiers.upn
        assert asked is not None
        self._asked = asked
        former = (asked,) if lists_former else None
        self._copy = plain.model_copy(
            update={
                "record_id": f"{plain.record_id}-NEW",
                "identifiers": Identifiers(upn=upn, former_upns=former),
            }
        )

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        found = await self._records.lookup(request)
        if request.identifiers.upn == self._asked:
            found.append(self._copy)
        return found


def _renumbering(lists_former: bool):  # type: ignore[no-untyped-def]
    return lambda records: _WithRenumberedCopy(records, CURRENT, lists_former)


def test_the_kit_accepts_the_childs_record_under_a_new_upn_listing_the_one_asked(tmp_path, dataset):
    assert conformance_records("education")[0].identifiers.upn not in (CURRENT, FORMER)

    listing, printed = _kit(tmp_path, "education", _sdk(dataset, _renumbering(True)))
    assert "finds_by_identifier" not in _failed(listing), printed

    silent, printed = _kit(tmp_path, "education", _sdk(dataset, _renumbering(False)))
    assert "finds_by_identifier" in _failed(silent), printed
    assert "without the requested upn" in printed
