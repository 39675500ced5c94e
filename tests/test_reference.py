import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    ErrorCode,
    ErrorResponse,
    FieldId,
    GpPractice,
    Identifiers,
    LookupRequest,
    LookupResponse,
    School,
)
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.serving import BackgroundServer

NHS_NUMBER = "9434765919"

# An education record that also, wrongly, carries a GP practice.
PUPIL = ConnectorRecord(
    record_id="E-1",
    identifiers=Identifiers(nhs_number=NHS_NUMBER, upn="A801200001001"),
    school=School(urn="100001", name="Northtown Academy"),
    gp_practice=GpPractice(ods_code="A81001", name="High Street Surgery"),
    as_of=datetime(2025, 7, 1, tzinfo=UTC),
)


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "education.jsonl"
    path.write_text(PUPIL.model_dump_json() + "\n", encoding="utf-8")
    return path


def lookup(url: str, deadline_in: float = 5.0) -> httpx.Response:
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_in),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="school_nurse", organisation="RX1"),
        identifiers=Identifiers(nhs_number=NHS_NUMBER),
        fields=[FieldId.SCHOOL, FieldId.GP_PRACTICE],
    )
    return httpx.post(url + LOOKUP_PATH, content=request.model_dump_json(), timeout=10)


def test_reference_connector_never_answers_beyond_what_its_agency_provides(records):
    with BackgroundServer(create_reference_app("education", records)) as server:
        response = lookup(server.url)

    answer = LookupResponse.model_validate_json(response.content)
    assert answer.source == "education"
    assert [(r.school, r.gp_practice) for r in answer.records] == [(PUPIL.school, None)]


def test_latency_delays_every_answer_and_can_outlast_the_deadline(records):
    with BackgroundServer(create_reference_app("education", records, latency_ms=300)) as server:
        started = time.monotonic()
        slow = lookup(server.url)
        elapsed = time.monotonic() - started
        too_slow = lookup(server.url, deadline_in=0.1)

    assert slow.status_code == 200
    assert elapsed >= 0.3
    assert ErrorResponse.model_validate_json(too_slow.content).error.code == (
        ErrorCode.DEADLINE_EXCEEDED
    )


def test_unknown_agency_is_refused_naming_the_known_ones(records):
    with pytest.raises(ValueError, match="education, health, social_care"):
        create_reference_app("police", records)


def test_negative_latency_is_refused(records):
    with pytest.raises(ValueError, match="latency_ms"):
        create_reference_app("health", records, latency_ms=-1)


def test_social_care_is_the_only_shield_authority():
    # The gateway must hear from every shield authority before it may show a child's location.
    authorities = [p.name for p in REFERENCE_AGENCIES.values() if p.shield_authority]

    assert authorities == ["social_care"]


def test_only_health_provides_sensitive_service_details():
    providers = [
        p.name
        for p in REFERENCE_AGENCIES.values()
        if FieldId.SENSITIVE_SERVICE_DETAILS in p.provides
    ]

    assert providers == ["health"]


def test_every_agency_provides_identity_fields_for_matching():
    identity = {FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX}

    assert all(identity <= set(p.provides) for p in REFERENCE_AGENCIES.values())


def test_demo_ports_do_not_collide():
    ports = [p.default_port for p in REFERENCE_AGENCIES.values()]

    assert len(set(ports)) == len(ports)
