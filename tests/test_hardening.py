"""GraphQL hardening outside dev mode, and trusted documents: attacks that must be refused."""

import json

import httpx
import pytest

from gateway.document_registry import document_id
from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_connectors, running_gateway

INTROSPECTION = "{ __schema { types { name } } }"


def _code(response):
    assert "Traceback" not in response.text
    return response.json()["errors"][0]["extensions"]["code"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    with reference_connectors(tmp, {"health": [health_record()]}) as sources:
        yield sources


def test_production_refuses_introspection_suggestions_and_graphiql(
    tmp_path, apps, production_settings
):
    with running_gateway(tmp_path, apps, **production_settings(tmp_path)) as gateway:
        token = gateway.token("gp")
        assert _code(gateway.post({"query": INTROSPECTION}, token)) == "GRAPHQL_VALIDATION_FAILED"
        typo = gateway.post(
            {"query": f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcom }} }}'}, token
        )
        assert _code(typo) == "GRAPHQL_VALIDATION_FAILED"
        assert "Did you mean" not in typo.text
        argument_typo = gateway.post(
            {"query": f'{{ child(nhsNumbr: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'}, token
        )
        assert _code(argument_typo) == "GRAPHQL_VALIDATION_FAILED"
        assert "Did you mean" not in argument_typo.text  # strawberry stripped only fields'
        page = httpx.get(f"{gateway.url}/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        lookup = gateway.lookup("gp", NHS, "DIRECT_CARE")["data"]["child"]
        assert lookup["outcome"] == "FOUND"


def test_dev_mode_keeps_the_schema_explorable(tmp_path, apps):
    with running_gateway(tmp_path, apps) as gateway:
        body = gateway.post({"query": INTROSPECTION}, gateway.token("gp")).json()
        assert "errors" not in body
        assert any(t["name"] == "ChildLookup" for t in body["data"]["__schema"]["types"])


@pytest.fixture
def trusted(tmp_path, apps):
    registry = tmp_path / "operations.json"
    registry.write_text(
        json.dumps({"operations": [{"id": document_id(LOOKUP), "name": "Lookup", "body": LOOKUP}]})
    )
    with running_gateway(tmp_path, apps, trusted_documents=registry) as gateway:
        yield gateway


VARIABLES = {"nhs": NHS, "purpose": "DIRECT_CARE"}


def test_a_registered_operation_runs_by_id_or_by_its_text(trusted):
    token = trusted.token("gp")
    by_id = trusted.post({"documentId": document_id(LOOKUP), "variables": VARIABLES}, token)
    apq = {"persistedQuery": {"version": 1, "sha256Hash": document_id(LOOKUP)}}
    by_apq = trusted.post({"extensions": apq, "variables": VARIABLES}, token)
    by_text = trusted.post({"query": LOOKUP, "variables": VARIABLES}, token)
    for response in (by_id, by_apq, by_text):
        assert response.status_code == 200
        assert response.json()["data"]["child"]["outcome"] == "FOUND"


@pytest.mark.parametrize(
    "body",
    [
        {"query": INTROSPECTION},
        {"query": '{ child(nhsNumber: "9434765919", purpose: DIRECT_CARE) { outcome } }'},
        {"documentId": "0" * 64, "variables": VARIABLES},
        {"documentId": document_id(LOOKUP), "query": INTROSPECTION},
        ["not", "an", "object"],
    ],
)
def test_anything_unregistered_is_refused_before_it_runs(trusted, body):
    before = len(trusted.components.audit.records(limit=100_000))
    response = trusted.post(body, trusted.token("gp"))
    assert response.status_code == 400
    assert _code(response) == "OPERATION_NOT_TRUSTED"
    assert len(trusted.components.audit.records(limit=100_000)) == before


def test_an_untrusted_operation_refusal_is_not_stored_by_any_cache(trusted):
    response = trusted.post({"documentId": "0" * 64, "variables": VARIABLES}, trusted.token("gp"))
    assert response.status_code == 400
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("pragma") == "no-cache"


def test_a_registry_that_cannot_be_used_is_refused_at_start(tmp_path, apps):
    registry = tmp_path / "operations.json"
    registry.write_text(json.dumps({"operations": [{"id": "lookup", "body": "query {"}]}))
    with (
        pytest.raises(ValueError, match="not valid GraphQL"),
        running_gateway(tmp_path, apps, trusted_documents=registry),
    ):
        pass


def test_production_refuses_to_accept_dev_tokens(tmp_path, production_settings):
    from pydantic import ValidationError

    from gateway.config import Settings

    settings = production_settings(tmp_path) | {"issuer": "childlookup-dev"}
    with pytest.raises(ValidationError, match="dev tokens"):
        Settings(**settings)
