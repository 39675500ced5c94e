"""Trusted documents beyond one tool: a gateway given Apollo's manifest with custom ids, or GraphQL
Code Generator's persisted-documents.json, runs exactly those operations by id, by hash (plain
or `sha256:`) or by text, and says the mode is on."""

import json
import logging

import httpx
import pytest

from gateway.document_registry import document_id
from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_connectors, running_gateway

VARIABLES = {"nhs": NHS, "purpose": "DIRECT_CARE"}
TRAIL = "query Trail($nhs: String!) { auditTrail(nhsNumber: $nhs) { at } }"


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trusted")
    with reference_connectors(tmp, {"health": [health_record()]}) as sources:
        yield sources


def _outcome(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["data"]["child"]["outcome"]


def _apq(key: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": key}}


def test_an_apollo_manifest_with_custom_ids_runs_by_id_hash_or_text(tmp_path, apps):
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": "portal/lookup@3", "name": "Lookup", "type": "query", "body": LOOKUP},
            {"id": "portal/trail@1", "name": "Trail", "type": "query", "body": TRAIL},
        ],
    }
    registry = tmp_path / "persisted-query-manifest.json"
    registry.write_text(json.dumps(manifest))
    with running_gateway(tmp_path, apps, trusted_documents=registry) as gateway:
        token = gateway.token("gp")
        requests = [
            {"extensions": _apq("portal/lookup@3")},
            {"documentId": "portal/lookup@3"},
            {"extensions": _apq(document_id(LOOKUP))},
            {"documentId": f"sha256:{document_id(LOOKUP)}"},
            {"query": LOOKUP, "extensions": _apq("portal/lookup@3")},
            {"query": LOOKUP},
        ]
        for request in requests:
            assert _outcome(gateway.post(request | {"variables": VARIABLES}, token)) == "FOUND"
        wrong_text = {"query": TRAIL, "documentId": "portal/lookup@3", "variables": VARIABLES}
        refused = gateway.post(wrong_text, token)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_TRUSTED"


def test_codegen_persisted_documents_run_by_their_prefixed_hash(tmp_path, apps):
    registry = tmp_path / "persisted-documents.json"
    registry.write_text(json.dumps({f"sha256:{document_id(LOOKUP)}": LOOKUP}))
    with running_gateway(tmp_path, apps, trusted_documents=registry) as gateway:
        token = gateway.token("gp")
        for key in (f"sha256:{document_id(LOOKUP)}", document_id(LOOKUP)):
            by_id = gateway.post({"documentId": key, "variables": VARIABLES}, token)
            assert _outcome(by_id) == "FOUND"
        other = gateway.post({"query": TRAIL, "variables": {"nhs": NHS}}, token)
        assert other.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_TRUSTED"


def test_readiness_and_the_start_up_log_say_trusted_documents_are_on(tmp_path, apps, caplog):
    registry = tmp_path / "persisted-documents.json"
    registry.write_text(json.dumps({document_id(LOOKUP): LOOKUP, document_id(TRAIL): TRAIL}))
    with (
        caplog.at_level(logging.INFO, logger="childlookup.gateway"),
        running_gateway(tmp_path, apps, trusted_documents=registry) as gateway,
    ):
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    assert ready["trusted_documents"] == {"operations": 2}
    started = [r for r in caplog.records if getattr(r, "event", None) == "trusted_documents"]
    assert [r.context for r in started] == [{"file": str(registry), "operations": 2}]


def test_readiness_and_the_start_up_log_say_trusted_documents_are_off(tmp_path, apps, caplog):
    with (
        caplog.at_level(logging.INFO, logger="childlookup.gateway"),
        running_gateway(tmp_path, apps) as gateway,
    ):
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    assert ready["trusted_documents"] is None
    started = [r for r in caplog.records if getattr(r, "event", None) == "trusted_documents_off"]
    assert [r.context for r in started] == [{"persisted_queries": "memory"}]
