"""Trusted documents: only operations the portals registered in advance are executed.

With a registry configured, a request names its operation by hash (`documentId`, or Apollo's
`extensions.persistedQuery.sha256Hash`), or sends query text whose SHA-256 is registered; anything
else is refused before GraphQL parses it. An attacker holding a stolen token can then run only the
lookups the portal itself makes, never a query of their own design.

The registry is an Apollo persisted-query manifest: {"operations": [{"id": sha256, "body": text}]}.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ErrorCode, error_response
from gateway.middleware import replaying


def load_registry(path: Path) -> dict[str, str]:
    """Hash -> operation text, checking each hash really is the SHA-256 of its text."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    registry: dict[str, str] = {}
    for operation in manifest.get("operations", []):
        body = operation["body"]
        digest = document_id(body)
        if operation["id"] != digest:
            raise ValueError(f"{path}: operation {operation.get('name')!r} has the wrong id")
        registry[digest] = body
    if not registry:
        raise ValueError(f"{path}: no operations registered")
    return registry


def document_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TrustedDocuments:
    """ASGI layer in front of the GraphQL view; expects a buffered body (see
    gateway.middleware.BodyLimit)."""

    def __init__(self, app: ASGIApp, registry: Mapping[str, str]) -> None:
        self._app = app
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        resolved = self._resolve(bytes(body))
        if resolved is None:
            await _refuse(scope, receive, send)
            return
        await self._app(scope, replaying(resolved, receive), send)

    def _resolve(self, body: bytes) -> bytes | None:
        """The request with its registered query text filled in; None when it is not trusted."""
        try:
            request: Any = json.loads(body)
        except ValueError:
            return None
        if not isinstance(request, dict):
            return None
        extensions = request.get("extensions") or {}
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        wanted = request.get("documentId") or (
            persisted.get("sha256Hash") if isinstance(persisted, dict) else None
        )
        query = request.get("query")
        if wanted is None and isinstance(query, str):
            wanted = document_id(query)
        text = self._registry.get(wanted) if isinstance(wanted, str) else None
        if text is None or (isinstance(query, str) and document_id(query) != wanted):
            return None
        request["query"] = text
        request.pop("documentId", None)
        return json.dumps(request).encode()


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    message = "This operation is not one the gateway trusts; use a registered one."
    await error_response(400, ErrorCode.OPERATION_NOT_TRUSTED, message)(scope, receive, send)
