"""Trusted documents: only operations the portals registered in advance are executed.

With a registry configured (gateway.document_registry: an Apollo persisted-query manifest, custom
ids included, or GraphQL Code Generator's persisted-documents.json), a request names its operation
by id or hash (`documentId`, plain or `sha256:<hex>`, or Apollo's
`extensions.persistedQuery.sha256Hash`), or sends query text whose SHA-256 is registered; anything
else is refused before GraphQL parses it. An attacker holding a stolen token can then run only the
lookups the portal itself makes, never a query of their own design. Automatic persisted queries
never register anything here: text with an unregistered hash is refused like any other.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.document_registry import DocumentRegistry, document_id
from gateway.errors import ErrorCode, error_response
from gateway.middleware import replaying
from resolvers.persisted_queries import PersistedRequest, read_body


class TrustedDocuments:
    """ASGI layer in front of the GraphQL view; expects a buffered body (see
    gateway.middleware.BodyLimit)."""

    def __init__(self, app: ASGIApp, registry: DocumentRegistry) -> None:
        self._app = app
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        resolved = self._resolve(await read_body(receive))
        if resolved is None:
            await _refuse(scope, receive, send)
            return
        await self._app(scope, replaying(resolved, receive), send)

    def _resolve(self, body: bytes) -> bytes | None:
        """The request with its registered query text filled in; None when it is not trusted."""
        request = PersistedRequest.parse(body)
        if request is None:
            return None
        if request.key is not None:
            text = self._registry.find(request.key)
        elif request.query is not None:
            text = self._registry.find(document_id(request.query))
        else:
            text = None
        if text is None or (request.query is not None and request.query != text):
            return None
        return request.running(text)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    message = "This operation is not one the gateway trusts; use a registered one."
    await error_response(400, ErrorCode.OPERATION_NOT_TRUSTED, message)(scope, receive, send)
