"""End-to-end second rounds (gateway.second_round): a lookup whose linked records hold an NHS number
it did not use asks again with it. Real connectors (the SDK app over the reference agencies' file
backend) on loopback count each request where it arrives; the real gateway, policy and audit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.app import create_connector_app
from connectors.check_digits import upn_check_letter
from connectors.protocol import (
    Address,
    ConnectorRecord,
    Identifiers,
    LookupRequest,
    PersonName,
    RecordFlags,
)
from connectors.records import FileBackend
from connectors.reference import REFERENCE_AGENCIES
from gateway.config import SourceConfig
from gateway.demo import reference_source
from tests.factories import (
    NHS,
    OTHER_NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import Stack, running_gateway, serving, write_records

UPN = "H801200001001"
OTHER_UPN = upn_check_letter("801200001002") + "801200001002"
ELSEWHERE = Address(lines=["9 Elsewhere Road", "Leeds"], postcode="LS11 5QT")

LOOKUP = """
query Lookup($upn: String, $demographics: DemographicsInput) {
  child(upn: $upn, demographics: $demographics, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete auditId requestId
    child {
      nhsNumber { value }
      involvements { practitioner { name } provenance { source } }
      indicators { childProtectionPlan { value provenance { source } } }
    }
    records { source method }
    sources { source status errorCode recordsMatched recordsUnmatched recordsPossible askedWith }
  }
}
"""

AMELIA = {
    "givenName": "Amelia",
    "familyName": "Hart",
    "dateOfBirth": "2019-03-04",
    "postcode": "LS6 2AB",
}


class Agency:
    """One reference agency's records behind the real connector SDK, keeping every request that
    reaches it - what the gateway asked, counted where it arrives."""

    def __init__(self, tmp: Path, name: str, records: Sequence[ConnectorRecord], latency_s: float):
        path = write_records(tmp / f"{name}.jsonl", records)
        self.records = FileBackend.from_jsonl(path, fields=REFERENCE_AGENCIES[name].provides)
        self.latency_s = latency_s
        self.requests: list[LookupRequest] = []

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        self.requests.append(request)
        await asyncio.sleep(self.latency_s)
        return await self.answer(request)

    async def answer(self, request: LookupRequest) -> list[ConnectorRecord]:
        return await self.records.lookup(request)

    @property
    def asked(self) -> list[str]:
        """How each request identified the child, in the order they came."""
        return [_how(r) for r in self.requests]


class Misfiling(Agency):
    """An agency answering any NHS number with one record it holds: a misbehaving connector."""

    def __init__(self, tmp: Path, name: str, record: ConnectorRecord) -> None:
        super().__init__(tmp, name, [], 0.0)
        self.record = record

    async def answer(self, request: LookupRequest) -> list[ConnectorRecord]:
        return [self.record] if request.identifiers.nhs_number else []


def _how(request: LookupRequest) -> str:
    if request.identifiers.nhs_number is not None:
        return f"NHS_NUMBER:{request.identifiers.nhs_number}"
    if request.identifiers.upn is not None:
        return f"UPN:{request.identifiers.upn}"
    assert request.demographics is not None
    return "DEMOGRAPHICS"


Configure = Callable[[str, str], SourceConfig]


@contextlib.contextmanager
def _stack(
    tmp: Path,
    agencies: dict[str, Agency],
    configure: Configure = reference_source,
    **settings: Any,
) -> Iterator[Stack]:
    apps = {name: create_connector_app(a, source=name) for name, a in agencies.items()}
    with (
        serving(apps) as urls,
        running_gateway(tmp, [configure(n, u) for n, u in urls.items()], **settings) as gateway,
    ):
        yield gateway


def _agencies(
    tmp: Path,
    records: dict[str, Sequence[ConnectorRecord]],
    latency_s: dict[str, float] | None = None,
) -> dict[str, Agency]:
    return {
        name: Agency(tmp, name, recs, (latency_s or {}).get(name, 0.0))
        for name, recs in records.items()
    }


def _lookup(stack: Stack, **variables: Any) -> dict[str, Any]:
    response = stack.post({"query": LOOKUP, "variables": variables}, stack.token("social_worker"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def _sources(lookup: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {s["source"]: (s["status"], s["askedWith"]) for s in lookup["sources"]}


def _records(lookup: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["source"], r["method"]) for r in lookup["records"]}


def _school_knowing_the_nhs_number() -> ConnectorRecord:
    return school_record(identifiers=Identifiers(nhs_number=NHS, upn=UPN))


def _amelia(school: ConnectorRecord | None = None) -> dict[str, list[ConnectorRecord]]:
    """Amelia in each agency: by NHS number in health and social care, at school by `school`
    (by default a record holding her UPN and NHS number)."""
    return {
        "health": [health_record()],
        "education": [school or _school_knowing_the_nhs_number()],
        "social_care": [social_care_record()],
    }


def test_a_upn_lookup_asks_health_and_social_care_again_with_the_schools_nhs_number(tmp_path):
    agencies = _agencies(
        tmp_path,
        _amelia(),
    )
    with _stack(tmp_path, agencies) as stack:
        lookup = _lookup(stack, upn=UPN)
        audited = stack.audited(lookup["auditId"])

    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is True
    assert _records(lookup) == {
        ("education", "UPN"),
        ("health", "NHS_NUMBER"),
        ("social_care", "NHS_NUMBER"),
    }
    assert _sources(lookup) == {
        "health": ("ANSWERED", ["UPN", "NHS_NUMBER"]),
        "education": ("ANSWERED", ["UPN"]),
        "social_care": ("ANSWERED", ["UPN", "NHS_NUMBER"]),
    }
    child = lookup["child"]
    assert child["nhsNumber"]["value"] == NHS
    practitioners = {i["practitioner"]["name"] for i in child["involvements"] if i["practitioner"]}
    assert {"Hana Visitor", "Sam Social"} <= practitioners
    assert child["indicators"]["childProtectionPlan"]["provenance"]["source"] == "social_care"
    # Where the requests arrived: the school once, the others again with the NHS number.
    assert agencies["education"].asked == [f"UPN:{UPN}"]
    assert agencies["health"].asked == [f"UPN:{UPN}", f"NHS_NUMBER:{NHS}"]
    assert agencies["social_care"].asked == [f"UPN:{UPN}", f"NHS_NUMBER:{NHS}"]
    # Each round under a request id of its own, which its signed answer must name: the first
    # round's "no record" cannot be replayed as the second's. Both lead to the audit record.
    rounds = [r.request_id for r in agencies["health"].requests]
    assert rounds == [lookup["requestId"], f"{lookup['requestId']}.2"]
    assert audited["request_id"] == lookup["requestId"]
    assert {s["source"]: s["asked_with"] for s in audited["sources"]} == {
        "health": ["UPN", "NHS_NUMBER"],
        "education": ["UPN"],
        "social_care": ["UPN", "NHS_NUMBER"],
    }
    assert {(m["source"], m["method"]) for m in audited["matches"]} == _records(lookup)


@pytest.mark.parametrize(
    ("answered", "status", "code", "unmatched"),
    [
        # Another child's NHS number: the source misbehaved, nothing of it is trusted.
        (health_record(OTHER_NHS, record_id="H-9"), "FAILED", "RECORD_MISMATCH", 0),
        # The NHS number asked, but another UPN than the lookup's: not the same child either.
        (
            health_record(record_id="H-9", identifiers=Identifiers(nhs_number=NHS, upn=OTHER_UPN)),
            "FAILED",
            "RECORD_MISMATCH",
            0,
        ),
        # No NHS number at all: returned, but not linked.
        (health_record(None, record_id="H-9"), "ANSWERED", None, 1),
        # The NHS number asked, but born on another day than the school's record says: another
        # child's health record, reached by a school record carrying that child's NHS number.
        (
            health_record(record_id="H-9", date_of_birth=date(2018, 1, 2)),
            "FAILED",
            "RECORD_MISMATCH",
            0,
        ),
    ],
)
def test_a_record_not_carrying_the_nhs_number_asked_again_with_is_not_linked(
    tmp_path, answered, status, code, unmatched
):
    agencies = _agencies(
        tmp_path,
        {"education": [_school_knowing_the_nhs_number()], "social_care": [social_care_record()]},
    )
    agencies["health"] = Misfiling(tmp_path, "health", answered)
    with _stack(tmp_path, agencies) as stack:
        lookup = _lookup(stack, upn=UPN)

    health = next(s for s in lookup["sources"] if s["source"] == "health")
    assert (health["status"], health["errorCode"]) == (status, code)
    assert health["askedWith"] == ["UPN", "NHS_NUMBER"]
    assert (health["recordsMatched"], health["recordsUnmatched"]) == (0, unmatched)
    assert _records(lookup) == {("education", "UPN"), ("social_care", "NHS_NUMBER")}
    assert "Hana Visitor" not in str(lookup)
    assert OTHER_NHS not in str(lookup)
    assert lookup["complete"] is (status != "FAILED")


def test_with_no_identifier_to_discover_there_is_no_second_round(tmp_path):
    school = school_record(nhs=None, identifiers=Identifiers(upn=UPN))
    agencies = _agencies(
        tmp_path,
        _amelia(school),
    )
    with _stack(tmp_path, agencies) as stack:
        lookup = _lookup(stack, upn=UPN)

    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is True
    assert _records(lookup) == {("education", "UPN")}
    assert _sources(lookup) == {
        "health": ("NO_RECORD", ["UPN"]),
        "education": ("ANSWERED", ["UPN"]),
        "social_care": ("NO_RECORD", ["UPN"]),
    }
    assert {name: a.asked for name, a in agencies.items()} == {
        name: [f"UPN:{UPN}"] for name in agencies
    }


def test_a_source_the_plan_left_out_is_not_asked_in_the_second_round_either(tmp_path):
    agencies = _agencies(
        tmp_path,
        _amelia(),
    )

    def identity_only_social_care(name: str, url: str) -> SourceConfig:
        source = reference_source(name, url)
        if name != "social_care":
            return source
        # Nothing the caller may see beyond identity, and no shielding authority: not planned.
        identity = tuple(f for f in source.provides if f.value in {"nhs_number", "name"})
        return source.model_copy(update={"provides": identity, "shield_authority": False})

    with _stack(tmp_path, agencies, identity_only_social_care) as stack:
        lookup = _lookup(stack, upn=UPN)

    assert _sources(lookup)["social_care"] == ("NOT_ASKED", [])
    assert _sources(lookup)["health"] == ("ANSWERED", ["UPN", "NHS_NUMBER"])
    assert agencies["social_care"].requests == []
    assert len(agencies["health"].requests) == 2


def test_a_demographic_search_finds_a_copy_only_its_nhs_number_reaches(tmp_path):
    # Social care knows Amelia by her adoptive name at her new address: no demographic agreement.
    renamed = social_care_record(name=PersonName(given="Mia", family="Stone"), address=ELSEWHERE)
    agencies = _agencies(
        tmp_path, {"health": [health_record()], "education": [], "social_care": [renamed]}
    )
    with _stack(tmp_path, agencies) as stack:
        lookup = _lookup(stack, demographics=AMELIA)

    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is True
    assert _records(lookup) == {("health", "DEMOGRAPHICS"), ("social_care", "NHS_NUMBER")}
    assert _sources(lookup) == {
        "health": ("ANSWERED", ["DEMOGRAPHICS"]),
        "education": ("NO_RECORD", ["DEMOGRAPHICS", "NHS_NUMBER"]),
        "social_care": ("ANSWERED", ["DEMOGRAPHICS", "NHS_NUMBER"]),
    }
    indicators = lookup["child"]["indicators"]
    assert indicators["childProtectionPlan"]["provenance"]["source"] == "social_care"
    assert agencies["social_care"].asked == ["DEMOGRAPHICS", f"NHS_NUMBER:{NHS}"]
    assert agencies["health"].asked == ["DEMOGRAPHICS"]


def test_a_shielded_copy_found_in_the_second_round_hides_the_search_like_nobody(tmp_path):
    shielded = social_care_record(
        name=PersonName(given="Mia", family="Stone"),
        address=ELSEWHERE,
        flags=RecordFlags(shielded=True),
    )
    agencies = _agencies(
        tmp_path, {"health": [health_record()], "education": [], "social_care": [shielded]}
    )
    with _stack(tmp_path, agencies) as stack:
        hidden = _lookup(stack, demographics=AMELIA)
        nobody = _lookup(
            stack, demographics={**AMELIA, "givenName": "Nobody", "familyName": "Atall"}
        )
        audited = stack.audited(hidden["auditId"])

    assert hidden["outcome"] == nobody["outcome"] == "NOT_FOUND"
    for response in (hidden, nobody):
        del response["auditId"], response["requestId"]
    assert hidden == nobody
    assert _sources(hidden)["social_care"] == ("NO_RECORD", ["DEMOGRAPHICS"])
    # The caller cannot tell, but the auditor sees the search reached the child in both rounds.
    assert audited["outcome"] == "HIDDEN"
    assert {s["source"]: (s["status"], s["asked_with"]) for s in audited["sources"]} == {
        "health": ("ANSWERED", ["DEMOGRAPHICS"]),
        "education": ("NO_RECORD", ["DEMOGRAPHICS", "NHS_NUMBER"]),
        "social_care": ("ANSWERED", ["DEMOGRAPHICS", "NHS_NUMBER"]),
    }
    assert agencies["social_care"].asked[:2] == ["DEMOGRAPHICS", f"NHS_NUMBER:{NHS}"]


def test_a_second_round_the_deadline_leaves_no_time_for_is_timed_out_and_incomplete(tmp_path):
    agencies = _agencies(
        tmp_path,
        _amelia(),
        # The first round takes 0.9 s of the 1.5 s deadline; health needs 0.9 s again.
        latency_s={"health": 0.9, "education": 0.9},
    )

    def patient(name: str, url: str) -> SourceConfig:
        return reference_source(name, url, timeout_ms=5_000)

    with _stack(tmp_path, agencies, patient, lookup_deadline_ms=1_500) as stack:
        lookup = _lookup(stack, upn=UPN)

    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is False
    assert _sources(lookup) == {
        "health": ("TIMED_OUT", ["UPN", "NHS_NUMBER"]),
        "education": ("ANSWERED", ["UPN"]),
        "social_care": ("ANSWERED", ["UPN", "NHS_NUMBER"]),
    }
    assert _records(lookup) == {("education", "UPN"), ("social_care", "NHS_NUMBER")}


def test_a_school_record_carrying_the_twins_nhs_number_does_not_bring_in_the_twin(tmp_path):
    # The school's record is Amelia's (her UPN, her name) but carries her twin Rose's NHS number.
    rose_nhs = synthetic_nhs(4)
    amelia_at_school = school_record(
        name=PersonName(given="Amelia", family="Hart"),
        identifiers=Identifiers(nhs_number=rose_nhs, upn=UPN),
    )
    # Health holds Rose: same family, birthday and home - a date of birth cannot tell them apart.
    rose = health_record(rose_nhs, record_id="H-ROSE", name=PersonName(given="Rose", family="Hart"))
    agencies = _agencies(
        tmp_path, {"health": [rose], "education": [amelia_at_school], "social_care": []}
    )
    with _stack(tmp_path, agencies) as stack:
        lookup = _lookup(stack, upn=UPN)

    assert _records(lookup) == {("education", "UPN")}
    assert _sources(lookup)["health"] == ("FAILED", ["UPN", "NHS_NUMBER"])
    assert lookup["complete"] is False
    assert "Hana Visitor" not in str(lookup)
