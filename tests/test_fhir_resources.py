"""Records written as FHIR and read back through the connector are the records, for what PDS and
CP-IS carry; and the health profile says what the connector provides."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.fhir import (
    CPIS_PATH,
    DEMO_AUTHORITY,
    HEALTH_FHIR_PROFILE,
    PDS_PATH,
    FhirSandbox,
    create_fhir_app,
    fhir_profile,
    plans_from_record,
)
from connectors.protocol import (
    LOOKUP_PATH,
    ConnectorRecord,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Indicators,
    Involvement,
    LookupResponse,
)
from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import BackgroundServer
from connectors.synthetic.population import generate_population
from connectors.trust import SIGNATURE_HEADER, AnswerSigner, StaticKey, TrustError, verify_answer
from tests.fhir_population import AMELIA, lookup_body, running_stack, sandbox
from tests.stack import GATEWAY_KEY, GATEWAY_SIGNER, gateway_verifier

PDS_FIELDS = ("name", "date_of_birth", "sex", "address", "carers")


@pytest.fixture(scope="module")
def population():
    return generate_population(seed=7, children=60)


def test_synthetic_health_records_survive_the_round_trip_through_pds(population):
    health = [r for r in population.health if r.identifiers.nhs_number]
    with running_stack(FhirSandbox(health)) as stack:
        answers = {
            r.identifiers.nhs_number: stack.lookup(nhs=r.identifiers.nhs_number) for r in health
        }

    assert len(health) > 20
    for record in health:
        [back] = LookupResponse.model_validate_json(
            answers[record.identifiers.nhs_number].content
        ).records
        assert back.identifiers.nhs_number == record.identifiers.nhs_number
        assert back.flags == record.flags
        assert back.as_of == record.as_of
        expected = record.model_dump(include=set(PDS_FIELDS))
        if record.flags.restricted:  # PDS releases no location and no related people
            expected |= {"address": None, "carers": None}
        assert back.model_dump(include=set(PDS_FIELDS)) == expected
        gp = None if record.flags.restricted or record.gp_practice is None else record.gp_practice
        assert back.gp_practice == (gp and gp.model_copy(update={"phone": None}))


def test_social_care_plans_survive_the_round_trip_through_cp_is(population):
    children = {r.identifiers.nhs_number: r for r in population.health if r.identifiers.nhs_number}
    cared_for = [
        r
        for r in population.social_care
        if r.identifiers.nhs_number in children and r.indicators is not None
    ]
    plans = [plan for r in cared_for for plan in plans_from_record(r, DEMO_AUTHORITY)]
    with running_stack(FhirSandbox(list(children.values()), plans)) as stack:
        answers = [
            LookupResponse.model_validate_json(
                stack.lookup(nhs=r.identifiers.nhs_number).content
            ).records[0]
            for r in cared_for
        ]

    assert any(r.indicators.child_protection_plan or r.indicators.looked_after for r in cared_for)
    for original, back in zip(cared_for, answers, strict=True):
        assert back.indicators == Indicators(
            child_protection_plan=original.indicators.child_protection_plan,
            looked_after=original.indicators.looked_after,
        )
        on_plan = original.indicators.child_protection_plan or original.indicators.looked_after
        assert [i.organisation for i in back.involvements] == (
            [DEMO_AUTHORITY.name] if on_plan else []
        )


def test_a_plan_starts_when_the_lead_involvement_began():
    record = ConnectorRecord(
        record_id="LA-1",
        identifiers=AMELIA.identifiers,
        involvements=[Involvement(service="Social care", lead=True, since=date(2022, 4, 1))],
        indicators=Indicators(child_protection_plan=True, looked_after=True),
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
    )

    plans = plans_from_record(record, DEMO_AUTHORITY)

    assert [(p.kind.value, p.start) for p in plans] == [
        ("child_protection", date(2022, 4, 1)),
        ("looked_after", date(2022, 4, 1)),
    ]


def test_the_sandbox_loads_what_childlookup_synth_writes(tmp_path: Path, population):
    from connectors.synthetic.files import write_population

    write_population(population, tmp_path)

    loaded = FhirSandbox.from_files(tmp_path / "health.jsonl", tmp_path / "social_care.jsonl")

    with BackgroundServer(loaded.app) as server:
        number = population.health[0].identifiers.nhs_number
        response = httpx.get(f"{server.url}{PDS_PATH}/Patient/{number}")
    assert response.json()["id"] == number


def test_the_profile_stands_in_for_the_reference_health_connector():
    reference = REFERENCE_AGENCIES["health"]

    assert (HEALTH_FHIR_PROFILE.name, HEALTH_FHIR_PROFILE.holds_every_child) == ("health", True)
    assert HEALTH_FHIR_PROFILE.default_port == reference.default_port
    assert not HEALTH_FHIR_PROFILE.shield_authority
    assert {FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER, FieldId.INVOLVEMENTS} <= set(
        HEALTH_FHIR_PROFILE.provides
    )
    assert FieldId.SENSITIVE_SERVICE_DETAILS not in HEALTH_FHIR_PROFILE.provides
    assert FieldId.LOOKED_AFTER not in fhir_profile(with_cpis=False).provides


CONNECTOR_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def signed_connector() -> Iterator[str]:
    fhir = sandbox()
    with BackgroundServer(fhir.app) as server:
        app = create_fhir_app(
            pds_url=server.url + PDS_PATH,
            cpis_url=server.url + CPIS_PATH,
            verifier=gateway_verifier(GATEWAY_KEY.public_key()),
            signer=AnswerSigner(CONNECTOR_KEY),
        )
        with BackgroundServer(app) as connector:
            yield connector.url


def signed_lookup(url: str, body: bytes) -> httpx.Response:
    headers = {"authorization": GATEWAY_SIGNER.authorization("health", body)}
    return httpx.post(url + LOOKUP_PATH, content=body, headers=headers)


def test_the_app_answers_only_requests_the_gateway_signed(signed_connector):
    body = lookup_body(nhs=AMELIA.identifiers.nhs_number)

    unsigned = httpx.post(signed_connector + LOOKUP_PATH, content=body)
    signed = signed_lookup(signed_connector, body)

    assert ErrorResponse.model_validate_json(unsigned.content).error.code == (
        ErrorCode.UNAUTHENTICATED
    )
    assert LookupResponse.model_validate_json(signed.content).records[0].name == AMELIA.name


@pytest.mark.anyio
async def test_the_app_signs_its_answers_as_the_health_source(signed_connector):
    response = signed_lookup(signed_connector, lookup_body(nhs=AMELIA.identifiers.nhs_number))

    await verify_answer(
        response.headers.get(SIGNATURE_HEADER),
        response.content,
        StaticKey(CONNECTOR_KEY.public_key()),
        source="health",
    )
    with pytest.raises(TrustError):
        await verify_answer(
            response.headers.get(SIGNATURE_HEADER),
            response.content,
            StaticKey(CONNECTOR_KEY.public_key()),
            source="social_care",
        )
