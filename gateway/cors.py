"""Cross-origin access to /graphql for the portals listed in CHILDLOOKUP_CORS_ORIGINS.

A portal served from another origin calls the gateway from the practitioner's browser, which first
asks (a preflight `OPTIONS`) whether that origin may POST with an `Authorization` header. Only
origins configured exactly are told yes; an origin not listed is never echoed back and gets no
CORS header at all, so the browser keeps the answer from its page. No credentials mode: portals
send a bearer token, never cookies, so `Access-Control-Allow-Credentials` is never sent.

Every answer to a listed origin carries `Access-Control-Allow-Origin`, refusals included (401,
429, a GraphQL error), or the portal could not read why it was refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = "POST"
"""GET is GraphiQL's page, which is same-origin; operations are POSTed."""
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    # What Apollo Client and its persisted-query link may add to a request.
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
EXPOSED_HEADERS = "retry-after"
"""Response headers a page may read beyond the CORS-safelisted ones: when to retry after 429."""


class Cors:
    """Answers preflights itself (no token needed: browsers send none with them) and marks other
    responses for the origins in `origins`."""

    def __init__(self, app: ASGIApp, origins: Iterable[str], *, max_age_s: int) -> None:
        self._app = app
        self._origins = frozenset(origins)
        self._max_age = str(max_age_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        allowed = origin is not None and origin in self._origins
        if scope["method"] == "OPTIONS":
            await self._options(origin if allowed else None, headers)(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                marked = MutableHeaders(scope=message)
                marked.add_vary_header("Origin")
                if allowed and origin is not None:
                    marked["access-control-allow-origin"] = origin
                    marked["access-control-expose-headers"] = EXPOSED_HEADERS
            await send(message)

        await self._app(scope, receive, send_marked)

    def _options(self, origin: str | None, headers: Headers) -> Response:
        """A preflight from a listed origin: 204 with what it may send. From another origin: 403
        with no CORS header. Any other OPTIONS: 204 naming the methods /graphql takes."""
        preflight = "origin" in headers and "access-control-request-method" in headers
        if not preflight:
            return Response(status_code=204, headers={"allow": "GET, POST, OPTIONS"})
        if origin is None:
            return Response(status_code=403, headers={"vary": "Origin"})
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": origin,
                "access-control-allow-methods": ALLOWED_METHODS,
                "access-control-allow-headers": ", ".join(ALLOWED_HEADERS),
                "access-control-max-age": self._max_age,
                "vary": "Origin",
            },
        )
