"""The trusted-documents registry: the operations portals registered in advance, read from the
manifest their build tools write.

Two formats are read:

- Apollo's persisted-query manifest (`@apollo/generate-persisted-query-manifest`):
  `{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name",
  "type", "body"}]}`. The id is the body's SHA-256 by default, or whatever the portal's
  `createOperationId` returned.
- GraphQL Code Generator's client-preset `persisted-documents.json`: `{"<hash>": body}`, the key
  `sha256:<hex>` when it says which hash it is (then it is checked), else any hash or id.

An operation is found by its id as the manifest gives it, by the SHA-256 of its body (hex, or
`sha256:<hex>` as the GraphQL-over-HTTP persisted documents appendix writes it), so a portal may
send either. Load errors name the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from graphql import GraphQLError, parse

APOLLO_FORMAT: Final = "apollo-persisted-query-manifest"
SHA256_PREFIX: Final = "sha256:"


def document_id(text: str) -> str:
    """The SHA-256 of a document's text, in hex: its id in Apollo's protocol."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class DocumentRegistry:
    """Every registered operation's text, under each key a request may name it by."""

    path: Path
    operations: int
    """How many operations the manifest registers."""
    _by_key: Mapping[str, str]

    def find(self, key: str) -> str | None:
        """The operation text registered under `key` (an id, a SHA-256 or `sha256:<hex>`)."""
        return self._by_key.get(key)


def load_registry(path: Path) -> DocumentRegistry:
    """Read an Apollo manifest or a codegen persisted-documents file; raise ValueError naming the
    file and the problem when it cannot be used."""
    try:
        manifest: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the trusted documents: {exc.strerror}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object (an Apollo manifest or codegen's map)")
    if "operations" in manifest or "format" in manifest:
        entries = _apollo_entries(path, manifest)
    else:
        entries = _codegen_entries(path, manifest)
    if not entries:
        raise ValueError(f"{path}: no operations registered")
    by_key: dict[str, str] = {}
    for label, key, body in entries:
        _check_body(path, label, body)
        digest = document_id(body)
        for alias in (key, digest, SHA256_PREFIX + digest):
            if by_key.setdefault(alias, body) != body:
                raise ValueError(f"{path}: {label}: id {alias!r} names two different operations")
    return DocumentRegistry(path, len(entries), by_key)


def _apollo_entries(path: Path, manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label for messages, id, body) of each operation of an Apollo manifest."""
    if manifest.get("format", APOLLO_FORMAT) != APOLLO_FORMAT:
        raise ValueError(f"{path}: unknown format {manifest['format']!r}, expected {APOLLO_FORMAT}")
    if manifest.get("version", 1) != 1:
        raise ValueError(f"{path}: {APOLLO_FORMAT} version {manifest['version']!r}; only 1 is read")
    operations = manifest.get("operations")
    if not isinstance(operations, list):
        raise ValueError(f"{path}: `operations` must be a list")
    entries = []
    for index, operation in enumerate(operations):
        label = f"operation {index}"
        if not isinstance(operation, dict):
            raise ValueError(f"{path}: {label} is not an object")
        if isinstance(operation.get("name"), str):
            label = f"operation {index} ({operation['name']})"
        key, body = operation.get("id"), operation.get("body")
        if not isinstance(key, str) or not key:
            raise ValueError(f"{path}: {label} has no `id`")
        if not isinstance(body, str):
            raise ValueError(f"{path}: {label} has no `body`")
        entries.append((label, key, body))
    return entries


def _codegen_entries(path: Path, manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label for messages, hash, body) of each document of codegen's persisted-documents.json;
    a `sha256:` key must be the body's SHA-256."""
    entries = []
    for key, body in manifest.items():
        label = f"document {key!r}"
        if not isinstance(body, str):
            raise ValueError(f"{path}: {label} is not a document's text")
        if key.startswith(SHA256_PREFIX) and key[len(SHA256_PREFIX) :] != document_id(body):
            raise ValueError(f"{path}: {label} is not the SHA-256 of its document")
        entries.append((label, key, body))
    return entries


def _check_body(path: Path, label: str, body: str) -> None:
    try:
        parse(body)
    except GraphQLError as exc:
        raise ValueError(f"{path}: {label} is not valid GraphQL: {exc.message}") from exc
