"""A demographic search counts against the daily cap of distinct children under a pseudonym of
the search as matching reads it (gateway.audit.pseudonyms), the house and carers' names given with
it included: matching weighs them, so the same demographics with another house and carer single
out another child, which must be refused at the cap and alerted, not admitted as the same one."""

from datetime import date

from connectors.protocol import Address, Carer, PersonName, Sex
from tests.factories import health_record, synthetic_nhs
from tests.stack import reference_connectors, running_gateway

SEARCH = """
query Search($d: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $d, purpose: $purpose) { outcome child { nhsNumber { value } } }
}"""
# The search's own details are weak on purpose (a date of birth a day out, a postcode neither
# child lives at): name, date and sex alone score below the link threshold, and the house and a
# carer named with it - evidence where the postcodes differ - carry one child over it.
CORE = {
    "givenName": "Oliver",
    "familyName": "Smith",
    "dateOfBirth": "2018-05-07",
    "postcode": "LS8 1XY",
    "sex": "MALE",
}


def _oliver(n, record_id, house, carer, postcode):
    return health_record(
        nhs=synthetic_nhs(n),
        record_id=record_id,
        name=PersonName(given="Oliver", family="Smith"),
        date_of_birth=date(2018, 5, 6),
        sex=Sex.MALE,
        address=Address(lines=[house, "Leeds"], postcode=postcode),
        carers=[Carer(name=carer, relationship="mother", parental_responsibility=True)],
    )


def test_a_search_cannot_single_out_more_children_than_the_daily_cap_by_its_corroboration(
    tmp_path,
):
    records = {
        "health": [
            _oliver(31, "H-A", "1 Test Street", "Jo Smith", "LS6 2AB"),
            _oliver(32, "H-B", "9 Other Road", "Kim Smith", "LS7 3CD"),
        ]
    }
    with (
        reference_connectors(tmp_path, records) as sources,
        running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway,
    ):
        token = gateway.token("gp", name="Harvester")
        answers = []
        for house, carer in (("1 Test Street", "Jo Smith"), ("9 Other Road", "Kim Smith")):
            demographics = CORE | {"addressLines": [house], "carerNames": [carer]}
            variables = {"d": demographics, "purpose": "DIRECT_CARE"}
            answers.append(gateway.post({"query": SEARCH, "variables": variables}, token).json())
        alerts = gateway.components.audit.alerts()
    first, second = answers
    assert first["data"]["child"]["child"]["nhsNumber"]["value"] == synthetic_nhs(31)
    released = {
        a["data"]["child"]["child"]["nhsNumber"]["value"]
        for a in answers
        if a.get("data") and a["data"]["child"]["child"]
    }
    # A cap of one child a day: the second child is refused (and alerted), not released.
    assert released == {synthetic_nhs(31)}, f"{len(released)} children released: {released}"
    assert second["errors"][0]["extensions"]["code"] == "LOOKUP_CAP_REACHED"
    assert [a["kind"] for a in alerts] == ["DISTINCT_CHILDREN_CAP"]
