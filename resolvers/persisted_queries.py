"""Automatic persisted queries (Apollo's APQ protocol), where trusted documents are off.

A client sends an operation's SHA-256 instead of its text, in
`extensions.persistedQuery = {"version": 1, "sha256Hash": hex}` (or as `documentId`, plain or
`sha256:<hex>`):

- hash alone, text known: the stored text runs;
- hash alone, text unknown: `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`, HTTP
  404 as Apollo Server 4 and Apollo Router answer it), and the client sends the text with the
  hash;
- text with hash: the hash must be the text's SHA-256 (else 400 `BAD_REQUEST`, nothing runs); the
  text is stored (gateway.query_store) and runs.

Only an authenticated caller reaches this layer, so only portals' users can fill the store. Only a
text that validates against the schema and holds no string literal and no comment is stored (it
runs either way, or is refused as usual): a child's NHS number or name typed into the query - in
quotes, without them, or in a comment - would otherwise be kept, where variables (never stored)
are the place for them. Switched off
(`CHILDLOOKUP_PERSISTED_QUERIES=false`), a hash alone answers `PERSISTED_QUERY_NOT_SUPPORTED`
(400), so Apollo Client stops sending hashes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from graphql import (
    BREAK,
    GraphQLError,
    GraphQLSchema,
    StringValueNode,
    Visitor,
    parse,
    validate,
    visit,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.document_registry import SHA256_PREFIX, document_id
from gateway.errors import ErrorCode, error_response
from gateway.middleware import replaying
from gateway.query_store import QueryStore
from resolvers.schema import MAX_TOKENS

APQ_VERSION: Final = 1
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_DIGITS: Final = re.compile(r"[0-9]{4}")


@dataclass(frozen=True)
class PersistedRequest:
    """A GraphQL request body as JSON, with what it says about a persisted operation."""

    body: dict[str, Any]
    query: str | None
    """The query text sent, if any."""
    key: str | None
    """The operation's id or hash: `documentId`, else `extensions.persistedQuery.sha256Hash`."""
    version: object = APQ_VERSION
    """`extensions.persistedQuery.version`, when that was sent."""

    @classmethod
    def parse(cls, raw: bytes) -> PersistedRequest | None:
        """None when the body is not a JSON object (the view refuses it)."""
        try:
            body: Any = json.loads(raw)
        except (ValueError, RecursionError):  # nested past the recursion limit: not ours to run
            return None
        if not isinstance(body, dict):
            return None
        extensions = body.get("extensions")
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        persisted = persisted if isinstance(persisted, dict) else {}
        key = body.get("documentId") or persisted.get("sha256Hash")
        query = body.get("query")
        return cls(
            body,
            query if isinstance(query, str) else None,
            key if isinstance(key, str) else None,
            persisted.get("version", APQ_VERSION),
        )

    def running(self, text: str) -> bytes:
        """The request body with `text` as its query, ready for the view."""
        body = {k: v for k, v in self.body.items() if k != "documentId"}
        body["query"] = text
        return json.dumps(body).encode()


async def read_body(receive: Receive) -> bytes:
    """The whole request body (already buffered by gateway.middleware.BodyLimit)."""
    body = bytearray()
    while True:
        message = await receive()
        body.extend(message.get("body", b""))
        if not message.get("more_body", False):
            return bytes(body)


class AutomaticPersistedQueries:
    """ASGI layer in front of the GraphQL view; with `store` None, APQ is switched off."""

    def __init__(self, app: ASGIApp, store: QueryStore | None, schema: GraphQLSchema) -> None:
        self._app = app
        self._store = store
        self._schema = schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        raw = await read_body(receive)
        request = PersistedRequest.parse(raw)
        if request is None or request.key is None:
            await self._app(scope, replaying(raw, receive), send)
            return
        resolved = await self._resolve(request)
        if isinstance(resolved, Response):
            await resolved(scope, receive, send)
            return
        await self._app(scope, replaying(resolved, receive), send)

    async def _resolve(self, request: PersistedRequest) -> bytes | Response:
        """The body to run, or the refusal to answer."""
        assert request.key is not None
        if self._store is None:
            if request.query is None:
                return error_response(
                    400, ErrorCode.PERSISTED_QUERY_NOT_SUPPORTED, "PersistedQueryNotSupported"
                )
            return request.running(request.query)
        if request.version != APQ_VERSION:
            message = f"Only version {APQ_VERSION} of the persisted query protocol is supported."
            return error_response(400, ErrorCode.BAD_REQUEST, message)
        key = request.key.removeprefix(SHA256_PREFIX)
        if not _SHA256_HEX.fullmatch(key):
            message = "A persisted query is named by the SHA-256 of its text, in lowercase hex."
            return error_response(400, ErrorCode.BAD_REQUEST, message)
        if request.query is None:
            text = await self._store.get(key)
            if text is None:
                return error_response(
                    404, ErrorCode.PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound"
                )
            return request.running(text)
        if document_id(request.query) != key:
            message = "The persisted query's hash is not the SHA-256 of the query sent with it."
            return error_response(400, ErrorCode.BAD_REQUEST, message)
        if storable(request.query, self._schema):
            await self._store.put(key, request.query)
        return request.running(request.query)


class _StringLiteral(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_: object) -> object:
        self.found = True
        return BREAK


def storable(text: str, schema: GraphQLSchema) -> bool:
    """GraphQL within the token limit that validates against `schema`, holding no string literal,
    no comment and no run of four digits or more: where an identifier or a name typed into the
    query would be. Validation refuses a value typed without quotes - an NHS number as a number,
    a name as an enum value; with no string literal in it, a `#` can only begin a comment; and
    an operation name or alias is any name a client likes, so one holding digits (an NHS number,
    a UPN, a date of birth) is not kept either. A child's name written as an operation name or
    alias cannot be told from any other name: that is kept, and is what trusted documents
    (gateway.document_registry), which keep only what was registered, are for."""
    if "#" in text or _DIGITS.search(text):
        return False
    try:
        document = parse(text, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return False
    literal = _StringLiteral()
    visit(document, literal)
    return not literal.found and not validate(schema, document)
