"""Never merge the wrong child, in the first round of a lookup by identifier (gateway.match): a
record carrying the NHS number or UPN asked with, but another date of birth than the child's, is
another child's recorded under that identifier. A source holding every child (health, the
register, in the reference configuration) says which date of birth is the child's; without one
the lookup is AMBIGUOUS. Real reference connectors on loopback, the real gateway, policy and
audit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from connectors.protocol import ConnectorRecord, Contact, Identifiers, Indicators, Involvement
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import reference_connectors, running_gateway

UPN = "H801200001001"
ANOTHER_BIRTHDAY = date(2018, 7, 21)

LOOKUP = """
query Lookup($nhs: String, $upn: String) {
  child(nhsNumber: $nhs, upn: $upn, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete
    ambiguity { reason records { source count } }
    child {
      dateOfBirth { value }
      involvements { practitioner { name } provenance { source } }
      indicators { childProtectionPlan { value provenance { source } } }
      conflicts { field }
    }
    records { source method }
    sources { source status errorCode recordsMatched recordsUnmatched }
  }
}
"""

ROSAS_WORKER = Involvement(
    service="children's social care",
    organisation="Leeds City Council",
    practitioner=Contact(name="Rosa Worker", role="social worker", phone="07700 900099"),
    lead=True,
)


def _another_childs_case(born: date | None = ANOTHER_BIRTHDAY, **identifiers: Any) -> Any:
    """Social care's case of a child born on `born`, keyed under Amelia's identifiers (by
    default her NHS number), with her own social worker."""
    held = identifiers or {"nhs_number": NHS}
    return social_care_record(
        identifiers=Identifiers(local_id="LA-000002", **held),
        record_id="LA-000002",
        date_of_birth=born,
        involvements=[ROSAS_WORKER],
        indicators=Indicators(child_protection_plan=True),
    )


def _lookup(
    tmp: Path,
    records: dict[str, Sequence[ConnectorRecord]],
    *,
    registers: Collection[str] = ("health",),
    **variables: str,
) -> dict[str, Any]:
    """The lookup through a gateway over reference connectors serving `records`, where exactly
    the sources named in `registers` hold every child."""
    with reference_connectors(tmp, records) as sources:
        configured = [
            s.model_copy(update={"holds_every_child": s.name in registers}) for s in sources
        ]
        with running_gateway(tmp, configured) as stack:
            token = stack.token("social_worker")
            response = stack.post({"query": LOOKUP, "variables": variables}, token)
    body = response.raise_for_status().json()
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def _status(lookup: dict[str, Any], source: str) -> tuple[str, str | None]:
    answer = next(s for s in lookup["sources"] if s["source"] == source)
    return answer["status"], answer["errorCode"]


def _practitioners(lookup: dict[str, Any]) -> set[str]:
    involvements = lookup["child"]["involvements"]
    return {i["practitioner"]["name"] for i in involvements if i["practitioner"]}


def _amelia_with(case: ConnectorRecord) -> dict[str, list[ConnectorRecord]]:
    """Amelia (born 2019-03-04) at health and at school, and `case` at social care."""
    return {"health": [health_record()], "education": [school_record()], "social_care": [case]}


def test_a_record_under_the_nhs_number_born_on_another_day_than_the_registers_is_not_merged(
    tmp_path,
):
    """Health, the register, holds Amelia by her NHS number; social care's record carries the same
    number on a child born on another day. The first round merged it: Rosa Worker shown as
    Amelia's social worker, the other child's child protection plan as hers, the date of birth
    only a conflict."""
    lookup = _lookup(tmp_path, _amelia_with(_another_childs_case()), nhs=NHS)

    assert lookup["outcome"] == "FOUND"
    assert "Rosa Worker" not in str(lookup), lookup
    assert _status(lookup, "social_care") == ("FAILED", "RECORD_MISMATCH")
    assert _status(lookup, "health") == ("ANSWERED", None)
    assert {r["source"] for r in lookup["records"]} == {"health", "education"}
    child = lookup["child"]
    assert child["dateOfBirth"]["value"] == "2019-03-04"
    assert "date_of_birth" not in {c["field"] for c in child["conflicts"]}
    assert child["indicators"]["childProtectionPlan"] is None  # the other child's plan, unused
    # Social care, an authority that shields, has sent nothing usable: the child's shielding is
    # in doubt, and her location (involvements' contacts) withheld, as for any failed source.
    assert child["involvements"] == []
    # The failed source counts nothing: neither linked nor unlinked.
    social_care = next(s for s in lookup["sources"] if s["source"] == "social_care")
    assert (social_care["recordsMatched"], social_care["recordsUnmatched"]) == (0, 0)
    assert lookup["complete"] is False


def test_without_a_register_records_born_on_different_days_under_one_nhs_number_are_ambiguous(
    tmp_path,
):
    """The same records where no source holds every child: nobody can say which date of birth is
    the child's, so nothing is merged."""
    lookup = _lookup(tmp_path, _amelia_with(_another_childs_case()), registers=set(), nhs=NHS)

    assert lookup["outcome"] == "AMBIGUOUS"
    assert lookup["child"] is None
    assert lookup["ambiguity"]["reason"] == "DATES_OF_BIRTH_DIFFER"
    counts = {r["source"]: r["count"] for r in lookup["ambiguity"]["records"]}
    assert counts == {"health": 1, "education": 1, "social_care": 1}
    assert "Rosa Worker" not in str(lookup)


def test_registers_disagreeing_on_the_date_of_birth_make_the_lookup_ambiguous(tmp_path):
    """Two sources that each hold every child give the number two birthdays: neither settles it."""
    lookup = _lookup(
        tmp_path,
        _amelia_with(_another_childs_case()),
        registers={"health", "social_care"},
        nhs=NHS,
    )

    assert lookup["outcome"] == "AMBIGUOUS"
    assert lookup["ambiguity"]["reason"] == "DATES_OF_BIRTH_DIFFER"
    assert "Rosa Worker" not in str(lookup)


def test_a_upn_lookup_no_register_answers_is_ambiguous_on_two_birthdays(tmp_path):
    """By UPN, health (no UPN on its record) links nothing in the first round: the school's and
    social care's records carry the UPN with two birthdays, and no register says which is the
    child's."""
    case = _another_childs_case(nhs_number=None, upn=UPN)
    lookup = _lookup(tmp_path, _amelia_with(case), upn=UPN)

    assert lookup["outcome"] == "AMBIGUOUS"
    assert lookup["ambiguity"]["reason"] == "DATES_OF_BIRTH_DIFFER"
    assert "Rosa Worker" not in str(lookup)


def test_a_record_without_a_date_of_birth_contradicts_nothing(tmp_path):
    """Social care's record under the NHS number holds no date of birth: nothing says it is
    another child's, and it links as before - with or without a register."""
    for registers in ({"health"}, set()):
        case = _another_childs_case(born=None)
        lookup = _lookup(tmp_path, _amelia_with(case), registers=registers, nhs=NHS)

        assert lookup["outcome"] == "FOUND", registers
        assert _status(lookup, "social_care") == ("ANSWERED", None)
        assert ("social_care", "NHS_NUMBER") in {
            (r["source"], r["method"]) for r in lookup["records"]
        }
        assert "Rosa Worker" in _practitioners(lookup)


def test_records_born_on_the_same_day_link_as_before(tmp_path):
    """Social care's record under the NHS number with Amelia's date of birth is hers: linked, its
    social worker and plan shown - with or without a register."""
    for registers in ({"health"}, set()):
        lookup = _lookup(tmp_path, _amelia_with(social_care_record()), registers=registers, nhs=NHS)

        assert lookup["outcome"] == "FOUND", registers
        assert lookup["complete"] is True
        assert _status(lookup, "social_care") == ("ANSWERED", None)
        assert "Sam Social" in _practitioners(lookup)
        plan = lookup["child"]["indicators"]["childProtectionPlan"]
        assert (plan["value"], plan["provenance"]["source"]) == (True, "social_care")


def test_the_registers_date_of_birth_decides_even_when_only_the_other_source_has_a_second_record(
    tmp_path,
):
    """Social care holding Amelia's own record and, under the same number, another child's born on
    another day: the source has misbehaved and none of its records is used, as a later round
    fails it."""
    records = {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record(), _another_childs_case()],
    }
    lookup = _lookup(tmp_path, records, nhs=NHS)

    assert lookup["outcome"] == "FOUND"
    assert _status(lookup, "social_care") == ("FAILED", "RECORD_MISMATCH")
    assert "Rosa Worker" not in str(lookup)
    assert "Sam Social" not in str(lookup)
