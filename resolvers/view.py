"""The GraphQL view: strawberry over HTTP, with every refusal in the gateway's coded error shape.

It expects an authenticated request (gateway.middleware.Authentication leaves the verified caller
in the scope) and hands resolvers a `RequestContext` with that caller and the pipeline to run.
"""

from __future__ import annotations

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from gateway.audit import AuditTrail
from gateway.errors import ErrorCode, error_response
from resolvers import graphiql
from resolvers.query import RequestContext
from resolvers.schema import build_schema, format_error


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(
        self, *, audit_trail: AuditTrail, explorable: bool, justification_max_chars: int
    ) -> None:
        """`explorable` (dev mode) allows introspection and serves GraphiQL."""
        super().__init__(
            build_schema(explorable=explorable),
            graphql_ide="graphiql" if explorable else None,
            allow_queries_via_get=False,
        )
        self._audit_trail = audit_trail
        self._max_justification = justification_max_chars

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL with its scripts and styles from the gateway, not a CDN (resolvers.graphiql)."""
        return graphiql.page()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        return RequestContext(
            caller=request.scope.get("state", {}).get("caller"),
            pipeline=request.app.state.pipeline,
            audit_trail=self._audit_trail,
            justification_max_chars=self._max_justification,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry refuses a malformed request (unsupported content type, broken JSON, unknown
        operation name) in plain text; here the refusal has the usual error shape and a stable
        code, so a portal handles every refusal the same way."""
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as exc:
            response = error_response(exc.status_code, ErrorCode.BAD_REQUEST, exc.reason)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Only a JSON object is a GraphQL request. Strawberry catches only JSONDecodeError, then
        calls `.get` on whatever was decoded: bytes that are not UTF-8, or a body of `null`, `5`
        or `"x"`, would otherwise crash it into a 500."""
        try:
            decoded = super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "Unable to parse request body as JSON") from exc
        if not isinstance(decoded, dict):
            raise HTTPException(400, "The request body must be a JSON object.")
        return decoded

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [format_error(e) for e in result.errors]
        return response
