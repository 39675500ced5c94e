import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.openapi import openapi_document
from connectors.protocol import LOOKUP_PATH

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "connector-openapi.json"


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_committed_document_matches_the_code():
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))

    assert committed == openapi_document(), (
        "docs/connector-openapi.json is stale; regenerate it with "
        "`python -m connectors.openapi > docs/connector-openapi.json`"
    )


def test_every_reference_resolves_to_a_component_schema():
    document = openapi_document()
    schemas = document["components"]["schemas"]

    assert {ref.removeprefix("#/components/schemas/") for ref in refs(document)} <= set(schemas)


def test_lookup_documents_every_status_the_app_can_answer_with():
    responses = openapi_document()["paths"][LOOKUP_PATH]["post"]["responses"]

    assert set(responses) == {"200", "400", "401", "403", "413", "500", "503", "504"}
