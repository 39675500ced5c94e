"""GraphQL errors name what was wrong - which variable, which field, what was expected - and never
repeat the value sent: a demographic search's values are a child's name and date of birth."""

import logging

import pytest
from graphql import GraphQLError

from resolvers.error_messages import GENERIC, safe_message
from resolvers.schema import build_schema
from tests.factories import NHS, health_record
from tests.stack import reference_stack

GIVEN, FAMILY, BORN = "Zephyrine", "Quillfeather", "2015-03-07"
SECRETS = (GIVEN, FAMILY, BORN, "07/03/2015", "20150307")

SEARCH = """
query Search($d: DemographicsInput!) {
  child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) { outcome }
}
"""
CHILD = {"givenName": GIVEN, "familyName": FAMILY, "dateOfBirth": BORN}
PERSON = f'givenName: "{GIVEN}", familyName: "{FAMILY}", dateOfBirth: "{BORN}"'


def _inline(fields: str) -> str:
    return f"{{ child(demographics: {{{fields}}}, purpose: SAFEGUARDING_ENQUIRY) {{ outcome }} }}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("messages"), {"health": [health_record()]}) as gw:
        yield gw


def _refused(stack, body, caplog):
    """The one error of `body`'s refusal, checked to hold none of the child's details, in the
    response or in anything logged while answering it."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = stack.post(body, stack.token("social_worker"))
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in SECRETS:
        assert secret not in response.text
        assert secret not in logged
    errors = response.json()["errors"]
    assert len(errors) >= 1
    return errors[0]


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"d": CHILD | {"knownAs": ["Millie", None]}}, ["$d", "knownAs[1]", "String!"]),
        (
            {"d": CHILD | {"postcode": "LS6 3AB", "dateOfBirth": "07/03/2015"}},
            ["$d", "dateOfBirth", "Date"],
        ),
        ({"d": CHILD | {"postcode": "LS6 3AB", "sex": FAMILY}}, ["$d", "sex", "Sex"]),
        (
            {"d": CHILD | {"postcode": "LS6 3AB", "givenName": 20150307}},
            ["$d", "givenName", "String"],
        ),
        ({"d": CHILD | {"postcode": "LS6 3AB", "nhs": GIVEN}}, ["$d", "DemographicsInput"]),
        ({"d": f"{GIVEN} {FAMILY} {BORN}"}, ["$d", "DemographicsInput"]),
        ({"d": [GIVEN, FAMILY]}, ["$d", "DemographicsInput"]),
        ({"d": None}, ["$d", "DemographicsInput!"]),
    ],
)
def test_a_variable_that_does_not_coerce_names_the_problem_not_the_value(
    stack, caplog, variables, says
):
    error = _refused(stack, {"query": SEARCH, "variables": variables}, caplog)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    for word in says:
        assert word in error["message"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (_inline(PERSON + ", knownAs: [null]"), ["String!"]),
        (_inline(PERSON.replace(BORN, "07/03/2015") + ', postcode: "LS6 3AB"'), ["Date"]),
        (_inline(PERSON + f', postcode: "LS6 3AB", sex: {FAMILY}'), ["Sex"]),
        (_inline(PERSON + ', postcode: "LS6 3AB", sex: "FEMALE"'), ["Sex"]),
        (_inline(PERSON.replace(f'"{GIVEN}"', GIVEN) + ', postcode: "LS6 3AB"'), ["String"]),
        (_inline(PERSON.replace(f'"{GIVEN}"', "20150307") + ', postcode: "LS6 3AB"'), ["String"]),
        (_inline(PERSON + f', postcod: "{FAMILY}"'), ["DemographicsInput"]),
        (_inline(PERSON + f", {FAMILY}: 1"), ["DemographicsInput"]),
        (_inline("").replace("{}", f'"{GIVEN} {FAMILY}"'), ["DemographicsInput"]),
        (
            f'query($d: DemographicsInput = {{givenName: "{GIVEN}", familyName: 5}}) {{'
            " child(demographics: $d, purpose: SAFEGUARDING_ENQUIRY) { outcome } }",
            ["String"],
        ),
    ],
)
def test_an_inline_value_of_the_wrong_type_names_the_type_not_the_value(stack, caplog, query, says):
    error = _refused(stack, {"query": query}, caplog)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    for word in says:
        assert word in error["message"]


def test_too_few_details_are_refused_naming_what_to_add_not_what_was_given(stack, caplog):
    variables = {"d": {"givenName": GIVEN, "familyName": FAMILY, "knownAs": [GIVEN]}}

    error = _refused(stack, {"query": SEARCH, "variables": variables}, caplog)

    assert error["extensions"]["code"] == "INSUFFICIENT_DETAILS"
    assert "date of birth" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        f'{{ child(demographics: {{givenName: "{GIVEN}", "{FAMILY}"}}) }}',
        f'{{ child(demographics: {{givenName: "{GIVEN}"}}) {{ outcome }} }} {FAMILY}',
        f'{{ child(demographics: {{givenName: "{GIVEN}\\q {FAMILY}"}}) }}',
        f'{{ child(demographics: {{givenName: "{GIVEN}", familyName: 20150307 20150307}}) }}',
        f'{{ child(demographics: {{givenName: "{GIVEN} {FAMILY}',
    ],
)
def test_a_syntax_error_gives_its_place_and_what_was_expected_not_the_text(stack, caplog, query):
    error = _refused(stack, {"query": query}, caplog)
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["message"].startswith("Syntax Error: ")
    assert error["locations"]


def test_a_wrong_enum_value_for_the_purpose_is_still_bad_user_input_without_the_value(
    stack, caplog
):
    query = "query($n: String!, $p: Purpose!) { child(nhsNumber: $n, purpose: $p) { outcome } }"
    variables = {"n": "9434765919", "p": FAMILY}
    error = _refused(stack, {"query": query, "variables": variables}, caplog)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$p" in error["message"]
    assert "Purpose" in error["message"]


@pytest.mark.parametrize(
    ("message", "safe"),
    [
        (
            f"Variable '$d' got invalid value {{'givenName': '{GIVEN}'}}; Field 'postcode' of"
            " required type 'String!' was not provided.",
            "Variable '$d' has an invalid value.",
        ),
        (
            f"Argument 'demographics' has invalid value at .dateOfBirth: Value cannot represent a"
            f' Date: "{BORN}".',
            "Argument 'demographics' has an invalid value at dateOfBirth: expected a Date"
            " (YYYY-MM-DD).",
        ),
        (
            f"Variable '$d' has invalid value at .carers[0].name: {FAMILY} is not acceptable.",
            "Variable '$d' has an invalid value at carers[0].name: it is not a valid value of its"
            " type.",
        ),
        (f'A message of a shape not known, found: "{GIVEN}".', GENERIC),
        (f"Some scalar cannot represent value: {GIVEN}", GENERIC),
        (
            "Variable '$p' has invalid value: Expected a value of non-null type 'Purpose!' to be"
            " provided.",
            "Variable '$p' has an invalid value: it is required, of type Purpose!, and was not"
            " given.",
        ),
        ("16 aliases found. Allowed: 15", "16 aliases found. Allowed: 15"),
        (f"16 aliases found. Allowed: 15 {GIVEN}", GENERIC),
    ],
)
def test_messages_of_other_shapes_lose_the_value_too(message, safe):
    assert safe_message(message) == safe


def test_a_message_naming_only_the_schema_and_the_query_passes_unchanged():
    message = "Cannot query field 'outcom' on type 'ChildLookup'. Did you mean 'outcome'?"
    assert safe_message(message) == message


def test_an_unexpected_fault_is_logged_by_type_and_place_never_by_its_message(caplog):
    """An operator needs to know what failed where; the message may name the child."""
    try:
        raise ValueError(f"no record for Amelia Hart {NHS}")
    except ValueError as exc:
        error = GraphQLError("boom", path=["child", 0, "name"], original_error=exc)
        line = exc.__traceback__.tb_lineno if exc.__traceback__ else 0
    with caplog.at_level(logging.ERROR, logger="childlookup.graphql"):
        build_schema().process_errors([error])
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "resolver_error"]
    assert record.context == {
        "error_type": "ValueError",
        "raised_at": f"test_error_messages.py:{line} "
        "test_an_unexpected_fault_is_logged_by_type_and_place_never_by_its_message",
        "path": "child.0.name",
    }
    assert "Amelia" not in caplog.text
    assert NHS not in caplog.text
