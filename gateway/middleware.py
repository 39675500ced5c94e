"""HTTP middleware in front of the GraphQL view: caching rules, size limits, well-formed text and
authentication at the edge.

Size and authentication run before GraphQL sees the request: an oversized body, or one holding
text that is not Unicode, is refused before it is parsed, and a request without a verified token
gets 401 (503 when the token could not be checked because the identity provider's keys were out
of reach) and never reaches a resolver. Every response, refusals included, is marked for no cache
to keep.
"""

from __future__ import annotations

import json
import re
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import TokenVerifier
from gateway.errors import ErrorCode, GatewayError, error_response


class NoStore:
    """Mark every response `Cache-Control: no-store` (and `Pragma: no-cache` for HTTP/1.0 caches):
    a child's details must not be kept by the browser, a proxy or a CDN, and a refusal may repeat
    what was asked about a child, so it is marked the same way."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_not_stored(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["cache-control"] = "no-store"
                headers["pragma"] = "no-cache"
            await send(message)

        await self._app(scope, receive, send_not_stored)


class Authentication:
    """Verifies the bearer token of every POST before GraphQL runs; a bare GET only serves
    GraphiQL (in dev mode), and a GET carrying an operation is refused rather than executed.
    The verified caller is left in the request scope's state for the view."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self._app = app
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope.get("query_string"):
            # Never over GET: a lookup's purpose and the child's identifiers would sit in the URL,
            # and so in browser history, proxy and server logs.
            message = "Send GraphQL operations with POST."
            refusal = error_response(405, ErrorCode.BAD_REQUEST, message, headers={"allow": "POST"})
            await refusal(scope, receive, send)
            return
        if scope["method"] != "GET":
            request = Request(scope, receive)
            try:
                caller = await self._verifier.authenticate(request.headers.get("authorization"))
            except GatewayError as exc:
                status = 503 if exc.code is ErrorCode.IDENTITY_UNAVAILABLE else 401
                await error_response(status, exc.code, exc.message)(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        await self._app(scope, receive, send)


class BodyLimit:
    """Read the whole request body before anything parses it: refuse one over a limit with 413,
    and one holding a lone surrogate with 400 (`holds_lone_surrogate`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self._max:
                await self._too_large(scope, receive, send)
                return
        if holds_lone_surrogate(body):
            await error_response(400, ErrorCode.BAD_REQUEST, _NOT_UNICODE)(scope, receive, send)
            return
        await self._app(scope, replaying(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request is larger than {self._max} bytes."
        await error_response(413, ErrorCode.REQUEST_TOO_LARGE, message)(scope, receive, send)


_NOT_UNICODE: Final = (
    "The request holds text that is not valid Unicode: a \\uD800-\\uDFFF escape that is not"
    " half of a surrogate pair."
)
_MAYBE_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")
"""A surrogate escaped, or encoded as UTF-8 bytes (which Python's JSON decoder lets through), or
a NUL byte, as UTF-16 and UTF-32 bodies (which it also reads) hold."""


def holds_lone_surrogate(body: bytes | bytearray) -> bool:
    """Whether a JSON body decodes to text holding a lone surrogate (`"\\ud800"`): JSON allows
    the escape, and Python decodes it (and surrogates encoded as bytes), but it is no character,
    and text holding one cannot be written as UTF-8 - not to an audit record, a notification, a
    log line or an answer. Such text reaching the audit log would break every later reading of
    it, or stop a lookup's record being written after its agencies were asked. A body is decoded
    to find out only when it could hold one (`_MAYBE_SURROGATE`): a pair of escapes (an emoji) is
    one character, and fine; a body that is not JSON is left to the application to refuse."""
    if _MAYBE_SURROGATE.search(body) is None:
        return False
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return False
    try:
        json.dumps(decoded, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app `body` (already read in full) as the whole request, then
    whatever the client sends next (a disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
