from datetime import UTC, date, datetime

from connectors.minimisation import minimise
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    FieldId,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    School,
    Sex,
)

HEALTH_VISITING = Involvement(
    service="Health visiting",
    organisation="Northshire Community Health",
    practitioner=Contact(name="Sam Okafor", role="Health visitor", phone="01632 960001"),
    lead=True,
    since=date(2024, 3, 1),
)
SEXUAL_HEALTH = Involvement(
    service="Sexual health clinic",
    organisation="Northshire Sexual Health",
    practitioner=Contact(name="Dr Lee", phone="01632 960002"),
    since=date(2025, 1, 6),
    until=date(2025, 6, 30),
    sensitive=True,
    broker=Contact(name="Safeguarding hub", phone="01632 960003"),
)

FULL_RECORD = ConnectorRecord(
    record_id="H-1",
    identifiers=Identifiers(nhs_number="9434765919", upn="A801200001001", local_id="L-1"),
    name=PersonName(given="Ada", family="Smith", former_family=["Jones"]),
    date_of_birth=date(2012, 5, 4),
    sex=Sex.FEMALE,
    address=Address(lines=["1 High Street", "Northtown"], postcode="NT1 1AA"),
    school=School(urn="100001", name="Northtown Academy"),
    gp_practice=GpPractice(ods_code="A81001", name="High Street Surgery"),
    carers=[Carer(name="Beth Smith", relationship="mother", parental_responsibility=True)],
    involvements=[HEALTH_VISITING, SEXUAL_HEALTH],
    indicators=Indicators(
        child_protection_plan=True, looked_after=False, child_in_need=True, early_help=False
    ),
    flags=RecordFlags(restricted=True),
    as_of=datetime(2025, 7, 1, 9, 30, tzinfo=UTC),
)


def test_nothing_requested_leaves_only_what_matching_and_shielding_need():
    minimised = minimise(FULL_RECORD, [])

    assert minimised == ConnectorRecord(
        record_id="H-1",
        identifiers=FULL_RECORD.identifiers,
        flags=RecordFlags(restricted=True),
        as_of=FULL_RECORD.as_of,
    )


def test_requested_fields_are_kept_and_the_rest_become_null():
    minimised = minimise(FULL_RECORD, [FieldId.NAME, FieldId.SCHOOL])

    assert minimised.name == FULL_RECORD.name
    assert minimised.school == FULL_RECORD.school
    assert minimised.date_of_birth is None
    assert minimised.address is None
    assert minimised.gp_practice is None
    assert minimised.carers is None
    assert minimised.involvements is None
    assert minimised.indicators is None


def test_requesting_every_field_loses_nothing():
    assert minimise(FULL_RECORD, list(FieldId)) == FULL_RECORD


def test_only_requested_indicators_are_answered():
    minimised = minimise(FULL_RECORD, [FieldId.CHILD_PROTECTION_PLAN, FieldId.EARLY_HELP])

    assert minimised.indicators == Indicators(child_protection_plan=True, early_help=False)


def test_sensitive_service_details_alone_do_not_release_involvements():
    minimised = minimise(FULL_RECORD, [FieldId.SENSITIVE_SERVICE_DETAILS])

    assert minimised.involvements is None


def test_sensitive_involvement_keeps_only_the_broker_route_unless_details_requested():
    minimised = minimise(FULL_RECORD, [FieldId.INVOLVEMENTS])

    # Its dates go with the provider: when a sexual-health service began is about the child too.
    assert minimised.involvements == [
        HEALTH_VISITING,
        Involvement(service=None, sensitive=True, broker=SEXUAL_HEALTH.broker),
    ]


def test_sensitive_service_details_release_the_provider():
    minimised = minimise(FULL_RECORD, [FieldId.INVOLVEMENTS, FieldId.SENSITIVE_SERVICE_DETAILS])

    assert minimised.involvements == [HEALTH_VISITING, SEXUAL_HEALTH]


def test_minimised_record_is_still_valid_protocol():
    minimised = minimise(FULL_RECORD, [FieldId.INVOLVEMENTS, FieldId.LOOKED_AFTER])

    assert ConnectorRecord.model_validate_json(minimised.model_dump_json()) == minimised


def test_a_record_holding_only_what_was_requested_still_loses_a_sensitive_provider():
    record = ConnectorRecord(
        record_id="H-2",
        identifiers=FULL_RECORD.identifiers,
        involvements=[HEALTH_VISITING, SEXUAL_HEALTH],
        as_of=FULL_RECORD.as_of,
    )

    minimised = minimise(record, [FieldId.INVOLVEMENTS])

    assert minimised.involvements is not None
    assert minimised.involvements[1].service is None
    assert minimised.involvements[1].practitioner is None
    assert minimised.involvements[1].broker == SEXUAL_HEALTH.broker


def test_a_sensitive_involvement_already_without_its_provider_still_loses_its_dates():
    dated = Involvement(service=None, since=date(2025, 1, 6), sensitive=True, broker=None)
    record = ConnectorRecord(
        record_id="H-3",
        identifiers=FULL_RECORD.identifiers,
        involvements=[dated],
        as_of=FULL_RECORD.as_of,
    )

    minimised = minimise(record, [FieldId.INVOLVEMENTS])

    assert minimised.involvements == [Involvement(service=None, sensitive=True)]


def test_a_record_holding_only_requested_fields_still_loses_unrequested_indicators():
    record = ConnectorRecord(
        record_id="LA-1",
        identifiers=FULL_RECORD.identifiers,
        indicators=Indicators(child_protection_plan=True, looked_after=True),
        as_of=FULL_RECORD.as_of,
    )

    minimised = minimise(record, [FieldId.CHILD_PROTECTION_PLAN])

    assert minimised.indicators == Indicators(child_protection_plan=True)
