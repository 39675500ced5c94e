"""The trusted-documents registry reads the manifests portals' build tools write: Apollo's, with
default or custom ids, and GraphQL Code Generator's persisted-documents.json."""

import json

import pytest

from gateway.document_registry import document_id, load_registry

LOOKUP = "query Lookup($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { outcome } }"
TRAIL = "query Trail($nhs: String!) { auditTrail(nhsNumber: $nhs) { at } }"


def _write(tmp_path, manifest):
    path = tmp_path / "operations.json"
    path.write_text(json.dumps(manifest) if not isinstance(manifest, str) else manifest)
    return path


def _apollo(*operations):
    return {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}


def test_an_apollo_manifest_finds_each_operation_by_id_and_by_sha256(tmp_path):
    path = _write(
        tmp_path,
        _apollo({"id": document_id(LOOKUP), "name": "Lookup", "type": "query", "body": LOOKUP}),
    )
    registry = load_registry(path)
    assert registry.operations == 1
    assert registry.find(document_id(LOOKUP)) == LOOKUP
    assert registry.find(f"sha256:{document_id(LOOKUP)}") == LOOKUP
    assert registry.find(document_id(TRAIL)) is None


def test_an_apollo_manifest_with_custom_ids_maps_each_id_and_each_body_hash(tmp_path):
    path = _write(
        tmp_path,
        _apollo(
            {"id": "portal-lookup-v3", "name": "Lookup", "type": "query", "body": LOOKUP},
            {"id": "portal-trail-v1", "name": "Trail", "type": "query", "body": TRAIL},
        ),
    )
    registry = load_registry(path)
    assert registry.operations == 2
    assert registry.find("portal-lookup-v3") == LOOKUP
    assert registry.find("portal-trail-v1") == TRAIL
    assert registry.find(document_id(TRAIL)) == TRAIL


def test_codegen_persisted_documents_load_with_or_without_the_sha256_prefix(tmp_path):
    prefixed = load_registry(_write(tmp_path, {f"sha256:{document_id(LOOKUP)}": LOOKUP}))
    assert prefixed.find(document_id(LOOKUP)) == LOOKUP
    assert prefixed.find(f"sha256:{document_id(LOOKUP)}") == LOOKUP
    plain = load_registry(_write(tmp_path, {"a1b2c3": LOOKUP, document_id(TRAIL): TRAIL}))
    assert plain.operations == 2
    assert plain.find("a1b2c3") == LOOKUP
    assert plain.find(f"sha256:{document_id(LOOKUP)}") == LOOKUP


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("{not json", "not JSON"),
        ([LOOKUP], "expected a JSON object"),
        ({}, "no operations registered"),
        (_apollo(), "no operations registered"),
        ({"format": "relay", "operations": []}, "unknown format 'relay'"),
        (_apollo() | {"version": 2}, "version 2"),
        (_apollo({"name": "Lookup", "body": LOOKUP}), r"operation 0 \(Lookup\) has no `id`"),
        (_apollo({"id": "x", "name": "Lookup"}), r"operation 0 \(Lookup\) has no `body`"),
        (_apollo({"id": "x", "body": "query {"}), "operation 0 is not valid GraphQL"),
        (
            _apollo({"id": "x", "body": LOOKUP}, {"id": "x", "body": TRAIL}),
            "id 'x' names two different operations",
        ),
        ({"sha256:" + "0" * 64: LOOKUP}, "is not the SHA-256 of its document"),
        ({"abc": 5}, "document 'abc' is not a document's text"),
    ],
)
def test_a_manifest_that_cannot_be_used_stops_start_up_naming_the_file_and_the_problem(
    tmp_path, manifest, problem
):
    path = _write(tmp_path, manifest)
    with pytest.raises(ValueError, match=problem) as refused:
        load_registry(path)
    assert str(refused.value).startswith(f"{path}: ")


def test_a_missing_manifest_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.json: cannot read"):
        load_registry(tmp_path / "missing.json")
