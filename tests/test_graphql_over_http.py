"""GraphQL over HTTP as the specification and its reference implementation's server audit say
(gateway.media_types, resolvers.view): the media type the client asks for, 4xx for requests that
never ran when it asks for `application/graphql-response+json`, and a coded error either way."""

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from graphql import GraphQLError
from strawberry.types import ExecutionResult

from gateway.errors import ErrorCode, GatewayError
from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from resolvers.view import http_answer
from tests.factories import NHS, health_record
from tests.node import node_project
from tests.stack import LOOKUP, reference_stack

AUDIT_PROJECT = Path(__file__).parent / "contract" / "graphql-http"

DECLINED = {
    # GraphQL over GET: declined. A lookup's purpose and the child's NHS number or name would be
    # in the URL, and so in browser history, proxy and server access logs. GET /graphql serves
    # GraphiQL (dev mode) and a GET carrying an operation is refused 405 with `Allow: POST`
    # (audit 9C48, that a mutation is never run over GET, passes).
    "5A70": "MAY accept application/x-www-form-urlencoded formatted GET requests",
    "D6D5": "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting"
    " application/graphql-response+json",
    "6A70": "MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting"
    " application/json",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("http"), {"health": [health_record()]}) as gw:
        yield gw


def _post(stack, body, *, accept=None, token=True, **headers):
    if token:
        headers["authorization"] = f"Bearer {stack.token('gp')}"
    if accept is not None:
        headers["accept"] = accept
    return httpx.post(f"{stack.url}/graphql", json=body, headers=headers, timeout=10)


def _codes(response):
    return [e["extensions"]["code"] for e in response.json()["errors"]]


def test_every_server_audit_of_graphql_http_passes_but_the_get_ones_we_decline(stack):
    project = node_project(AUDIT_PROJECT)
    node = shutil.which("node")
    assert node is not None  # node_project skipped the test otherwise
    run = subprocess.run(
        [node, "audit.mjs", f"{stack.url}/graphql", stack.token("gp")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert len(results) == 61
    failed = {
        r["id"]: (r["status"], r["name"], r["reason"]) for r in results if r["status"] != "ok"
    }
    assert {id: name for id, (_, name, _) in failed.items()} == DECLINED
    assert {status for status, _, _ in failed.values()} == {"notice"}  # MAYs only


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("application/graphql-response+json", GRAPHQL_RESPONSE_JSON),
        # What Apollo Client 4 and GraphiQL send.
        ("application/graphql-response+json,application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (
            "application/graphql-response+json, application/json, multipart/mixed",
            GRAPHQL_RESPONSE_JSON,
        ),
        ("application/json;q=0.5, application/graphql-response+json;q=0.4", JSON),
        ("application/graphql-response+json;q=0, */*", JSON),
        ("application/*", JSON),
        ("text/html", None),
    ],
)
def test_the_media_type_is_the_one_the_accept_header_prefers(accept, media_type):
    assert negotiate(accept) == media_type


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ child("}, "GRAPHQL_PARSE_FAILED"),
        # Over the token limit the parser stops: a parse failure, as Apollo Server has it.
        ({"query": "{ " + "__typename " * 2_100 + "}"}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ nosuchfield }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "query A { __typename } query B { __typename }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "CURIOSITY"}}, "BAD_USER_INPUT"),
    ],
)
def test_a_request_that_never_ran_is_400_without_data_as_graphql_response_json(stack, body, code):
    response = _post(stack, body, accept=GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert "data" not in response.json()
    assert _codes(response) == [code]


def test_the_same_request_is_200_with_null_data_as_application_json(stack):
    response = _post(stack, {"query": "{ nosuchfield }"}, accept=JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.json()["data"] is None
    assert _codes(response) == ["GRAPHQL_VALIDATION_FAILED"]


def test_a_lookup_that_ran_and_failed_is_200_with_null_data_in_either_media_type(stack):
    body = {"query": LOOKUP, "variables": {"nhs": "0000000000", "purpose": "DIRECT_CARE"}}
    for accept in (GRAPHQL_RESPONSE_JSON, JSON):
        response = _post(stack, body, accept=accept)
        assert response.status_code == 200
        assert response.headers["content-type"] == accept
        assert response.json()["data"] is None
        assert _codes(response) == ["INVALID_NHS_NUMBER"]


def test_a_refusal_at_the_edge_comes_in_the_media_type_asked_for_with_its_code(stack):
    unauthenticated = _post(stack, {"query": LOOKUP}, accept=GRAPHQL_RESPONSE_JSON, token=False)
    too_large = _post(stack, {"query": LOOKUP, "pad": "x" * 40_000}, accept=GRAPHQL_RESPONSE_JSON)
    legacy = _post(stack, {"query": LOOKUP}, accept=JSON, token=False)
    assert (unauthenticated.status_code, too_large.status_code) == (401, 413)
    for response in (unauthenticated, too_large):
        assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
        assert "data" not in response.json()
    assert _codes(unauthenticated) == ["UNAUTHENTICATED"]
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert _codes(too_large) == ["REQUEST_TOO_LARGE"]
    assert legacy.headers["content-type"] == JSON
    assert legacy.json() == {"data": None, "errors": legacy.json()["errors"]}
    assert _codes(legacy) == ["UNAUTHENTICATED"]


def test_a_client_accepting_neither_json_media_type_is_told_406(stack):
    response = _post(stack, {"query": "{ __typename }"}, accept="text/html")
    assert response.status_code == 406
    assert _codes(response) == ["BAD_REQUEST"]


def test_an_operation_over_get_is_405_allowing_post_only(stack):
    response = httpx.get(
        f"{stack.url}/graphql",
        params={"query": "{ __typename }"},
        headers={"accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _codes(response) == ["BAD_REQUEST"]


TWO_OPERATIONS = (
    "query Lookup($nhs: String!) {"
    " child(identify: {nhsNumber: $nhs}, purpose: DIRECT_CARE) { outcome } }"
    " query Name { __typename }"
)


def test_of_several_operations_none_runs_unless_operation_name_names_one(stack):
    """GetOperation in the specification: strawberry would run the first, here a lookup -
    audited, its owners told - that nobody named."""
    audited = len(stack.components.audit.records(limit=100_000))
    unnamed = _post(stack, {"query": TWO_OPERATIONS, "variables": {"nhs": NHS}}, accept=JSON)
    assert unnamed.json()["data"] is None
    assert _codes(unnamed) == ["GRAPHQL_VALIDATION_FAILED"]
    assert len(stack.components.audit.records(limit=100_000)) == audited

    body = {"query": TWO_OPERATIONS, "variables": {"nhs": NHS}, "operationName": "Lookup"}
    named = _post(stack, body, accept=JSON)
    assert named.json()["data"]["child"]["outcome"] == "FOUND"
    assert len(stack.components.audit.records(limit=100_000)) == audited + 1


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE"])
def test_a_method_graphql_does_not_serve_is_405_saying_which_it_does(stack, method):
    """The same methods for each (RFC 9110: those the target serves), never one it refuses:
    Starlette serves HEAD wherever GET is, and advertised it, while strawberry refused it."""
    response = httpx.request(
        method, f"{stack.url}/graphql", headers={"authorization": f"Bearer {stack.token('gp')}"}
    )
    assert response.status_code == 405
    assert sorted(m.strip() for m in response.headers["allow"].split(",")) == ["GET", "POST"]


def test_a_media_type_in_another_case_is_the_same_media_type(stack):
    response = httpx.post(
        f"{stack.url}/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={
            "authorization": f"Bearer {stack.token('gp')}",
            "content-type": "Application/JSON; charset=UTF-8",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"__typename": "Query"}


def _refused(code, path, retry_after_s=None):
    error = GatewayError(code, "refused", retry_after_s=retry_after_s)
    return GraphQLError("refused", path=path, original_error=error)


def test_only_a_result_every_error_of_which_is_a_limit_is_429_with_the_longest_wait():
    rate, cap = ErrorCode.RATE_LIMITED, ErrorCode.LOOKUP_CAP_REACHED
    limited = ExecutionResult(
        data=None, errors=[_refused(rate, ["a"], 60), _refused(cap, ["b"], 7)]
    )
    mixed = ExecutionResult(
        data=None, errors=[_refused(rate, ["a"], 60), _refused(ErrorCode.INVALID_NHS_NUMBER, ["b"])]
    )
    partial = ExecutionResult(data={"a": None}, errors=[_refused(rate, ["a"], 60)])
    answer = http_answer(limited, JSON)
    assert (answer.status, dict(answer.headers)) == (429, {"retry-after": "60"})
    assert http_answer(mixed, GRAPHQL_RESPONSE_JSON).status == 200
    assert http_answer(partial, GRAPHQL_RESPONSE_JSON).status == 200
