"""Automatic persisted queries never keep a child's identifier or name typed into the query text
(resolvers/persisted_queries.py): in quotes, a string literal; without them, an NHS number as a
number or a name as an enum value, which validation refuses; or in a comment. Each runs (or is
refused) as usual, and asked again by its hash alone it is unknown."""

import pytest

from gateway.document_registry import document_id
from tests.factories import NHS, health_record
from tests.stack import reference_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("apq-ids"), {"health": [health_record()]}) as gw:
        yield gw


def _apq(text: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_id(text)}}


TEXTS = {
    # A portal developer's note naming the child, in a comment.
    "comment": (
        f"# checking Amelia Hart, NHS {NHS}\n"
        "query($nhs: String!) {"
        " child(identify: {nhsNumber: $nhs}, purpose: DIRECT_CARE) { outcome } }"
    ),
    # The NHS number typed without its quotes: GraphQL refuses it, but the text is kept first.
    "int literal": (
        f"{{ child(identify: {{nhsNumber: {NHS}}}, purpose: DIRECT_CARE) {{ outcome }} }}"
    ),
    # The NHS number in an operation name or an alias: names a client chooses, valid GraphQL.
    "operation name": (
        f"query Amelia_Hart_{NHS}($nhs: String!) {{"
        " child(identify: {nhsNumber: $nhs}, purpose: DIRECT_CARE) { outcome } }"
    ),
    "alias": (
        f"query($nhs: String!) {{ amelia_hart_{NHS}:"
        " child(identify: {nhsNumber: $nhs}, purpose: DIRECT_CARE) { outcome } }"
    ),
    # A name typed without quotes.
    "unquoted name": (
        "{ child(purpose: DIRECT_CARE, identify: {demographics: {givenName: Amelia,"
        " familyName: Hart}}) { outcome } }"
    ),
}


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_a_child_identifier_typed_into_the_query_text_is_never_kept(stack, kind):
    text = TEXTS[kind]
    token = stack.token("gp")
    first = stack.post({"query": text, "extensions": _apq(text), "variables": {"nhs": NHS}}, token)
    # The valid ones run; the others are refused as usual.
    if kind in ("comment", "operation name", "alias"):
        (lookup,) = first.json()["data"].values()
        assert lookup["outcome"] == "FOUND", first.text
    else:
        assert first.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    # Asked again by the hash alone: the text (with the child's NHS number or name) must not have
    # been stored, so the gateway has to ask for it again.
    again = stack.post({"extensions": _apq(text), "variables": {"nhs": NHS}}, token)
    codes = (
        [e["extensions"]["code"] for e in again.json()["errors"]]
        if "errors" in again.json()
        else []
    )
    assert codes == ["PERSISTED_QUERY_NOT_FOUND"], (
        f"the text holding the child's identifier was kept: {again.text}"
    )
