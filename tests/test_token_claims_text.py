"""A token's caller claims must be text the audit log can hold: a control character is refused at
the edge, before any agency is asked, not where the audit record is written after they were."""

import pytest

from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_stack

SUBJECT = "idp-user-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    records = {"health": [health_record()]}
    with reference_stack(tmp_path_factory.mktemp("token-claims"), records) as gateway:
        yield gateway


def _token(gateway, **claims):
    return gateway.signed_token(**({"sub": SUBJECT} | claims))


def _lookup(gateway, token):
    variables = {"nhs": NHS, "purpose": "SAFEGUARDING_ENQUIRY"}
    return gateway.post({"query": LOOKUP, "variables": variables}, token)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "idp-user-\x00"},
        {"role": "social_worker\x00"},
        {"org": "ORG1\x00"},
        {"org": "ORG1\x1b[2K"},
        {"sub": "idp-user-\x85"},
    ],
    ids=["subject NUL", "role NUL", "organisation NUL", "organisation escape", "subject C1"],
)
def test_a_token_whose_caller_claims_hold_a_control_character_is_refused_at_the_edge(stack, claims):
    before = len(stack.components.audit.records())

    response = _lookup(stack, _token(stack, **claims))

    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert len(stack.components.audit.records()) == before


def test_a_name_holding_a_control_character_falls_back_to_the_subject(stack):
    response = _lookup(stack, _token(stack, name="Pat\x00 Practitioner"))

    answer = response.json()
    assert answer["data"]["child"]["outcome"] == "FOUND", answer
    record = stack.audited(answer["data"]["child"]["auditId"])
    assert record["access"]["name"] == SUBJECT
