"""The portal's sign-in and the HTTP contract portal tools rely on, at their edges: discovery
documents too deep or too often fetched, a bad discovery URL, a @oneOf made of a released input,
GET /graphql outside dev mode, an unknown operation name, Accept over two lines. Real HTTP against
real servers on loopback."""

import asyncio
import json
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.serving import BackgroundServer
from gateway.identity_provider import ProviderDiscovery
from tests.factories import health_record
from tests.stack import reference_connectors, running_gateway

ISSUER_PATH = "/.well-known/openid-configuration"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-portal")
    with reference_connectors(tmp, {"health": [health_record()]}) as configured:
        yield configured


class _Provider:
    """A discovery endpoint that answers `body` after `delay_s`, counting requests."""

    def __init__(self, body: bytes, delay_s: float = 0.0) -> None:
        self.body = body
        self.delay_s = delay_s
        self.requests = 0
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            with self._lock:
                self.requests += 1
            await asyncio.sleep(self.delay_s)
            return Response(self.body, media_type="application/json")

        return Starlette(routes=[Route(ISSUER_PATH, discovery)])


def _nested_document(issuer: str, depth: int = 50_000) -> bytes:
    """A discovery document for `issuer` holding one deeply nested (but small: ~100 KB, under
    the 256 KiB read cap) array."""
    start = json.dumps({"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize"})
    return (start[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}").encode()


def test_a_discovery_document_nested_too_deep_is_a_failed_read_not_a_broken_portal(
    tmp_path, sources, production_settings
):
    """The discovery document is another party's answer, read as hostile (CSP injection, size,
    time). One nested deeper than Python's recursion limit raises RecursionError (not a
    ValueError) from json.loads: every GET /portal/ and /portal/config.json was a 500 - the
    page never shown, not even to say sign-in is unavailable - and each one fetched the document
    again, the 30 s wait after a failure never starting."""
    provider = _Provider(b"")
    with BackgroundServer(provider.app()) as idp:
        provider.body = _nested_document(idp.url)
        settings = production_settings(tmp_path) | {
            "issuer": idp.url,
            "portal_client_id": "childlookup-portal",
        }
        with running_gateway(tmp_path, sources, **settings) as gateway:
            page = httpx.get(f"{gateway.url}/portal/", timeout=10)
            config = httpx.get(f"{gateway.url}/portal/config.json", timeout=10)
            again = httpx.get(f"{gateway.url}/portal/config.json", timeout=10)
    assert page.status_code == 200, page.text
    assert config.status_code == 200, config.text
    assert config.json()["oidc"]["available"] is False
    assert again.status_code == 200
    assert provider.requests == 1  # then not again for 30 s


def test_concurrent_page_loads_read_the_discovery_document_once(tmp_path):
    """Cached for an hour, and after a failure fetched again at most every 30 s: but while one
    read is under way (up to its 3 s timeout against a slow provider) every other page load
    started its own, so anyone on the network could make the gateway open as many connections to
    the identity provider as requests they send to the unauthenticated /portal/."""
    provider = _Provider(b"", delay_s=0.5)
    with BackgroundServer(provider.app()) as idp:
        issuer = idp.url
        provider.body = json.dumps(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
            }
        ).encode()
        discovery = ProviderDiscovery(issuer + ISSUER_PATH, issuer)

        async def many() -> list:
            return await asyncio.gather(*(discovery.endpoints() for _ in range(20)))

        answers = asyncio.run(many())
    assert all(a is not None and a.token_endpoint == f"{issuer}/token" for a in answers)
    assert provider.requests == 1


@pytest.fixture(scope="module")
def dev_gateway(tmp_path_factory, sources):
    with running_gateway(tmp_path_factory.mktemp("dev"), sources) as running:
        yield running


def test_a_dev_session_body_nested_too_deep_is_a_coded_400_not_a_500(dev_gateway):
    """Under the 1 KiB the demo sign-in reads, JSON nested a thousand deep makes json.loads raise
    RecursionError, which the handler did not catch: a 500 instead of BAD_REQUEST."""
    refused = httpx.post(
        f"{dev_gateway.url}/portal/dev-session",
        content=b"[" * 1000,
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "token" not in refused.text


def test_making_a_released_input_one_of_is_reported_as_breaking():
    """The contract check (issue #14, README "Changing the contract") fails the suite on a
    breaking change not declared. Marking an existing input `@oneOf` breaks every portal that
    sends two of its fields - a demographic search by given and family name would be refused
    GRAPHQL_VALIDATION_FAILED - yet graphql-core's find_breaking_changes does not look at
    `@oneOf`, so the change passed as no change at all."""
    from resolvers.contract import RELEASED_FILE, compare

    released = RELEASED_FILE.read_text(encoding="utf-8")
    assert "input DemographicsInput {" in released
    one_of = released.replace("input DemographicsInput {", "input DemographicsInput @oneOf {")
    if "directive @oneOf" not in one_of:
        one_of = "directive @oneOf on INPUT_OBJECT\n\n" + one_of
    changes = compare(released, one_of)
    assert changes.breaking, changes.report()
    assert not changes.ok


@pytest.fixture(scope="module")
def production_gateway(tmp_path_factory, sources, production_settings):
    tmp = tmp_path_factory.mktemp("production")
    with running_gateway(tmp, sources, **production_settings(tmp)) as running:
        yield running


def test_a_get_of_graphql_in_production_is_refused_with_the_code_its_status_has(
    production_gateway,
):
    """README's error table: 404 is PATH_NOT_FOUND, BAD_REQUEST is 400/405/406. Outside dev mode
    GraphiQL is off and a browser's GET /graphql was 404 coded BAD_REQUEST (strawberry's "Not
    Found" for a disabled IDE, coded as any HTTPException) - a portal tool branching on the code
    reads a malformed request where nothing is served."""
    response = httpx.get(
        f"{production_gateway.url}/graphql",
        headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    code = response.json()["errors"][0]["extensions"]["code"]
    expected = {404: "PATH_NOT_FOUND", 400: "BAD_REQUEST", 405: "BAD_REQUEST"}
    assert response.status_code in expected
    assert code == expected[response.status_code], (response.status_code, code)


def test_an_accept_header_sent_as_two_lines_is_read_as_one_list(dev_gateway):
    """RFC 9110 5.3: a field sent as several lines is one comma-separated list. A client (or a
    proxy) sending `Accept: text/html` and `Accept: application/graphql-response+json` accepts
    the latter; only the first line was read, and the request was refused 406."""
    token = dev_gateway.token("gp")
    response = httpx.post(
        f"{dev_gateway.url}/graphql",
        content=b'{"query": "{ __typename }"}',
        headers=[
            ("authorization", f"Bearer {token}"),
            ("content-type", "application/json"),
            ("accept", "text/html"),
            ("accept", "application/graphql-response+json"),
        ],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/graphql-response+json"


def test_an_operation_name_naming_none_of_several_is_a_validation_failure(dev_gateway):
    """README's error table: GRAPHQL_VALIDATION_FAILED (400 / 200) when the document "holds
    several operations and `operationName` names none"; and as `application/json` a request that
    never ran is 200 with `"data": null`, as clients written before the specification expect
    (the specification: 200 for every well-formed request in that media type). An
    `operationName` naming an operation the document does not hold was BAD_REQUEST, 400, in
    either media type."""
    token = dev_gateway.token("gp")
    body = {"query": "query A { __typename } query B { __typename }", "operationName": "C"}
    answers = {
        accept: httpx.post(
            f"{dev_gateway.url}/graphql",
            json=body,
            headers={"authorization": f"Bearer {token}", "accept": accept},
        )
        for accept in ("application/json", "application/graphql-response+json")
    }
    legacy, current = answers["application/json"], answers["application/graphql-response+json"]
    for response in (legacy, current):
        codes = [e["extensions"]["code"] for e in response.json()["errors"]]
        assert codes == ["GRAPHQL_VALIDATION_FAILED"], response.text
    assert (legacy.status_code, legacy.json()["data"]) == (200, None)
    assert current.status_code == 400


@pytest.mark.parametrize(
    "url", ["https://[::1/.well-known/openid-configuration", "https://\x00idp.example.test/"]
)
def test_a_discovery_url_httpx_cannot_send_to_is_a_failed_read(url):
    """A mistyped CHILDLOOKUP_PORTAL_OIDC_DISCOVERY_URL (start-up accepts any string) made httpx
    raise InvalidURL, which is no httpx.HTTPError: every GET /portal/ and /portal/config.json
    was a 500, the discovery read again each time, rather than the page saying sign-in is
    unavailable and the log saying why."""
    discovery = ProviderDiscovery(url, "https://idp.example.test", timeout_s=1)
    assert asyncio.run(discovery.endpoints()) is None
    assert asyncio.run(discovery.endpoints()) is None
