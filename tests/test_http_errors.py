"""Bad input and bad requests get a clear error with a stable code: never a 500 or a stack trace."""

import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with reference_stack(tmp_path_factory.mktemp("errors"), {"health": [health_record()]}) as gw:
        yield gw


def _code(response):
    body = response.json()
    assert "Traceback" not in response.text
    return body["errors"][0]["extensions"]["code"]


@pytest.mark.parametrize("nhs", ["943476591", "9434765918", "94347659AB", "", "0000000000"])
def test_invalid_nhs_numbers_are_refused_before_any_lookup(stack, nhs):
    body = {"query": LOOKUP, "variables": {"nhs": nhs, "purpose": "DIRECT_CARE"}}
    response = stack.post(body, stack.token("gp"))
    assert response.status_code == 200
    assert _code(response) == "INVALID_NHS_NUMBER"
    assert response.json()["data"] is None


def test_unknown_purpose_in_variables_is_bad_user_input(stack):
    body = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "CURIOSITY"}}
    assert _code(stack.post(body, stack.token("gp"))) == "BAD_USER_INPUT"


def test_unknown_purpose_inline_fails_validation(stack):
    query = f'{{ child(nhsNumber: "{NHS}", purpose: CURIOSITY) {{ outcome }} }}'
    assert _code(stack.post({"query": query}, stack.token("gp"))) == "GRAPHQL_VALIDATION_FAILED"


@pytest.mark.parametrize(
    "query",
    [
        "{ ...Nope }",
        "{ child(identify: {nhsNumber: $n}, purpose: DIRECT_CARE) { outcome } }",
        "query Q($n: String!) { child(identify: {nhsNumber: $m}, purpose: DIRECT_CARE) { outcome }"
        " }",
    ],
    ids=["unknown fragment", "undeclared variable", "misnamed variable"],
)
def test_documents_the_specification_refuses_fail_validation(stack, query):
    """Strawberry's depth limit and @oneOf rule raised on these (an internal error); the
    specification's rules, run first, name the mistake."""
    response = stack.post({"query": query, "variables": {"n": NHS}}, stack.token("gp"))
    assert _code(response) == "GRAPHQL_VALIDATION_FAILED"


def test_syntax_error_is_a_parse_failure(stack):
    assert _code(stack.post({"query": "{ child("}, stack.token("gp"))) == "GRAPHQL_PARSE_FAILED"


def test_overlong_justification_is_refused(stack):
    variables = {"nhs": NHS, "purpose": "DIRECT_CARE", "justification": "x" * 1001}
    response = stack.post({"query": LOOKUP, "variables": variables}, stack.token("gp"))
    assert _code(response) == "INVALID_JUSTIFICATION"


@pytest.mark.parametrize(
    "justification",
    [
        f"Child {NHS} at immediate risk tonight",
        f"Child {NHS[:3]}.{NHS[3:6]}.{NHS[6:]} at immediate risk tonight",
        "Pupil H801200001001 disclosed at school today",
    ],
)
def test_a_justification_holding_a_child_identifier_is_refused_and_kept_nowhere(
    stack, justification
):
    """It would be kept in the audit log and the alerts feed, and sent to agencies in owner
    notifications, where no child may be named by an identifier. The attempt to break glass is
    itself audited and alerted - without the text."""
    before = len(stack.components.audit.records(limit=100_000))
    variables = {"nhs": NHS, "purpose": "EMERGENCY_OVERRIDE", "justification": justification}

    response = stack.post({"query": LOOKUP, "variables": variables}, stack.token("gp"))

    assert _code(response) == "INVALID_JUSTIFICATION"
    assert response.json()["data"] is None
    assert "without it" in response.json()["errors"][0]["message"]
    records = stack.components.audit.records(limit=100_000)
    assert len(records) == before + 1
    refused = records[-1]
    assert (refused["outcome"], refused["denial"]) == ("DENIED", "INVALID_JUSTIFICATION")
    assert refused["access"]["justification"] is None
    kept = json.dumps(refused)
    assert NHS not in kept
    assert "H801200001001" not in kept


def _rsa_token(algorithm: str) -> str:
    """A token any caller can make: signed with a key of their own, of the kind RS256 and PS256
    use, where the gateway's dev key is an EC key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"sub": "x"}, key, algorithm=algorithm)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer nonsense",
        "Basic Zm9vOmJhcg==",
        f"Bearer {_rsa_token('RS256')}",
        f"Bearer {_rsa_token('PS256')}",
    ],
    ids=["none", "nonsense", "basic", "RS256", "PS256"],
)
def test_missing_or_bad_token_is_401_and_reaches_no_resolver(stack, header):
    headers = {"authorization": header} if header else {}
    before = len(stack.components.audit.records(limit=100_000))
    response = httpx.post(f"{stack.url}/graphql", json={"query": LOOKUP}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert _code(response) == "UNAUTHENTICATED"
    assert len(stack.components.audit.records(limit=100_000)) == before


def test_oversized_body_is_413(stack):
    response = stack.post({"query": LOOKUP, "pad": "x" * 40_000}, stack.token("gp"))
    assert response.status_code == 413
    assert _code(response) == "REQUEST_TOO_LARGE"


def test_oversized_chunked_body_is_413(stack):
    def chunks():
        for _ in range(50):
            yield b"x" * 1024

    response = httpx.post(
        f"{stack.url}/graphql",
        content=chunks(),
        headers={
            "authorization": f"Bearer {stack.token('gp')}",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 413


def test_non_json_body_is_a_client_error_not_a_500(stack):
    response = httpx.post(
        f"{stack.url}/graphql",
        content=b"{{{",
        headers={
            "authorization": f"Bearer {stack.token('gp')}",
            "content-type": "application/json",
        },
    )
    assert 400 <= response.status_code < 500
    assert "Traceback" not in response.text


def _json_post(stack, content: bytes, token: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{stack.url}/graphql", content=content, headers=headers, timeout=10)


_LONE = "\ud800"
_EMERGENCY = {"nhs": NHS, "purpose": "DIRECT_CARE", "justification": f"at risk {_LONE} today"}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"query": LOOKUP, "variables": _EMERGENCY}).encode(),
        json.dumps(
            {"query": "query A { __typename } query B { __typename }", "operationName": _LONE}
        ).encode(),
        json.dumps(
            {
                "query": f"{{ __typename }} # {_LONE}",
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}},
            }
        ).encode(),
        b'{"query": "{ __typename }", "variables": {"x": "\xed\xa0\x80"}}',
        json.dumps({"query": LOOKUP, "variables": _EMERGENCY}, ensure_ascii=False).encode(
            "utf-16", "surrogatepass"
        ),
    ],
    ids=["escaped", "operation name", "persisted query", "utf-8 bytes", "utf-16"],
)
def test_text_that_is_not_unicode_is_refused_before_anything_runs(stack, content):
    """A lone surrogate is no character: a justification holding one once reached the audit
    record, and either broke every later reading of the child's trail or, for a lookup that
    notifies an owner, stopped its record being written after the agencies were asked."""
    before = len(stack.components.audit.records(limit=100_000))
    response = _json_post(stack, content, stack.token("gp"))
    assert response.status_code == 400
    assert _code(response) == "BAD_REQUEST"
    assert "not valid Unicode" in response.json()["errors"][0]["message"]
    assert len(stack.components.audit.records(limit=100_000)) == before


@pytest.mark.parametrize(
    "content",
    [
        b'{"query": "{ __typename }", "x": ' + b"9" * 5000 + b"}",
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
        b'{"query": "{ __typename }", "documentId": "'
        + b"0" * 64
        + b'", "x": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
    ],
    ids=["5000-digit integer", "nested 3000 deep", "persisted, nested 3000 deep"],
)
def test_json_python_cannot_read_is_a_bad_request_not_a_500(stack, content):
    response = _json_post(stack, content, stack.token("gp"))
    assert response.status_code == 400
    assert _code(response) == "BAD_REQUEST"


@pytest.mark.parametrize("name", [["a"], 5, {"a": 1}, True])
def test_an_operation_name_that_is_not_a_string_is_a_bad_request(stack, name):
    body = {"query": "query a { __typename }", "operationName": name}
    response = stack.post(body, stack.token("gp"))
    assert response.status_code == 400
    assert _code(response) == "BAD_REQUEST"
    assert response.json()["errors"][0]["message"].startswith("operationName is a string")


def test_an_emoji_sent_as_a_surrogate_pair_is_text_like_any_other(stack):
    variables = {"nhs": NHS, "purpose": "DIRECT_CARE", "justification": "seen in clinic \U0001f600"}
    content = json.dumps({"query": LOOKUP, "variables": variables}).encode()  # "\ud83d\ude00"
    assert b"\\ud83d\\ude00" in content
    response = _json_post(stack, content, stack.token("gp"))
    assert response.json()["data"]["child"]["outcome"] == "FOUND"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/portal/%00", 404),
        ("GET", "/portal/a%00b.js", 404),
        ("GET", "/graphiql/x%00.js", 404),
        ("GET", "/portal/no-such-file.js", 404),
        ("GET", "/no-such-path", 404),
        ("PUT", "/graphql", 405),
        ("DELETE", "/graphql", 405),
        ("POST", "/healthz", 405),
        ("POST", "/.well-known/jwks.json", 405),
        ("POST", "/portal/index.html", 405),
        ("POST", "/graphql/", 404),
        ("GET", "/metrics", 404),
    ],
)
def test_paths_and_methods_not_served_are_coded_refusals(stack, method, path, status):
    """No route, no file (a NUL byte in a file's name was a 500) or a method the path does not
    serve: the same coded JSON shape as every other refusal, with `Allow` for a 405. No redirect
    from a trailing slash (Starlette built it from the Host header); /metrics, not served to a
    scraper from elsewhere, looks like any other path not served."""
    headers = {"host": "elsewhere.example", "x-forwarded-for": "203.0.113.9"}
    response = httpx.request(method, f"{stack.url}{path}", headers=headers)
    assert response.status_code == status
    assert _code(response) == ("PATH_NOT_FOUND" if status == 404 else "BAD_REQUEST")
    if status == 405:
        assert response.headers["allow"]


def test_the_portals_address_redirects_to_it_on_this_host_whatever_host_was_named(stack):
    response = httpx.get(f"{stack.url}/portal", headers={"host": "elsewhere.example"})
    assert (response.status_code, response.headers["location"]) == (307, "/portal/")


def test_alias_bomb_is_refused_before_any_lookup(stack):
    one = f'child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }}'
    bomb = "{ " + " ".join(f"c{i}: {one}" for i in range(20)) + " }"
    before = len(stack.components.audit.records(limit=100_000))
    response = stack.post({"query": bomb}, stack.token("gp"))
    assert _code(response) == "GRAPHQL_VALIDATION_FAILED"
    assert response.json()["errors"][0]["message"] == "20 aliases found. Allowed: 15"
    assert len(stack.components.audit.records(limit=100_000)) == before


def _not_stored(response):
    """Child data, and refusals that may echo a request about a child, stay out of every cache."""
    return (response.headers.get("cache-control"), response.headers.get("pragma")) == (
        "no-store",
        "no-cache",
    )


def test_every_graphql_response_forbids_caching_data_and_refusals_alike(stack):
    token = stack.token("gp")
    variables = {"nhs": NHS, "purpose": "DIRECT_CARE"}
    not_json = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    responses = {
        "data": stack.post({"query": LOOKUP, "variables": variables}, token),
        "GraphQL error": stack.post({"query": "{ child("}, token),
        "401": stack.post({"query": LOOKUP, "variables": variables}),
        "413": stack.post({"query": LOOKUP, "pad": "x" * 40_000}, token),
        "400": httpx.post(f"{stack.url}/graphql", content=b"{{{", headers=not_json),
        "405": httpx.get(f"{stack.url}/graphql", params={"query": "{ __typename }"}),
    }
    assert responses["data"].json()["data"]["child"]["outcome"] == "FOUND"
    assert [r.status_code for r in responses.values()] == [200, 200, 401, 413, 400, 405]
    assert [what for what, r in responses.items() if not _not_stored(r)] == []


def test_health_and_readiness(stack):
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"policy": True, "audit": True, "connectors": True}
    assert ready.json()["policy_revision"]


def test_graphiql_is_served_in_dev_mode_and_get_cannot_run_queries(stack):
    page = httpx.get(f"{stack.url}/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    via_get = httpx.get(f"{stack.url}/graphql", params={"query": "{ __typename }"})
    assert via_get.status_code in (400, 405)


def test_an_error_answers_an_accept_header_sent_as_two_lines_as_one_list(stack):
    """RFC 9110 5.3: several Accept lines are one comma-separated list; the refusal of a request
    with no token is written in the media type the second line asks for."""
    headers = [("accept", "text/html"), ("accept", "application/graphql-response+json")]
    response = httpx.post(f"{stack.url}/graphql", json={"query": LOOKUP}, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/graphql-response+json")
