"""Never merge the wrong child. Lookups through a real gateway and the reference
connectors where records of two different children meet under one identifier."""

from __future__ import annotations

from datetime import date
from typing import Any

from connectors.check_digits import upn_check_letter
from connectors.protocol import (
    Address,
    Contact,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    Sex,
)
from tests.factories import (
    NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import reference_stack

UPN = "H801200001001"
OTHER_UPN = upn_check_letter("801200001002") + "801200001002"

LOOKUP = """
query Lookup($nhs: String, $upn: String, $demographics: DemographicsInput) {
  child(
    nhsNumber: $nhs, upn: $upn, demographics: $demographics, purpose: SAFEGUARDING_ENQUIRY
  ) {
    outcome complete
    ambiguity { reason }
    child {
      nhsNumber { value }
      name { given family }
      involvements { practitioner { name } provenance { source } }
      indicators { childProtectionPlan { value provenance { source } } }
      conflicts { field chosen disagreeing }
    }
    records { source method }
    sources { source status errorCode askedWith }
  }
}
"""

ROSES_WORKER = Involvement(
    service="children's social care",
    organisation="Leeds City Council",
    practitioner=Contact(name="Rosa Worker", role="social worker", phone="07700 900099"),
    lead=True,
)


def _lookup(tmp_path: Any, records: dict[str, list[Any]], **variables: Any) -> dict[str, Any]:
    with reference_stack(tmp_path, records) as stack:
        response = stack.post(
            {"query": LOOKUP, "variables": variables}, stack.token("social_worker")
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def _another_childs_case(nhs: str | None, upn: str | None) -> Any:
    """Social care's case of another child under `nhs` and `upn`, identical in name, birthday and
    address (twins' records keyed from one referral, or a child's record keyed onto the wrong
    identifiers), with her own social worker."""
    return social_care_record(
        identifiers=Identifiers(nhs_number=nhs, upn=upn, local_id="LA-000002"),
        record_id="LA-000002",
        involvements=[ROSES_WORKER],
        indicators=Indicators(child_protection_plan=True),
    )


def _shown(lookup: dict[str, Any]) -> bool:
    return "Rosa Worker" in str(lookup)


def _status(lookup: dict[str, Any], source: str) -> tuple[str, str | None]:
    answer = next(s for s in lookup["sources"] if s["source"] == source)
    return answer["status"], answer["errorCode"]


AMELIA_AT_SCHOOL = school_record(
    name=PersonName(given="Amelia", family="Hart"),
    identifiers=Identifiers(nhs_number=NHS, upn=UPN),
)


def test_an_nhs_lookup_does_not_merge_a_record_whose_upn_is_another_pupils(tmp_path):
    """Health and the school hold Amelia by her NHS number (the school with her UPN). Social
    care's record carries her NHS number but another pupil's UPN: by one identifier Amelia, by
    the other another child. Nothing may show its social worker as Amelia's unnoticed - the
    second round fails exactly such a record (RECORD_MISMATCH), a demographic search and a
    former UPN make it AMBIGUOUS; the first round merged it, with no conflict shown at all."""
    records = {
        "health": [health_record()],
        "education": [AMELIA_AT_SCHOOL],
        "social_care": [_another_childs_case(NHS, OTHER_UPN)],
    }
    lookup = _lookup(tmp_path, records, nhs=NHS)

    assert not _shown(lookup), lookup
    assert lookup["outcome"] == "AMBIGUOUS"
    assert lookup["ambiguity"]["reason"] == "UPNS_DIFFER"
    assert lookup["child"] is None


def test_a_upn_lookup_does_not_merge_two_records_with_different_nhs_numbers(tmp_path):
    """The school's record: Amelia, her UPN and NHS number. Social care's: the same UPN on a
    child with another NHS number - one UPN, two children, as the match stage rules for a former
    UPN. The gateway merged them, showing the other child's social worker and child protection
    plan as Amelia's (only the NHS number flagged as a conflict)."""
    other = "9000000009"
    amelia = health_record(identifiers=Identifiers(nhs_number=NHS, upn=UPN))
    records = {
        "health": [amelia],
        "education": [AMELIA_AT_SCHOOL],
        "social_care": [_another_childs_case(other, UPN)],
    }
    lookup = _lookup(tmp_path, records, upn=UPN)

    assert not _shown(lookup), lookup
    assert lookup["outcome"] == "AMBIGUOUS"
    assert lookup["ambiguity"]["reason"] == "NHS_NUMBERS_DIFFER"
    assert other not in str(lookup)


def test_an_nhs_lookup_still_links_the_new_and_the_old_upn_of_one_child(tmp_path):
    """A record under the new UPN listing the old one as former, and one still under the old
    UPN: one child, not two UPNs."""
    renumbered = _another_childs_case(NHS, OTHER_UPN).model_copy(
        update={
            "identifiers": Identifiers(
                nhs_number=NHS, upn=OTHER_UPN, local_id="LA-000002", former_upns=(UPN,)
            )
        }
    )
    records = {
        "health": [health_record()],
        "education": [AMELIA_AT_SCHOOL],
        "social_care": [renumbered],
    }
    lookup = _lookup(tmp_path, records, nhs=NHS)

    assert lookup["outcome"] == "FOUND"
    assert {r["source"] for r in lookup["records"]} == {"health", "education", "social_care"}
    assert _shown(lookup)


TWIN_HOME = Address(lines=["4 Twin Row", "Leeds"], postcode="LS6 2AB")
AMELIAS, ROSES = synthetic_nhs(21), synthetic_nhs(22)


def _twin(record: Any, nhs: str, record_id: str, given: str, **changes: Any) -> Any:
    return record(
        nhs=nhs,
        record_id=record_id,
        name=PersonName(given=given, family="Hart"),
        date_of_birth=date(2019, 3, 4),
        sex=Sex.FEMALE,
        address=TWIN_HOME,
        **changes,
    )


def test_a_twins_record_carrying_the_childs_nhs_number_is_not_linked_by_it_in_a_search(tmp_path):
    """Health holds both twins, Amelia and Rose: the search for Amelia has twins in view, and
    social care's case of Rose - under Rose's name, with Rose's social worker - is weighed as
    the other twin and rejected. But it carries Amelia's NHS number (keyed from the wrong
    twin), and the match stage linked it by that number, overriding the twin veto: Rose's
    social worker shown as Amelia's. The second round refuses exactly this record (a twin of a
    linked record, found by the NHS number asked: RECORD_MISMATCH)."""
    records = {
        "health": [
            _twin(health_record, AMELIAS, "H-A", "Amelia"),
            _twin(health_record, ROSES, "H-R", "Rose"),
        ],
        "education": [],
        "social_care": [
            _twin(social_care_record, AMELIAS, "LA-R", "Rose", involvements=[ROSES_WORKER])
        ],
    }
    demographics = {
        "givenName": "Amelia",
        "familyName": "Hart",
        "dateOfBirth": "2019-03-04",
        "postcode": "LS6 2AB",
        "sex": "FEMALE",
    }
    lookup = _lookup(tmp_path, records, demographics=demographics)

    assert not _shown(lookup), lookup
    assert "social_care" not in {r["source"] for r in lookup["records"]}
    # Asked again by Amelia's NHS number, social care sends a record the second round refuses:
    # the shield authority's answer in doubt, the search is hidden like one for nobody.
    assert lookup["outcome"] == "NOT_FOUND"
