"""Errors a caller can see: each has a stable machine code and a message a practitioner understands.

Anything not listed here is an internal fault and reaches the caller only as INTERNAL_ERROR, with no
message text, stack trace or personal data.
"""

from __future__ import annotations

from enum import StrEnum

from starlette.responses import JSONResponse


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
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
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    OPERATION_NOT_TRUSTED = "OPERATION_NOT_TRUSTED"
    RATE_LIMITED = "RATE_LIMITED"
    LOOKUP_CAP_REACHED = "LOOKUP_CAP_REACHED"
    LIMITS_UNAVAILABLE = "LIMITS_UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class GatewayError(Exception):
    """An expected failure with a code safe to show to the caller."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_response(status: int, code: ErrorCode, message: str) -> JSONResponse:
    """A refusal at the HTTP edge, in the same shape as a GraphQL error, so a portal handles every
    refusal one way."""
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code.value}}]}
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)
