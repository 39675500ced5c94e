"""The FHIR sandbox behaves as the published PDS and CP-IS specifications say, over real HTTP."""

from collections.abc import Iterator

import httpx
import pytest

from connectors.fhir import CPIS_PATH, PDS_PATH, FhirSandbox, SandboxFault, SpineError
from connectors.fhir.outcomes import outcome_code
from connectors.serving import BackgroundServer
from tests.fhir_population import AMELIA, AMELIE, JACKS, NOAHS, OLIVER, ZARA, nhs_number, sandbox


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FhirSandbox, httpx.Client]]:
    fhir = sandbox()
    with (
        BackgroundServer(fhir.app) as server,
        httpx.Client(base_url=server.url + PDS_PATH, timeout=10) as client,
    ):
        yield fhir, client


@pytest.fixture
def pds(served: tuple[FhirSandbox, httpx.Client]) -> Iterator[httpx.Client]:
    fhir, client = served
    yield client
    fhir.fault = None


def search(pds: httpx.Client, *params: tuple[str, str]) -> httpx.Response:
    return pds.get("/Patient", params=list(params))


def scores(response: httpx.Response) -> dict[str, float]:
    return {e["resource"]["id"]: e["search"]["score"] for e in response.json().get("entry", [])}


def test_a_patient_is_read_by_nhs_number_with_all_its_names(pds):
    response = pds.get(f"/Patient/{nhs_number(1)}")

    patient = response.json()
    assert response.status_code == 200
    assert patient["meta"]["security"][0]["code"] == "U"
    assert {name["use"] for name in patient["name"]} == {"usual", "old", "nickname"}


def test_a_restricted_patient_is_read_without_location(pds):
    patient = pds.get(f"/Patient/{nhs_number(4)}").json()

    assert patient["meta"]["security"][0]["code"] == "R"
    assert not {"address", "telecom", "generalPractitioner"} & set(patient)
    assert patient["name"][0]["family"] == "Ahmed"


def test_a_very_restricted_patient_is_read_without_names_either(pds):
    patient = pds.get(f"/Patient/{nhs_number(5)}").json()

    assert patient["meta"]["security"][0]["code"] == "V"
    assert not {"name", "address", "generalPractitioner"} & set(patient)


@pytest.mark.parametrize(
    ("number", "status", "code"),
    [
        (nhs_number(6), 404, SpineError.INVALIDATED_RESOURCE),  # redacted
        (nhs_number(99), 404, SpineError.RESOURCE_NOT_FOUND),
        ("9000000001", 400, SpineError.INVALID_RESOURCE_ID),  # wrong check digit
    ],
)
def test_reads_that_find_nobody_answer_with_an_operation_outcome(pds, number, status, code):
    response = pds.get(f"/Patient/{number}")

    assert (response.status_code, outcome_code(response.json())) == (status, code)


def test_a_fuzzy_search_finds_a_homophone_scored_below_an_exact_match(pds):
    response = search(
        pds,
        ("given", "Amelia"),
        ("family", "Harte"),
        ("birthdate", "eq2015-03-07"),
        ("_fuzzy-match", "true"),
    )

    found = scores(response)
    assert list(found) == [AMELIA.identifiers.nhs_number, AMELIE.identifiers.nhs_number]
    assert 1 > found[AMELIA.identifiers.nhs_number] > found[AMELIE.identifiers.nhs_number]


def test_a_fuzzy_search_finds_the_near_duplicate_as_well_best_first(pds):
    response = search(
        pds,
        ("given", "Amelia"),
        ("family", "Hart"),
        ("birthdate", "eq2015-03-07"),
        ("_fuzzy-match", "true"),
    )

    entries = response.json()["entry"]
    assert [e["resource"]["id"] for e in entries] == [nhs_number(1), nhs_number(2)]
    assert entries[0]["search"]["score"] == 1.0 > entries[1]["search"]["score"]


def test_exact_match_keeps_only_exact_scores(pds):
    response = search(
        pds,
        ("given", "Amelia"),
        ("family", "Hart"),
        ("birthdate", "eq2015-03-07"),
        ("_fuzzy-match", "true"),
        ("_exact-match", "true"),
    )

    assert scores(response) == {nhs_number(1): 1.0}


def test_a_search_returns_only_usual_nickname_and_temporary_names(pds):
    response = search(pds, ("family", "Hart"), ("birthdate", "eq2015-03-07"))

    amelia = next(
        e["resource"] for e in response.json()["entry"] if e["resource"]["id"] == nhs_number(1)
    )
    assert {name["use"] for name in amelia["name"]} == {"usual", "nickname"}


def test_a_fuzzy_search_finds_a_former_family_name_and_transposed_names(pds):
    former = search(
        pds,
        ("given", "Amelia"),
        ("family", "Walsh"),
        ("birthdate", "eq2015-03-07"),
        ("_fuzzy-match", "true"),
    )
    transposed = search(
        pds,
        ("given", "Hart"),
        ("family", "Amelia"),
        ("birthdate", "eq2015-03-07"),
        ("_fuzzy-match", "true"),
    )

    assert nhs_number(1) in scores(former)
    assert nhs_number(1) in scores(transposed)


def test_a_non_fuzzy_search_matches_part_of_a_compound_name_only_by_wildcard(pds):
    whole = search(pds, ("family", "Smith-Jones"), ("birthdate", "eq2014-06-01"))
    part = search(pds, ("family", "Smith"), ("birthdate", "eq2014-06-01"))
    wildcard = search(pds, ("family", "Smith*"), ("birthdate", "eq2014-06-01"))

    assert set(scores(whole)) == {OLIVER.identifiers.nhs_number}
    assert scores(part) == {}
    assert set(scores(wildcard)) == {OLIVER.identifiers.nhs_number}


def test_a_search_by_postcode_never_returns_a_restricted_patient(pds):
    by_names = search(
        pds,
        ("given", "Zara"),
        ("family", "Ahmed"),
        ("birthdate", "eq2016-09-12"),
        ("_fuzzy-match", "true"),
    )
    by_postcode = search(
        pds,
        ("family", "Ahmed"),
        ("birthdate", "eq2016-09-12"),
        ("gender", "female"),
        ("address-postcode", "LS8 2QQ"),
        ("_fuzzy-match", "true"),
    )

    assert set(scores(by_names)) == {ZARA.identifiers.nhs_number}
    assert scores(by_postcode) == {}


def test_more_matches_than_max_results_is_too_many_matches_not_a_short_list(pds):
    criteria = (("given", "Noah"), ("family", "Taylor"), ("birthdate", "eq2017-02-02"))

    within = search(pds, *criteria, ("_fuzzy-match", "true"), ("_max-results", "3"))
    beyond = search(pds, *criteria, ("_fuzzy-match", "true"), ("_max-results", "2"))

    assert len(scores(within)) == len(NOAHS)
    assert (beyond.status_code, outcome_code(beyond.json())) == (200, SpineError.TOO_MANY_MATCHES)


def test_a_redacted_patient_is_never_returned_by_a_search(pds):
    response = search(pds, ("family", "Green"), ("birthdate", "eq2012-01-20"))

    assert scores(response) == {}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ((("family", "Hart"),), SpineError.INVALID_SEARCH_DATA),  # no date of birth
        (
            (("given", "Amelia"), ("birthdate", "eq2015-03-07"), ("_fuzzy-match", "true")),
            SpineError.INVALID_SEARCH_DATA,
        ),
        (
            (
                ("family", "Ha*"),
                ("given", "Amelia"),
                ("birthdate", "eq2015-03-07"),
                ("_fuzzy-match", "true"),
            ),
            SpineError.INVALID_SEARCH_DATA,
        ),  # wildcard when fuzzy
        ((("family", "Hart"), ("birthdate", "07/03/2015")), SpineError.INVALID_VALUE),
        (
            (("family", "Hart"), ("birthdate", "eq2015-03-07"), ("_max-results", "51")),
            SpineError.INVALID_VALUE,
        ),
        (
            (("family", "Hart"), ("birthdate", "eq2015-03-07"), ("shoe-size", "4")),
            SpineError.ADDITIONAL_PROPERTIES,
        ),
    ],
)
def test_searches_pds_would_refuse_are_refused_with_their_code(pds, params, code):
    response = search(pds, *params)

    assert (response.status_code, outcome_code(response.json())) == (400, code)


def test_related_people_of_a_restricted_patient_are_an_empty_bundle(pds):
    open_record = pds.get(f"/Patient/{nhs_number(1)}/RelatedPerson").json()
    restricted = pds.get(f"/Patient/{nhs_number(4)}/RelatedPerson").json()

    assert [e["resource"]["resourceType"] for e in open_record["entry"]] == ["RelatedPerson"] * 2
    assert restricted["entry"] == []


def test_cp_is_flags_are_served_per_child(served):
    _, client = served
    base = str(client.base_url).rstrip("/").replace(PDS_PATH, CPIS_PATH)

    flags = httpx.get(f"{base}/Flag", params={"patient": nhs_number(1)}).json()
    none = httpx.get(f"{base}/Flag", params={"patient": nhs_number(3)}).json()

    assert [e["resource"]["resourceType"] for e in flags["entry"]] == ["Flag"]
    assert none["entry"] == []


def test_a_fault_answers_every_call_with_its_outcome(served, pds):
    fhir, _ = served
    fhir.fault = SandboxFault(503, SpineError.SERVICE_UNAVAILABLE)

    response = pds.get(f"/Patient/{nhs_number(1)}")

    assert (response.status_code, outcome_code(response.json())) == (
        503,
        SpineError.SERVICE_UNAVAILABLE,
    )


def test_twelve_namesakes_exist_for_the_too_many_matches_tests():
    assert len({record.identifiers.nhs_number for record in JACKS}) == 12
