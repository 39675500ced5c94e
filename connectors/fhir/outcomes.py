"""FHIR `OperationOutcome`s: reading the ones PDS and CP-IS answer with, and writing them.

The connector's one rule here: a failure must never look like "no record". Only the two outcomes
that mean the record is not there (RESOURCE_NOT_FOUND, and INVALIDATED_RESOURCE for a redacted
record) are read as absence, and only on a read; every other outcome, status or transport problem
becomes a `ConnectorError` with the code the gateway turns into the source status a practitioner
sees. Messages name the service and the kind of problem, never what was searched for.
"""

from __future__ import annotations

from typing import Any, Final

from fhir.resources.R4B.operationoutcome import OperationOutcome
from pydantic import ValidationError

from connectors.backend import ConnectorError
from connectors.fhir.terminology import SPINE_ERROR_SYSTEM, SpineError
from connectors.protocol import ErrorCode

NOT_FOUND_CODES: Final = frozenset({SpineError.RESOURCE_NOT_FOUND, SpineError.INVALIDATED_RESOURCE})
"""Outcomes that mean "no such record" on a read (a redacted record is answered as not found)."""

_ISSUE_TYPE: Final = {
    SpineError.TOO_MANY_MATCHES: "multiple-matches",
    SpineError.INVALID_SEARCH_DATA: "value",
    SpineError.INVALID_VALUE: "value",
    SpineError.INVALID_RESOURCE_ID: "value",
    SpineError.ADDITIONAL_PROPERTIES: "structure",
    SpineError.ACCESS_DENIED: "forbidden",
    SpineError.RESOURCE_NOT_FOUND: "not-found",
    SpineError.INVALIDATED_RESOURCE: "not-found",
    SpineError.TOO_MANY_REQUESTS: "throttled",
    SpineError.UNABLE_TO_CALL_SERVICE: "timeout",
    SpineError.SERVICE_UNAVAILABLE: "transient",
}


def outcome_code(body: Any) -> str | None:
    """The Spine error code of an `OperationOutcome` body (its first coded issue), or None when
    the body is no outcome or carries no Spine code."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    try:
        outcome = OperationOutcome.model_validate(body)
    except ValidationError:
        return None
    for issue in outcome.issue or []:
        details = issue.details
        for coding in (details.coding or []) if details is not None else []:
            if coding.code and _spine_system(coding.system):
                return str(coding.code)
    return None


def _spine_system(system: str | None) -> bool:
    """PDS has published the code system under both fhir.nhs.uk and fhir.hl7.org.uk."""
    return system is None or system.endswith("/Spine-ErrorOrWarningCode")


class TooManyMatches(ConnectorError):
    """More patients match a search than it asked for at most: PDS returns none of them."""

    def __init__(self, service: str) -> None:
        super().__init__(
            ErrorCode.BAD_REQUEST,
            f"Too many {service} records match these details; give more of them to narrow it.",
        )


def refusal(service: str, status: int, code: str | None) -> ConnectorError:
    """The `ConnectorError` for an HTTP `status` and Spine `code` from `service` ("PDS", "CP-IS").

    TOO_MANY_MATCHES and INVALID_SEARCH_DATA are BAD_REQUEST: the details given cannot be searched
    as they are, and the practitioner can change them. ACCESS_DENIED with 403 is FORBIDDEN (the
    service refuses this connector the operation: withheld); with 401 it is the connector's own
    credential that failed, which the practitioner cannot fix: UNAVAILABLE, like a rate limit, a
    timeout or a server error. Anything else unexpected is INTERNAL.
    """
    if code == SpineError.TOO_MANY_MATCHES:
        return TooManyMatches(service)
    if code == SpineError.INVALID_SEARCH_DATA:
        return ConnectorError(
            ErrorCode.BAD_REQUEST, f"{service} cannot search with these details; give more of them."
        )
    if status == 403:
        return ConnectorError(ErrorCode.FORBIDDEN, f"{service} refused this connector access.")
    if status == 401:
        return ConnectorError(
            ErrorCode.UNAVAILABLE, f"{service} did not accept the connector's credentials."
        )
    if status in (408, 429) or status >= 500:
        return ConnectorError(ErrorCode.UNAVAILABLE, f"{service} is unavailable (HTTP {status}).")
    return ConnectorError(
        ErrorCode.INTERNAL,
        f"{service} refused the connector's request (HTTP {status}, {code or 'no error code'}).",
    )


def operation_outcome(code: SpineError, diagnostics: str) -> dict[str, Any]:
    """An `OperationOutcome` as PDS writes one: an error issue with a Spine error code."""
    outcome = OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": _ISSUE_TYPE[code],
                    "details": {
                        "coding": [{"system": SPINE_ERROR_SYSTEM, "version": "1", "code": code}]
                    },
                    "diagnostics": diagnostics,
                }
            ],
        }
    )
    return outcome.model_dump(mode="json", exclude_none=True)
