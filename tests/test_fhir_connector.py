"""The FHIR health connector answering lookups from the sandbox, both over real HTTP."""

import time
from collections.abc import Iterator
from datetime import date
from functools import partial

import pytest

from connectors.fhir import PDS_PATH, FhirSandbox, SandboxFault, SpineError, create_fhir_app
from connectors.fhir.terminology import PDS_MAX_RESULTS
from connectors.protocol import (
    Demographics,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Indicators,
    LookupResponse,
    Sex,
)
from connectors.search import DEFAULT_LIMIT
from tests.fhir_population import (
    AMELIA,
    AUTHORITY,
    NOAHS,
    OLIVER,
    ZARA,
    Stack,
    child,
    nhs_number,
    running_stack,
    sandbox,
)
from tests.test_witness import checkpoints_kept_by


@pytest.fixture(scope="module")
def running() -> Iterator[Stack]:
    with running_stack(sandbox()) as stack:
        yield stack


@pytest.fixture
def stack(running: Stack) -> Iterator[Stack]:
    running.sandbox.calls.clear()
    yield running
    running.sandbox.fault = None
    running.sandbox.delay_s = 0.0


def records(response):
    assert response.status_code == 200, response.text
    return LookupResponse.model_validate_json(response.content).records


def error(response) -> tuple[int, ErrorCode]:
    return response.status_code, ErrorResponse.model_validate_json(response.content).error.code


def test_a_child_is_read_by_nhs_number_with_carers_gp_and_cp_is_plan(stack):
    [record] = records(stack.lookup(nhs=nhs_number(1)))

    assert (record.name, record.date_of_birth, record.address) == (
        AMELIA.name,
        AMELIA.date_of_birth,
        AMELIA.address,
    )
    assert record.gp_practice.ods_code == "B86001"
    assert record.carers == AMELIA.carers
    assert record.indicators == Indicators(child_protection_plan=True, looked_after=False)
    [involvement] = record.involvements
    assert involvement.organisation == AUTHORITY.name
    assert involvement.practitioner.phone == AUTHORITY.office_hours_phone
    assert involvement.broker.phone == AUTHORITY.emergency_duty_phone
    assert involvement.since == date(2024, 5, 1)


def test_a_restricted_child_is_flagged_and_answers_without_location_or_carers(stack):
    [record] = records(stack.lookup(nhs=nhs_number(4)))

    assert record.flags.restricted
    assert (record.address, record.gp_practice, record.carers) == (None, None, None)
    assert record.name == ZARA.name
    assert record.indicators.looked_after is True
    assert not any("RelatedPerson" in call for call in stack.sandbox.calls)


def test_a_very_restricted_child_is_restricted_and_has_no_name(stack):
    [record] = records(stack.lookup(nhs=nhs_number(5)))

    assert record.flags.restricted
    assert record.name is None
    assert record.date_of_birth == date(2013, 11, 30)


def test_a_redacted_child_is_answered_as_not_found(stack):
    assert records(stack.lookup(nhs=nhs_number(6))) == []


def test_an_unknown_nhs_number_is_no_record(stack):
    assert records(stack.lookup(nhs=nhs_number(99))) == []


def test_an_ended_plan_is_no_plan_and_no_involvement(stack):
    [record] = records(stack.lookup(nhs=nhs_number(2)))

    assert record.indicators == Indicators(child_protection_plan=False, looked_after=False)
    assert record.involvements == []


def test_only_the_requested_fields_are_fetched_and_returned(stack):
    [record] = records(stack.lookup(nhs=nhs_number(1), fields=[FieldId.NAME]))

    assert (record.carers, record.indicators, record.address) == (None, None, None)
    assert stack.sandbox.calls == [f"GET /personal-demographics/FHIR/R4/Patient/{nhs_number(1)}"]


def test_a_demographic_search_returns_the_child_and_the_near_duplicate_best_first(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(
                given="Amelia", family="Hart", date_of_birth=date(2015, 3, 7), postcode="LS6 3AB"
            )
        )
    )

    assert [r.record_id for r in found] == [nhs_number(1), nhs_number(2)]


def test_demographic_candidates_are_not_looked_up_in_cp_is(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(given="Amelia", family="Hart", date_of_birth=date(2015, 3, 7))
        )
    )

    assert found[0].indicators is None  # not asked: unknown, never "no plan"
    assert not any("/cpis/" in call for call in stack.sandbox.calls)


def test_a_child_is_found_by_a_former_family_name(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(
                given="Amelia", family="Walsh", date_of_birth=date(2015, 3, 7)
            )
        )
    )

    assert nhs_number(1) in [r.record_id for r in found]


def test_a_child_is_found_by_part_of_a_double_barrelled_family_name(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(
                given="Oliver", family="Jones", date_of_birth=date(2014, 6, 1)
            )
        )
    )

    assert [r.name for r in found] == [OLIVER.name]


def test_a_child_whose_given_name_differs_is_found_by_family_postcode_sex_and_birth(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(
                given="Millicent",
                family="Hart",
                date_of_birth=date(2015, 3, 7),
                postcode="LS6 3AB",
                sex=Sex.FEMALE,
            )
        )
    )

    assert nhs_number(1) in [r.record_id for r in found]


def test_a_multi_match_search_returns_every_namesake(stack):
    found = records(
        stack.lookup(
            demographics=Demographics(given="Noah", family="Taylor", date_of_birth=date(2017, 2, 2))
        )
    )

    assert sorted(r.record_id for r in found) == sorted(n.identifiers.nhs_number for n in NOAHS)


JACK_SMITH = Demographics(given="Jack", family="Smith", date_of_birth=date(2016, 1, 1))


def test_more_namesakes_than_the_limit_are_capped_to_the_strongest_not_refused(stack):
    """PDS answers TOO_MANY_MATCHES to a search for ten when twelve match; the connector asks
    again for as many as PDS gives and answers with ten, as every connector caps its answer."""
    found = records(stack.lookup(demographics=JACK_SMITH))

    assert len(found) == DEFAULT_LIMIT
    assert {(r.name.given, r.name.family) for r in found if r.name} == {("Jack", "Smith")}
    assert any("_max-results=10" in call for call in stack.sandbox.calls)
    assert any("_max-results=50" in call for call in stack.sandbox.calls)


def test_more_namesakes_than_pds_ever_returns_is_a_refusal_never_an_empty_answer():
    crowd = [
        child(100 + i, "Jack", "Smith", date(2016, 1, 1), Sex.MALE, f"LS{1 + i % 20} 5EF")
        for i in range(PDS_MAX_RESULTS + 1)
    ]
    with running_stack(FhirSandbox(crowd, [])) as stack:
        response = stack.lookup(demographics=JACK_SMITH)

    assert error(response) == (400, ErrorCode.BAD_REQUEST)
    assert "Too many PDS records" in response.text


def test_details_pds_cannot_search_with_are_refused_not_answered_empty(stack):
    response = stack.lookup(
        demographics=Demographics(
            given="Amelia", date_of_birth=date(2015, 3, 7), postcode="LS6 3AB"
        )
    )

    assert error(response) == (400, ErrorCode.BAD_REQUEST)
    assert stack.sandbox.calls == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (SandboxFault(503, SpineError.SERVICE_UNAVAILABLE), (503, ErrorCode.UNAVAILABLE)),
        (SandboxFault(429, SpineError.TOO_MANY_REQUESTS), (503, ErrorCode.UNAVAILABLE)),
        (SandboxFault(408, SpineError.UNABLE_TO_CALL_SERVICE), (503, ErrorCode.UNAVAILABLE)),
        (SandboxFault(403, SpineError.ACCESS_DENIED), (403, ErrorCode.FORBIDDEN)),
        (SandboxFault(401, SpineError.ACCESS_DENIED), (503, ErrorCode.UNAVAILABLE)),
        (SandboxFault(400, SpineError.INVALID_VALUE), (500, ErrorCode.INTERNAL)),
        # A not-found on a search (not a read) is not "no record": it is a failure.
        (SandboxFault(404, SpineError.RESOURCE_NOT_FOUND), (500, ErrorCode.INTERNAL)),
    ],
)
def test_server_errors_are_typed_refusals(stack, fault, expected):
    stack.sandbox.fault = fault

    response = stack.lookup(
        demographics=Demographics(given="Amelia", family="Hart", date_of_birth=date(2015, 3, 7))
    )

    assert error(response) == expected


def test_a_failing_cp_is_fails_the_lookup_rather_than_say_no_plan(stack):
    stack.sandbox.fault = None
    with running_stack(
        sandbox(), cpis_url=stack.fhir_url + "/nowhere"
    ) as broken:  # CP-IS answers 404 without an outcome
        response = broken.lookup(nhs=nhs_number(1))

    assert error(response) == (500, ErrorCode.INTERNAL)


def test_a_slow_server_is_unavailable_within_the_lookups_deadline(stack):
    stack.sandbox.delay_s = 1.5
    with running_stack(stack.sandbox, timeout_s=0.3) as impatient:
        started = time.monotonic()
        response = impatient.lookup(nhs=nhs_number(1))
        elapsed = time.monotonic() - started

    assert error(response) == (503, ErrorCode.UNAVAILABLE)
    assert elapsed < 1.4


def test_an_unreachable_server_is_unavailable(stack):
    with running_stack(sandbox(), pds_url="http://127.0.0.1:9/R4") as unreachable:
        response = unreachable.lookup(nhs=nhs_number(1))

    assert error(response) == (503, ErrorCode.UNAVAILABLE)


def test_the_connector_witnesses_the_gateways_audit_checkpoints(running, tmp_path):
    app = partial(create_fhir_app, pds_url=running.fhir_url + PDS_PATH)

    assert checkpoints_kept_by(app, tmp_path / "witness.db", "health") == [100, 200]
