"""Records written as CTFs and served back by the education connector keep what CTF carries."""

from datetime import UTC, datetime, timedelta

import httpx

from connectors.ctf import (
    create_ctf_app,
    load_school_contacts,
    read_ctf,
    write_ctf_folder,
    write_school_contacts,
)
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    Carer,
    ConnectorRecord,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import BackgroundServer
from connectors.synthetic.population import generate_population

CARRIED = ("name", "date_of_birth", "sex", "address", "school", "involvements")


def as_ctf_carries(carers: list[Carer] | None) -> list[Carer]:
    """CBDS has no code for a grandparent: one is written as a relative, and read back so."""
    return [
        c.model_copy(update={"relationship": "Relative"}) if c.relationship == "Grandmother" else c
        for c in carers or []
    ]


def lookup(client: httpx.Client, upn: str) -> list[ConnectorRecord]:
    request = LookupRequest(
        request_id="req-1",
        deadline=datetime.now(UTC) + timedelta(seconds=5),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="social_worker", organisation="LA383"),
        identifiers=Identifiers(upn=upn),
        fields=[FieldId(name) for name in CARRIED] + [FieldId.CARERS],
    )
    response = client.post(LOOKUP_PATH, content=request.model_dump_json())
    return LookupResponse.model_validate_json(response.content).records


def test_synthetic_education_records_round_trip_through_ctf_and_the_connector(tmp_path):
    population = generate_population(11, 200)
    records = population.education
    files = write_ctf_folder(records, tmp_path / "ctf")
    write_school_contacts(records, tmp_path / "schools.json")

    app = create_ctf_app(folder=tmp_path / "ctf", school_contacts=tmp_path / "schools.json")
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        served = {r.identifiers.upn: lookup(client, r.identifiers.upn or "") for r in records}

    assert len(files) == len({r.school.urn for r in records if r.school})
    for record in records:
        (back,) = served[record.identifiers.upn]
        assert back.record_id == record.identifiers.upn
        assert back.identifiers == Identifiers(upn=record.identifiers.upn)
        assert {f: getattr(back, f) for f in CARRIED} == {f: getattr(record, f) for f in CARRIED}
        assert back.carers == as_ctf_carries(record.carers)


def test_a_files_time_is_its_newest_records_as_of(tmp_path):
    records = generate_population(12, 60).education
    (path, *_) = write_ctf_folder(records, tmp_path)

    read = read_ctf(path.read_bytes())

    urn = read.source.urn
    assert read.created == max(r.as_of for r in records if r.school and r.school.urn == urn)


def test_the_school_contacts_file_holds_each_schools_safeguarding_lead(tmp_path):
    records = generate_population(13, 60).education
    write_school_contacts(records, tmp_path / "schools.json")

    contacts = load_school_contacts(tmp_path / "schools.json")

    for record in records:
        assert record.school is not None
        known = contacts.get(record.school.urn)
        assert known is not None
        assert known.safeguarding_lead is not None
        (involvement,) = record.involvements or []
        assert involvement.practitioner is not None
        assert known.safeguarding_lead.name == involvement.practitioner.name
