"""Errors a caller can see: each has a stable machine code and a message a practitioner understands.

Anything not listed here is an internal fault and reaches the caller only as INTERNAL_ERROR, with no
message text, stack trace or personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from connectors.serving import http_refusals
from gateway.media_types import GRAPHQL_RESPONSE_JSON, negotiate


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    IDENTITY_UNAVAILABLE = "IDENTITY_UNAVAILABLE"
    FORBIDDEN = "FORBIDDEN"
    NOT_THE_OWNER = "NOT_THE_OWNER"
    INVALID_NHS_NUMBER = "INVALID_NHS_NUMBER"
    INVALID_UPN = "INVALID_UPN"
    INVALID_NAME = "INVALID_NAME"
    INVALID_DATE_OF_BIRTH = "INVALID_DATE_OF_BIRTH"
    INVALID_POSTCODE = "INVALID_POSTCODE"
    INVALID_ADDRESS = "INVALID_ADDRESS"
    IDENTIFY_ONE_WAY = "IDENTIFY_ONE_WAY"
    INSUFFICIENT_DETAILS = "INSUFFICIENT_DETAILS"
    INVALID_JUSTIFICATION = "INVALID_JUSTIFICATION"
    POLICY_UNAVAILABLE = "POLICY_UNAVAILABLE"
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    BAD_REQUEST = "BAD_REQUEST"
    PATH_NOT_FOUND = "PATH_NOT_FOUND"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    OPERATION_NOT_TRUSTED = "OPERATION_NOT_TRUSTED"
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
    RATE_LIMITED = "RATE_LIMITED"
    LOOKUP_CAP_REACHED = "LOOKUP_CAP_REACHED"
    LIMITS_UNAVAILABLE = "LIMITS_UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class GatewayError(Exception):
    """An expected failure with a code safe to show to the caller; `retry_after_s` when the same
    request will not be refused again after that many seconds (a limit's window)."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class ErrorResponse(JSONResponse):
    """A refusal at the HTTP edge, in the same shape as a GraphQL error, so a portal handles every
    refusal one way; served in the media type the request's `Accept` negotiates
    (gateway.media_types). As `application/graphql-response+json` a 4xx or 5xx refusal has no
    `data` entry (nothing was executed); as `application/json`, `"data": null` as it always had."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._errors = [{"message": message, "extensions": {"code": code.value}}]
        self._given_headers = dict(headers or {})
        if status == 401:
            self._given_headers["www-authenticate"] = "Bearer"
        super().__init__({"data": None, "errors": self._errors}, status, self._given_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if negotiate(accepted(Headers(scope=scope))) == GRAPHQL_RESPONSE_JSON:
            self.media_type = GRAPHQL_RESPONSE_JSON
            if self.status_code >= 400:
                self.body = self.render({"errors": self._errors})
            self.init_headers(self._given_headers)
        await super().__call__(scope, receive, send)


def accepted(headers: Headers) -> str | None:
    """The request's `Accept`, every line of it: a field sent as several lines is one
    comma-separated list (RFC 9110, 5.3), so `Accept: text/html` then `Accept:
    application/graphql-response+json` accepts the latter. None when there is none."""
    lines = headers.getlist("accept")
    return ",".join(lines) if lines else None


def error_response(
    status: int, code: ErrorCode, message: str, *, headers: Mapping[str, str] | None = None
) -> ErrorResponse:
    """A refusal at the HTTP edge with this status, code and message (see ErrorResponse)."""
    return ErrorResponse(status, code, message, headers)


HTTP_REFUSALS: Final = http_refusals(
    lambda status, message, headers: error_response(
        status,
        ErrorCode.PATH_NOT_FOUND if status == 404 else ErrorCode.BAD_REQUEST,
        message,
        headers=headers,
    )
)
"""Starlette's own refusals (no route for the path, a method the route does not serve) in the
coded error shape, for every Starlette app the gateway serves (`exception_handlers`)."""
