"""The GraphQL view: strawberry over HTTP, with every refusal in the gateway's coded error shape.

It expects an authenticated request (gateway.middleware.Authentication leaves the verified caller
in the scope) and hands resolvers a `RequestContext` with that caller and the pipeline to run.

Answers follow the GraphQL-over-HTTP specification (gateway.media_types says which media type a
request gets): as `application/graphql-response+json`, a request that was never executed (its
document does not parse or validate, its variables do not coerce) is 400 with no `data` entry; as
`application/json` it is 200 with `"data": null`, as legacy clients expect. Either way, a request
every lookup of which a usage limit refused is 429 with `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSchema
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionResult

from gateway.audit import AccessHistory, AuditTrail
from gateway.errors import ErrorCode, GatewayError, accepted, error_response
from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from resolvers import graphiql
from resolvers.query import RequestContext
from resolvers.schema import build_schema, format_error


class GraphQLView(GraphQL[RequestContext, None]):
    def __init__(
        self,
        *,
        audit_trail: AuditTrail,
        access_history: AccessHistory,
        explorable: bool,
        justification_max_chars: int,
    ) -> None:
        """`explorable` (dev mode) allows introspection and serves GraphiQL."""
        schema = build_schema(explorable=explorable)
        super().__init__(
            schema,
            graphql_ide="graphiql" if explorable else None,
            allow_queries_via_get=False,
        )
        self.graphql_schema: GraphQLSchema = schema._schema
        """The schema as graphql-core holds it: what operations are validated against."""
        self._audit_trail = audit_trail
        self._access_history = access_history
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
            access_history=self._access_history,
            justification_max_chars=self._max_justification,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry refuses a malformed request (unsupported content type, broken JSON) in plain
        text; here the refusal has the usual error shape and a stable code, so a portal handles
        every refusal the same way. A request accepting neither JSON media type is refused 406
        before anything runs (a GET where GraphiQL is off never reaches here: gateway.app routes
        /graphql for POST alone there)."""
        scope = _media_type_lowercased(scope)
        request = Request(scope, receive)
        if request.method == "POST" and negotiate(accepted(request.headers)) is None:
            message = f"Accept {GRAPHQL_RESPONSE_JSON} or {JSON}: the answer is one of them."
            await error_response(406, ErrorCode.BAD_REQUEST, message)(scope, receive, send)
            return
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = error_response(exc.status_code, ErrorCode.BAD_REQUEST, exc.reason)
        await response(scope, receive, send)

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """An `operationName` naming no operation the document holds (or a document holding none)
        is the specification's GetOperation failing: a request error, as an unnamed one of
        several is (resolvers.schema), coded GRAPHQL_VALIDATION_FAILED and answered as any other
        request that never ran. Strawberry raises it as an HTTP 400 before validating."""
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            unknown = exc.__cause__
            if not isinstance(unknown, CannotGetOperationTypeError):
                raise
            message = (
                "Must provide an operation."
                if unknown.operation_name is None
                else unknown.as_http_error_reason()
            )
            return ExecutionResult(data=None, errors=[GraphQLError(message)])

    def decode_json(self, data: str | bytes) -> object:
        """Only a JSON object is a GraphQL request. Strawberry catches only JSONDecodeError, then
        calls `.get` on whatever was decoded: bytes that are not UTF-8, an integer of more digits
        than Python converts (4,300), JSON nested deeper than its recursion limit, or a body of
        `null`, `5` or `"x"`, would otherwise crash it into a 500."""
        try:
            decoded = super().decode_json(data)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            raise HTTPException(400, "Unable to parse request body as JSON") from exc
        if not isinstance(decoded, dict):
            raise HTTPException(400, "The request body must be a JSON object.")
        if not isinstance(decoded.get("operationName"), str | None):
            # Strawberry would echo it back as Python wrote it (`['a']`).
            raise HTTPException(400, "operationName is a string naming an operation, or null.")
        return decoded

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """The response's status and headers, kept in the request's scope where process_result,
        which decides them, finds them."""
        sub_response = await super().get_sub_response(request)
        request.scope.setdefault("state", {})[_SUB_RESPONSE] = sub_response
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        media_type = negotiate(accepted(request.headers)) or JSON
        answer = http_answer(result, media_type)
        sub_response: Response = request.scope["state"][_SUB_RESPONSE]
        sub_response.status_code = answer.status
        sub_response.headers.update(answer.headers)
        sub_response.headers["content-type"] = media_type
        response: GraphQLHTTPResponse = {}
        if answer.with_data:
            response["data"] = result.data
        if result.errors:
            response["errors"] = [format_error(e) for e in result.errors]
        return response

    def encode_json(self, data: object) -> bytes:
        """pydantic-core's encoder: a lookup's answer in a third of json.dumps's time (~5 us
        against ~15), and text outside ASCII as UTF-8 rather than escaped."""
        return pydantic_core.to_json(data)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """The JSON answer in the media type, status and headers process_result chose."""
        return Response(
            self.encode_json(response_data),
            status_code=sub_response.status_code or 200,
            headers=dict(sub_response.headers),
        )


_SUB_RESPONSE = "graphql_sub_response"


def _media_type_lowercased(scope: Scope) -> Scope:
    """`scope` with its Content-Type's media type in lower case, its parameters as sent: media
    types are case-insensitive (RFC 9110), and strawberry compares them exactly, refusing
    `Application/JSON` as unsupported."""
    headers = scope["headers"]
    for i, (name, value) in enumerate(headers):
        if name == b"content-type":
            media_type, semicolon, parameters = value.partition(b";")
            if media_type.islower() or not media_type.strip():
                return scope
            lowered = (name, media_type.lower() + semicolon + parameters)
            return {**scope, "headers": [*headers[:i], lowered, *headers[i + 1 :]]}
    return scope


LIMIT_CODES = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.LOOKUP_CAP_REACHED})
"""Refusals by a usage limit (gateway.limits): a request refused by nothing else is 429."""


@dataclass(frozen=True)
class HttpAnswer:
    """How a GraphQL result is answered over HTTP."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    with_data: bool = True
    """Whether the body has a `data` entry: not for a request error in the specification's own
    media type (nothing was executed, so there is no data, not even null)."""


def http_answer(result: ExecutionResult, media_type: str) -> HttpAnswer:
    """The status, headers and shape of the answer to `result` in `media_type`.

    A request error (the operation never ran: every error is outside any field, and there is no
    data) is 400 in `application/graphql-response+json` and 200 in `application/json`. A result
    with no data whose every error is a usage limit's refusal is 429, with `Retry-After` the
    longest wait any of them names. Anything else - data, or field errors - is 200.
    """
    errors = result.errors or []
    if not errors or result.data is not None:
        return HttpAnswer()
    if all(not error.path for error in errors):
        if media_type == GRAPHQL_RESPONSE_JSON:
            return HttpAnswer(status=400, with_data=False)
        return HttpAnswer()
    refusals = [error.original_error for error in errors]
    if all(isinstance(e, GatewayError) and e.code in LIMIT_CODES for e in refusals):
        waits = [e.retry_after_s for e in refusals if isinstance(e, GatewayError)]
        retry_after = max((w for w in waits if w is not None), default=None)
        headers = {} if retry_after is None else {"retry-after": str(retry_after)}
        return HttpAnswer(status=429, headers=headers)
    return HttpAnswer()
