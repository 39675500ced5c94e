"""Property-based fuzzing of POST /graphql on a real gateway over loopback HTTP.

Schemathesis generates operations from the schema - introspected from the live gateway in dev mode,
read from the published schema.graphql in production mode, where introspection is off - with most
string arguments swapped for well-formed identifiers so that lookups get past validation and run the
whole pipeline. Hypothesis also generates raw requests: any JSON, broken JSON, bytes, odd content
types and tokens. Whatever arrives, the answer must be JSON with a stable code on every error:
never a 5xx, a masked crash (INTERNAL_ERROR), a stack trace or a name from inside the code, and
outside dev never a field suggestion. Runs are derandomised and bounded by example count, so CI
sends the same requests every time; `--hypothesis-show-statistics` shows which answers they got.
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Iterator
from functools import cache
from typing import Any, TypeVar

import graphql
import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connectors.check_digits import nhs_check_digit, upn_check_letter
from gateway.config import REPO_ROOT
from gateway.errors import ErrorCode
from gateway.types import Purpose
from resolvers.schema import SCHEMA_FILE
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import LOOKUP, Stack, reference_connectors, running_gateway

T = TypeVar("T")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROLES = ("gp", "social_worker", "police_safeguarding", "auditor", "no_such_role")

# A lookup of a child on a protection plan queues an owner notification, whose retry jitter
# (gateway.notify) uses the global `random` on the server's thread while hypothesis is drawing on
# this one; hypothesis takes that for a strategy using `random` and warns.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

# --- What a safe answer is ------------------------------------------------------------------------

CODES = frozenset(ErrorCode) - {ErrorCode.INTERNAL_ERROR}
LEAKS = re.compile(
    "|".join(
        [
            r"Traceback|File \"|site-packages|\.py\b",
            re.escape(str(REPO_ROOT)),
            r"\b[A-Z]\w*(?:Error|Exception)\b",
            r"\b(?:pydantic\w*|sqlite3?|httpx|regopy|strawberry|uvicorn)\b",
        ]
    )
)
"""Signs of a stack trace, a file path, an exception class or a library name in an answer."""
SUGGESTION = "Did you mean"


def assert_answered_safely(response: Any, sent: str, *, production: bool) -> None:
    """JSON, below 500, every error with a known code, nothing from inside the code shown.

    `sent` is everything the request carried: text the gateway only echoes back (an unknown
    operation name, say) is not a leak."""
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    errors = response.json().get("errors") or []
    assert errors or response.status_code == 200, response.text
    for error in errors:
        assert error["extensions"]["code"] in CODES, error
    leaked = [m for m in LEAKS.findall(response.text) if m not in sent]
    assert not leaked, response.text
    if production:
        assert SUGGESTION not in response.text or SUGGESTION in sent, response.text
    event(f"{response.status_code} {errors[0]['extensions']['code'] if errors else 'data'}")


# --- Values worth sending -------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[T], unusual: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """Three draws in four from `usual`: mostly requests that get far, some that stop early."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda n: unusual if n == 3 else usual)


def _with_check_digit(stem: int) -> str | None:
    check = nhs_check_digit(str(stem))
    return None if check is None else f"{stem}{check}"


nhs_numbers = (
    st.integers(min_value=900_000_000, max_value=999_999_999)
    .map(_with_check_digit)
    .filter(bool)
    .map(str)
)
well_formed = st.one_of(
    st.just(NHS),
    nhs_numbers,
    nhs_numbers.map(lambda n: f"{n[:3]} {n[3:6]} {n[6:]}"),
    st.text(string.digits, min_size=12, max_size=12).map(lambda d: upn_check_letter(d) + d),
    st.sampled_from(["H801200001001", "Amelia", "Hart", "LS6 2AB", "2019-03-04"]),
    st.sampled_from(list(map(str, Purpose))),
)
"""Identifiers, names, postcodes, dates and purposes as the stack's connectors hold them: the
known child's NHS number is a branch of its own, so many lookups find a record."""


class _StringArguments(graphql.Visitor):
    """Counts a document's String literals or, given picks, replaces them in order (a None pick
    keeps the literal). Literals of other scalars, such as dates, are left as generated."""

    def __init__(self, type_info: graphql.TypeInfo, picks: list[str | None] | None) -> None:
        super().__init__()
        self.count = 0
        self._type_info = type_info
        self._picks = picks

    def enter_string_value(self, node: graphql.StringValueNode, *_: Any) -> Any:
        named = graphql.get_named_type(self._type_info.get_input_type())
        if named is None or named.name != "String":
            return None
        self.count += 1
        pick = None if self._picks is None else self._picks[self.count - 1]
        return None if pick is None else graphql.StringValueNode(value=pick)


def _string_arguments(
    schema: graphql.GraphQLSchema, document: graphql.DocumentNode, picks: list[str | None] | None
) -> tuple[int, Any]:
    type_info = graphql.TypeInfo(schema)
    visitor = _StringArguments(type_info, picks)
    edited = graphql.visit(document, graphql.TypeInfoVisitor(type_info, visitor))
    return visitor.count, edited


def flatmap_body(context: Any, body: graphql.DocumentNode) -> st.SearchStrategy[Any]:
    """The schemathesis hook of that name, on each generated document: random text almost never
    passes an NHS number's check digit, so most String arguments become well-formed values."""
    schema = context.operation.schema.client_schema
    slots, _ = _string_arguments(schema, body, None)
    picks = st.lists(mostly(well_formed, st.none()), min_size=slots, max_size=slots)
    return picks.map(lambda chosen: _string_arguments(schema, body, chosen)[1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
header_text = st.text(
    string.ascii_letters + string.digits + string.punctuation + " ", max_size=40
).map(str.strip)
content_types = mostly(
    st.sampled_from(["application/json", "application/json; charset=utf-8"]),
    st.sampled_from(
        [
            "application/graphql",
            "application/graphql-response+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "multipart/mixed",
        ]
    )
    | header_text
    | st.none(),
)


@st.composite
def truncated(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    text = draw(texts)
    return text[: draw(st.integers(min_value=0, max_value=max(len(text) - 1, 0)))]


# --- Gateways under test --------------------------------------------------------------------------


class Target:
    """A running gateway, the schema the fuzzer generates from, and tokens for a few roles.

    Not a dataclass: hypothesis prints a failing example's arguments field by field, and tokens
    and settings would bury the request that failed."""

    def __init__(self, stack: Stack, schema: Any, *, production: bool) -> None:
        self.stack = stack
        self.schema = schema
        self.production = production
        self.tokens = {role: stack.token(role) for role in ROLES}
        self.endpoint = f"{stack.url}/graphql"

    def __repr__(self) -> str:
        return f"Target(production={self.production})"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-connectors")
    records = {
        "health": [health_record()],
        "social_care": [social_care_record()],
        "education": [school_record()],
    }
    with reference_connectors(tmp, records) as sources:
        yield sources


@pytest.fixture(scope="module")
def dev(tmp_path_factory, sources) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz-dev")
    with running_gateway(tmp, sources) as stack:
        schema = schemathesis.graphql.from_url(
            f"{stack.url}/graphql", headers={"authorization": f"Bearer {stack.token('gp')}"}
        )
        schema.hook(flatmap_body)
        yield Target(stack, schema, production=False)


@pytest.fixture(scope="module")
def production(tmp_path_factory, sources, production_settings) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz-production")
    with running_gateway(tmp, sources, **production_settings(tmp)) as stack:
        schema = schemathesis.graphql.from_path(SCHEMA_FILE, base_url=f"{stack.url}/graphql")
        schema.hook(flatmap_body)
        yield Target(stack, schema, production=True)


@pytest.fixture(scope="module", params=["dev", "production"])
def target(request) -> Target:
    """Each fuzz test runs against both gateways."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """Schemathesis sends its cases with requests; one session keeps the connection open."""
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


# --- Generated GraphQL operations -----------------------------------------------------------------


def _call_generated_operation(target: Target, session: requests.Session, data: Any) -> None:
    case = data.draw(target.schema.as_strategy(), label="operation")
    token = target.tokens[data.draw(st.sampled_from(ROLES), label="role")]
    response = case.call(session=session, headers={"authorization": f"Bearer {token}"})
    assert_answered_safely(response, case.body, production=target.production)


@FUZZ
@given(data=st.data())
def test_generated_operations_get_coded_answers_without_fault_or_leak(target, session, data):
    _call_generated_operation(target, session, data)


# --- Raw HTTP -------------------------------------------------------------------------------------


@cache
def _raw_bodies(target: Target) -> st.SearchStrategy[bytes]:
    queries = st.one_of(
        st.just(LOOKUP),
        target.schema.as_strategy().map(lambda case: case.body),
        st.text(max_size=40),
    )
    variables = st.dictionaries(
        st.sampled_from(["nhs", "purpose", "justification"]) | st.text(max_size=8),
        mostly(well_formed, json_values),
        max_size=4,
    )
    operations = st.fixed_dictionaries(
        {"query": mostly(queries, json_values)},
        optional={
            "variables": mostly(variables, json_values),
            "operationName": st.sampled_from(["Lookup"]) | json_values,
            "extensions": json_values,
        },
    ).map(json.dumps)
    broken = st.one_of(
        json_values.map(json.dumps).map(str.encode),
        truncated(operations).map(str.encode),
        st.binary(max_size=64),
    )
    return mostly(operations.map(str.encode), broken)


def _send_raw_request(target: Target, client: httpx.Client, data: Any) -> None:
    body = data.draw(_raw_bodies(target), label="body")
    headers = {}
    content_type = data.draw(content_types, label="content-type")
    if content_type is not None:
        headers["content-type"] = content_type
    tokens = st.sampled_from(sorted(target.tokens.values())).map("Bearer {}".format)
    authorization = data.draw(mostly(tokens, st.none() | header_text), label="authorization")
    if authorization is not None:
        headers["authorization"] = authorization
    response = client.post(target.endpoint, content=body, headers=headers)
    sent = body.decode(errors="replace") + " " + " ".join(headers.values())
    assert_answered_safely(response, sent, production=target.production)


@FUZZ
@given(data=st.data())
def test_raw_requests_get_coded_answers_without_fault_or_leak(target, client, data):
    _send_raw_request(target, client, data)


# --- Regressions the fuzzing found ----------------------------------------------------------------


def _post_raw(target: Target, body: bytes, content_type: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {target.tokens['gp']}", "content-type": content_type}
    return httpx.post(target.endpoint, content=body, headers=headers, timeout=10)


@pytest.mark.parametrize("body", [b"null", b"5", b'"query"', b"true", b"[]"])
def test_a_json_body_that_is_not_an_object_is_a_coded_400_not_a_500(dev, body):
    response = _post_raw(dev, body, "application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"query": "{ __typename }"}', "text/plain"),
        (b"{{{", "application/json"),
        (b"\x80", "application/json"),
    ],
)
def test_requests_strawberry_refuses_get_the_error_shape_and_a_code(dev, body, content_type):
    response = _post_raw(dev, body, content_type)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_an_operation_name_the_document_does_not_hold_is_a_validation_failure(dev):
    """A request error of GraphQL's own, answered as any other in application/json: 200, no
    data, coded (GraphQL over HTTP); strawberry refused it as a plain 400."""
    body = b'{"query": "{ __typename }", "operationName": "Nope"}'
    response = _post_raw(dev, body, "application/json")
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_a_variable_of_the_wrong_type_is_the_callers_mistake_not_a_logged_fault(dev, caplog):
    variables = {"nhs": 5, "purpose": "DIRECT_CARE"}
    with caplog.at_level(logging.ERROR, logger="childlookup.graphql"):
        response = _post_raw(
            dev, json.dumps({"query": LOOKUP, "variables": variables}).encode(), "application/json"
        )
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert not [r for r in caplog.records if r.name == "childlookup.graphql"]
