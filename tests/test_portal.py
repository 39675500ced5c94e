"""The practitioners' portal as the gateway serves it, over real HTTP: the page and its files with
their security headers, the demo sign-in (dev only), and its operations - generated into a
trusted-documents manifest that is kept current and that a gateway in trusted mode runs."""

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from graphql import GraphQLEnumType

import portal
from gateway.cli import main
from gateway.portal_site import CONTENT_SECURITY_POLICY
from gateway.tokens import DEMO_USERS
from resolvers.schema import build_schema
from tests.factories import NHS, health_record, social_care_record
from tests.stack import reference_connectors, running_gateway

PORTAL = Path(portal.__file__).parent

REFERENCE = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"[^>]*>""")
IMPORT = re.compile(r"""^import\b[^"']*["'](\./[^"']+)["']""", re.M)
SENT = re.compile(r"""graphql\(\s*token,\s*"(\w+)\"""")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("portal")
    records = {
        "health": [health_record()],
        "social_care": [social_care_record()],
    }
    with reference_connectors(tmp, records) as configured:
        yield configured


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, sources):
    with running_gateway(tmp_path_factory.mktemp("dev"), sources) as running:
        yield running


def _scripts(base: str, entry: str) -> dict[str, httpx.Response]:
    """Every module the page's entry script imports, transitively, by URL."""
    found: dict[str, httpx.Response] = {}
    pending = [entry]
    while pending:
        url = pending.pop()
        if url in found:
            continue
        found[url] = httpx.get(url)
        pending += [urljoin(url, ref) for ref in IMPORT.findall(found[url].text)]
    return found


def _assert_portal_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_is_served_not_stored_under_a_strict_content_security_policy(gateway):
    page = httpx.get(f"{gateway.url}/portal/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    _assert_portal_headers(page)
    assert page.headers["cache-control"] == "no-store"
    # Nothing inline for the policy to refuse, and nothing from elsewhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\bstyle=|\bon\w+=", page.text)
    assert not re.search(r"https?://|(?:src|href)=\"//", page.text, re.I)
    assert httpx.get(f"{gateway.url}/portal").status_code in (200, 307)


def test_every_file_the_page_loads_is_served_here_cacheable_with_the_same_headers(gateway):
    page = httpx.get(f"{gateway.url}/portal/")
    refs = [urljoin(str(page.url), ref) for ref in REFERENCE.findall(page.text)]
    entry = next(ref for ref in refs if ref.endswith(".js"))
    files = _scripts(gateway.url, entry) | {ref: httpx.get(ref) for ref in refs}
    assert len(files) >= 8  # the style sheet and the page's modules
    for url, response in files.items():
        assert urlsplit(url).netloc == urlsplit(gateway.url).netloc, url
        assert response.status_code == 200, url
        kind = response.headers["content-type"].split(";")[0]
        expected = {".css": "text/css", ".svg": "image/svg+xml"}.get(url[-4:], "text/javascript")
        assert kind in (expected, "application/javascript"), (url, kind)
        _assert_portal_headers(response)
        assert response.headers["cache-control"] == "no-cache", url
        for keeper in ("localStorage", "sessionStorage", "indexedDB", "document.cookie"):
            # Only the sign-in's PKCE verifier, state and nonce cross the trip to the identity
            # provider, in this tab's sessionStorage (portal/static/js/oidc.js).
            if (keeper, url.rsplit("/", 1)[-1]) != ("sessionStorage", "oidc.js"):
                assert keeper not in response.text, (url, keeper)


def test_the_page_sends_only_the_operations_in_its_manifest(gateway):
    served = httpx.get(f"{gateway.url}/portal/operations.json")
    assert served.status_code == 200
    assert served.headers["cache-control"] == "no-store"
    names = {op["name"] for op in served.json()["operations"]}
    assert names == {
        "ChildLookup",
        "AuditTrail",
        "AccessHistory",
        "OverrideAlerts",
        "LimitAlerts",
        "UndeliveredNotifications",
        "UserAuditTrail",
    }
    sent = set()
    for script in (portal.STATIC_DIR / "js").glob("*.js"):
        sent |= set(SENT.findall(script.read_text(encoding="utf-8")))
    assert sent == names


def test_the_committed_manifest_is_generated_from_the_operation_files(capsys):
    assert portal.MANIFEST_FILE.read_text(encoding="utf-8") == portal.manifest_text()
    assert main(["portal", "manifest", "--check"]) == 0
    capsys.readouterr()
    assert main(["portal", "manifest"]) == 0
    assert capsys.readouterr().out == portal.manifest_text()


def test_the_manifest_command_writes_an_apollo_manifest(tmp_path):
    out = tmp_path / "operations.json"
    assert main(["portal", "manifest", "--out", str(out)]) == 0
    manifest = json.loads(out.read_text(encoding="utf-8"))
    assert manifest["format"] == "apollo-persisted-query-manifest"
    assert {(op["name"], op["type"]) for op in manifest["operations"]} == {
        ("ChildLookup", "query"),
        ("AuditTrail", "query"),
        ("AccessHistory", "query"),
        ("OverrideAlerts", "query"),
        ("LimitAlerts", "query"),
        ("UndeliveredNotifications", "query"),
        ("UserAuditTrail", "query"),
    }


def test_config_names_the_demo_users_and_each_purposes_justification_rule(gateway):
    config = httpx.get(f"{gateway.url}/portal/config.json")
    assert config.headers["cache-control"] == "no-store"
    _assert_portal_headers(config)
    body = config.json()
    assert body["signIn"] == "demo"
    assert [(u["role"], u["organisation"]) for u in body["demoUsers"]] == [
        (u.role, u.organisation) for u in DEMO_USERS
    ]
    override = body["purposes"]["EMERGENCY_OVERRIDE"]
    assert (override["justificationRequired"], override["minWords"]) == (True, 4)
    assert body["purposes"]["SAFEGUARDING_ENQUIRY"]["justificationRequired"] is False
    assert body["idleTimeoutS"] == 900


def _operation(name: str) -> str:
    return next(
        op["body"]
        for op in json.loads(portal.MANIFEST_FILE.read_text(encoding="utf-8"))["operations"]
        if op["name"] == name
    )


def _send(url: str, token: str, name: str, variables: dict) -> httpx.Response:
    """As the page sends an operation (portal/static/js/api.js)."""
    return httpx.post(
        f"{url}/graphql",
        json={"query": _operation(name), "operationName": name, "variables": variables},
        headers={
            "authorization": f"Bearer {token}",
            "accept": "application/graphql-response+json",
        },
        timeout=10,
    )


def _dev_session(url: str, user: int) -> httpx.Response:
    return httpx.post(f"{url}/portal/dev-session", json={"user": user})


def test_a_demo_sign_in_gives_a_token_the_gateway_accepts(gateway):
    session = _dev_session(gateway.url, 0)
    assert session.status_code == 200
    assert session.headers["cache-control"] == "no-store"
    body = session.json()
    assert body["user"] == {
        "index": 0,
        "name": DEMO_USERS[0].name,
        "role": DEMO_USERS[0].role,
        "organisation": DEMO_USERS[0].organisation,
    }
    variables = {"purpose": "SAFEGUARDING_ENQUIRY", "identify": {"nhsNumber": NHS}}
    answer = _send(gateway.url, body["token"], "ChildLookup", variables)
    assert answer.status_code == 200, answer.text
    lookup = answer.json()["data"]["child"]
    assert lookup["outcome"] == "FOUND"
    assert lookup["child"]["indicators"]["childProtectionPlan"]["value"] is True


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"json": {"user": 99}}, 400),
        ({"json": {"user": True}}, 400),
        ({"json": {}}, 400),
        ({"data": {"user": "0"}}, 400),  # a form post, as another site's page could send
        ({"content": b"x" * 4096, "headers": {"content-type": "application/json"}}, 413),
    ],
)
def test_a_dev_session_names_a_demo_user_as_json(gateway, request_kwargs, status):
    refused = httpx.post(f"{gateway.url}/portal/dev-session", **request_kwargs)
    assert refused.status_code == status
    assert "token" not in refused.text


def test_production_signs_in_with_the_identity_provider_never_a_dev_session(
    tmp_path, sources, production_settings
):
    settings = production_settings(tmp_path) | {"portal_client_id": "childlookup-portal"}
    with running_gateway(tmp_path, sources, **settings) as production:
        assert _dev_session(production.url, 0).status_code == 404
        config = httpx.get(f"{production.url}/portal/config.json").json()
        assert config["signIn"] == "oidc"
        assert config["demoUsers"] == []
        assert config["oidc"]["issuer"] == "https://idp.example.test"
        assert config["oidc"]["clientId"] == "childlookup-portal"
        page = httpx.get(f"{production.url}/portal/")
        assert page.status_code == 200
        _assert_portal_headers(page)


def test_a_gateway_trusting_only_the_portals_manifest_runs_the_portals_operations(
    tmp_path, sources
):
    with running_gateway(tmp_path, sources, trusted_documents=portal.MANIFEST_FILE) as trusted:
        worker = trusted.token("social_worker", "LA-LEEDS")
        identify = {"nhsNumber": NHS}
        lookup = _send(
            trusted.url,
            worker,
            "ChildLookup",
            {"purpose": "SAFEGUARDING_ENQUIRY", "identify": identify},
        )
        assert lookup.status_code == 200, lookup.text
        assert lookup.json()["data"]["child"]["outcome"] == "FOUND"
        override = _send(
            trusted.url,
            worker,
            "ChildLookup",
            {
                "purpose": "EMERGENCY_OVERRIDE",
                "identify": identify,
                "justification": "child missing from home tonight, police attending now",
            },
        )
        assert override.json()["data"]["child"]["outcome"] == "FOUND"
        trail = _send(trusted.url, trusted.token("auditor"), "AuditTrail", {"nhsNumber": NHS})
        assert trail.status_code == 200, trail.text
        entries = trail.json()["data"]["auditTrail"]
        assert [e["purposeCode"] for e in entries][:2] == [
            "SAFEGUARDING_ENQUIRY",
            "EMERGENCY_OVERRIDE",
        ]
        other = httpx.post(
            f"{trusted.url}/graphql",
            json={"query": "{ __typename }"},
            headers={"authorization": f"Bearer {worker}"},
        )
        assert other.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_TRUSTED"


@pytest.mark.parametrize(
    ("words", "enum"), [("PURPOSES", "AuditPurpose"), ("AUDIT_OUTCOMES", "AuditOutcome")]
)
def test_the_portal_has_words_for_every_purpose_and_outcome_an_audit_trail_shows(words, enum):
    """An auditor reading a trail sees each entry's purpose and outcome in plain words: a code
    the gateway records that the portal has no words for shows as the bare code."""
    source = (PORTAL / "static" / "js" / "words.js").read_text()
    block = re.search(rf"export const {words} = \{{(.*?)\n\}};", source, re.S)
    assert block is not None
    keys = set(re.findall(r"^  ([A-Z_]+):", block.group(1), re.M))
    gql_type = build_schema()._schema.type_map[enum]
    assert isinstance(gql_type, GraphQLEnumType)
    assert set(gql_type.values) <= keys
