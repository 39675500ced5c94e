"""Automatic persisted queries (Apollo's APQ protocol) where trusted documents are off: a hash the
gateway does not know asks for the text, text with its hash is checked and kept, and later the
hash alone runs it - in one process, or on every gateway sharing a Redis."""

import json

import pytest

from gateway.document_registry import document_id
from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_connectors, running_gateway

VARIABLES = {"nhs": NHS, "purpose": "DIRECT_CARE"}
LOOKUP_HASH = document_id(LOOKUP)


def _apq(sha256: str = LOOKUP_HASH, version: int = 1) -> dict:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


def _error(response) -> tuple[str, str]:
    error = response.json()["errors"][0]
    return error["extensions"]["code"], error["message"]


def _outcome(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["data"]["child"]["outcome"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("apq")
    with reference_connectors(tmp, {"health": [health_record()]}) as sources:
        yield sources


@pytest.fixture
def gateway(tmp_path, apps):
    with running_gateway(tmp_path, apps) as running:
        yield running


def test_an_unknown_hash_asks_for_the_text_and_nothing_runs(gateway):
    before = len(gateway.components.audit.records(limit=100_000))
    response = gateway.post({"extensions": _apq(), "variables": VARIABLES}, gateway.token("gp"))
    assert response.status_code == 404
    assert _error(response) == ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
    assert response.headers["cache-control"] == "no-store"
    assert len(gateway.components.audit.records(limit=100_000)) == before


def test_text_with_its_hash_runs_and_registers_it_for_the_hash_alone(gateway):
    token = gateway.token("gp")
    registering = {"query": LOOKUP, "extensions": _apq(), "variables": VARIABLES}
    assert _outcome(gateway.post(registering, token)) == "FOUND"
    by_hash = gateway.post({"extensions": _apq(), "variables": VARIABLES}, token)
    assert _outcome(by_hash) == "FOUND"
    by_document_id = {"documentId": f"sha256:{LOOKUP_HASH}", "variables": VARIABLES}
    assert _outcome(gateway.post(by_document_id, token)) == "FOUND"


def test_text_whose_hash_is_not_its_sha256_is_refused_and_not_kept(gateway):
    token = gateway.token("gp")
    wrong = document_id("query Other { __typename }")
    mismatched = gateway.post({"query": LOOKUP, "extensions": _apq(wrong)}, token)
    assert mismatched.status_code == 400
    assert _error(mismatched)[0] == "BAD_REQUEST"
    assert "not the SHA-256" in _error(mismatched)[1]
    hash_only = gateway.post({"extensions": _apq(wrong), "variables": VARIABLES}, token)
    assert _error(hash_only)[0] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    ("extensions", "says"),
    [
        (_apq(version=2), "Only version 1"),
        (_apq(sha256="not-a-hash"), "lowercase hex"),
    ],
)
def test_a_malformed_persisted_query_is_a_bad_request(gateway, extensions, says):
    response = gateway.post({"extensions": extensions}, gateway.token("gp"))
    assert response.status_code == 400
    code, message = _error(response)
    assert code == "BAD_REQUEST"
    assert says in message


def test_a_query_holding_a_string_literal_runs_but_is_never_kept(gateway):
    """An NHS number typed into the query text would be stored with it; variables never are."""
    token = gateway.token("gp")
    literal = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'
    extensions = _apq(document_id(literal))
    assert _outcome(gateway.post({"query": literal, "extensions": extensions}, token)) == "FOUND"
    again = gateway.post({"extensions": extensions}, token)
    assert _error(again)[0] == "PERSISTED_QUERY_NOT_FOUND"


def test_only_an_authenticated_caller_reaches_the_store(gateway):
    registering = {"query": LOOKUP, "extensions": _apq(), "variables": VARIABLES}
    assert gateway.post(registering).status_code == 401
    hash_only = gateway.post({"extensions": _apq()}, gateway.token("gp"))
    assert _error(hash_only)[0] == "PERSISTED_QUERY_NOT_FOUND"


def test_switched_off_a_hash_alone_says_persisted_queries_are_not_supported(tmp_path, apps):
    with running_gateway(tmp_path, apps, persisted_queries=False) as gateway:
        token = gateway.token("gp")
        response = gateway.post({"extensions": _apq(), "variables": VARIABLES}, token)
        assert response.status_code == 400
        assert _error(response) == ("PERSISTED_QUERY_NOT_SUPPORTED", "PersistedQueryNotSupported")
        with_text = {"query": LOOKUP, "extensions": _apq(), "variables": VARIABLES}
        assert _outcome(gateway.post(with_text, token)) == "FOUND"


def test_gateways_sharing_a_redis_share_the_registered_texts_and_nothing_else(
    tmp_path, apps, redis_prefix
):
    import redis

    url, prefix = redis_prefix
    shared = {"redis_url": url, "redis_prefix": prefix}
    with (
        running_gateway(tmp_path / "a", apps, **shared) as first,
        running_gateway(tmp_path / "b", apps, **shared) as second,
    ):
        registering = {"query": LOOKUP, "extensions": _apq(), "variables": VARIABLES}
        assert _outcome(first.post(registering, first.token("gp"))) == "FOUND"
        by_hash = second.post({"extensions": _apq(), "variables": VARIABLES}, second.token("gp"))
        assert _outcome(by_hash) == "FOUND"
    client = redis.Redis.from_url(url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{prefix}:apq:*")]
        assert keys == [f"{prefix}:apq:{LOOKUP_HASH}"]
        assert client.get(keys[0]).decode() == LOOKUP
        assert 0 < client.ttl(keys[0]) <= 86_400
        everything = b"".join(client.dump(k) or b"" for k in client.scan_iter(match=f"{prefix}*"))
        assert NHS.encode() not in everything
    finally:
        client.close()


def test_with_trusted_documents_on_text_and_hash_never_register(tmp_path, apps):
    registry = tmp_path / "operations.json"
    other = "query Other { __typename }"
    registry.write_text(json.dumps({"operations": [{"id": document_id(other), "body": other}]}))
    with running_gateway(tmp_path, apps, trusted_documents=registry) as gateway:
        token = gateway.token("gp")
        registering = {"query": LOOKUP, "extensions": _apq(), "variables": VARIABLES}
        for body in (registering, {"extensions": _apq(), "variables": VARIABLES}):
            response = gateway.post(body, token)
            assert response.status_code == 400
            assert _error(response)[0] == "OPERATION_NOT_TRUSTED"
