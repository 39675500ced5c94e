"""The reference portal: the practitioner's page, in plain HTML, CSS and ES modules (no framework,
no build step), and the GraphQL operations it sends.

Every operation the page sends is one file in `operations/` (one named operation each, the file
named after it). `manifest()` turns them into the trusted-documents manifest in Apollo's format,
committed as `operations.json`: the page loads its operation texts from that file, and a gateway
run with it (`CHILDLOOKUP_TRUSTED_DOCUMENTS=portal/operations.json`) runs the portal's operations
and nothing else. `childlookup portal manifest` regenerates it; a test keeps it current.

The gateway serves the page (gateway.portal_site); this package holds only files and data, so a
local authority can copy `static/` and `operations.json` to its own web server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from graphql import OperationDefinitionNode, parse, print_ast

_HERE: Final = Path(__file__).resolve().parent

STATIC_DIR: Final = _HERE / "static"
"""The page (`index.html`), its style sheet and its scripts, served at /portal/."""
OPERATIONS_DIR: Final = _HERE / "operations"
"""One `.graphql` file per operation the page sends."""
MANIFEST_FILE: Final = _HERE / "operations.json"
"""The committed trusted-documents manifest generated from OPERATIONS_DIR."""
APOLLO_FORMAT: Final = "apollo-persisted-query-manifest"


@dataclass(frozen=True)
class Operation:
    """One operation the page sends, as it sends it."""

    name: str
    type: str
    """query or mutation."""
    body: str
    """The operation's text, printed canonically (comments dropped): sent exactly so."""

    @property
    def id(self) -> str:
        """The body's SHA-256 (hex): its id in Apollo's manifest and protocol."""
        return hashlib.sha256(self.body.encode()).hexdigest()


def operations(directory: Path = OPERATIONS_DIR) -> tuple[Operation, ...]:
    """The operations in `directory`, by name; ValueError naming a file that is not exactly one
    named operation called after the file."""
    found = []
    for path in sorted(directory.glob("*.graphql")):
        document = parse(path.read_text(encoding="utf-8"))
        definitions = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(definitions) != 1 or len(document.definitions) != 1:
            raise ValueError(f"{path}: expected exactly one operation and nothing else")
        operation = definitions[0]
        if operation.name is None or operation.name.value != path.stem:
            raise ValueError(f"{path}: the operation must be named {path.stem}")
        found.append(
            Operation(path.stem, operation.operation.value, print_ast(document).strip() + "\n")
        )
    return tuple(found)


def manifest(directory: Path = OPERATIONS_DIR) -> dict[str, Any]:
    """The Apollo persisted-query manifest of the page's operations."""
    return {
        "format": APOLLO_FORMAT,
        "version": 1,
        "operations": [
            {"id": op.id, "name": op.name, "type": op.type, "body": op.body}
            for op in operations(directory)
        ],
    }


def manifest_text(directory: Path = OPERATIONS_DIR) -> str:
    """The manifest as `operations.json` holds it."""
    return json.dumps(manifest(directory), indent=2) + "\n"
