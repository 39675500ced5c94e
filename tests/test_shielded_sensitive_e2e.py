"""A shielded child's answer does not say whether the child has a sensitive service (sexual
health, mental health, substance misuse): every field but identity is withheld, the involvements
included, and `sensitive_service_details` was listed as withheld only for a shielded child who had
such a service - its presence in the list was the disclosure (gateway.decide.SHIELD_REASONS).

DOMAIN.md: 'A shielded record shows only name, sex, date of birth and ID'. Real gateway, real
Rego, reference connectors on loopback."""

import pytest

from connectors.protocol import Identifiers, RecordFlags
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.stack import reference_stack

WITH_CAMHS = synthetic_nhs(81)
WITHOUT = synthetic_nhs(82)


def _health(nhs, sensitive):
    record = health_record(nhs, record_id=f"H-{nhs}")
    kept = [i for i in record.involvements or [] if i.sensitive == sensitive or not i.sensitive]
    return record.model_copy(update={"involvements": kept})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shielded-sensitive")
    records = {
        "health": [_health(WITH_CAMHS, True), _health(WITHOUT, False)],
        "social_care": [
            social_care_record(
                nhs,
                record_id=f"LA-{nhs}",
                identifiers=Identifiers(nhs_number=nhs, local_id=f"LA-{nhs}"),
                flags=RecordFlags(shielded=True),
            )
            for nhs in (WITH_CAMHS, WITHOUT)
        ],
    }
    with reference_stack(tmp, records) as gateway:
        yield gateway


@pytest.mark.parametrize(
    ("role", "purpose"),
    [("social_worker", "SAFEGUARDING_ENQUIRY"), ("ed_clinician", "DIRECT_CARE")],
)
def test_a_shielded_childs_answer_does_not_say_whether_they_have_a_sensitive_service(
    stack, role, purpose
):
    def withheld(nhs):
        answer = stack.lookup(role, nhs, purpose)["data"]["child"]
        assert answer["outcome"] == "FOUND"
        assert answer["child"]["involvements"] == []  # nothing but identity is shown
        return {(w["source"], w["field"], w["reason"]) for w in answer["withheld"]}

    assert withheld(WITH_CAMHS) == withheld(WITHOUT)
