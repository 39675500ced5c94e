"""The connector protocol as an OpenAPI 3.1 document, generated from the code that enforces it.

Agencies that do not use this SDK build their connector from `docs/connector-openapi.json`; it is
generated from the pydantic models and the app's error table so that it cannot describe a protocol
the SDK does not speak. Regenerate it with:

    python -m connectors.openapi > docs/connector-openapi.json
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from connectors.app import ERROR_STATUS, MAX_BODY_BYTES, PAYLOAD_TOO_LARGE, RECENT_LIMIT
from connectors.notifications import (
    NOTIFICATIONS_PATH,
    RECENT_NOTIFICATIONS_PATH,
    Notification,
    NotificationReceipt,
)
from connectors.protocol import (
    LOOKUP_PATH,
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorResponse,
    LookupRequest,
    LookupResponse,
)
from connectors.witness import (
    MAX_BATCH,
    MAX_REQUEST_BYTES,
    WITNESS_PATH,
    WitnessListing,
    WitnessReceipt,
    WitnessRequest,
)

_SCHEMAS = "#/components/schemas/{model}"

_MEANING: Final[Mapping[ErrorCode, str]] = MappingProxyType(
    {
        ErrorCode.BAD_REQUEST: "the request is not valid protocol v1",
        ErrorCode.UNAUTHENTICATED: "the request is not validly signed by the gateway",
        ErrorCode.UNSUPPORTED_VERSION: "the request is in a protocol version the connector lacks",
        ErrorCode.FORBIDDEN: "the agency refuses this caller or purpose",
        ErrorCode.DEADLINE_EXCEEDED: "the deadline passed before an answer was ready",
        ErrorCode.UNAVAILABLE: "the agency's records cannot be reached for now",
        ErrorCode.INTERNAL: "the connector failed unexpectedly",
    }
)

NOTIFICATION_ERRORS: Final = (
    ErrorCode.BAD_REQUEST,
    ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.UNAUTHENTICATED,
    ErrorCode.UNAVAILABLE,
)
"""What the notification receiver can refuse with; UNAVAILABLE asks the gateway to retry.
The witness's receiver refuses with the same."""


def openapi_document() -> dict[str, Any]:
    """The whole document; key order is stable so the committed JSON diffs cleanly."""
    refs, schemas = models_json_schema(
        [
            (LookupRequest, "validation"),
            (LookupResponse, "serialization"),
            (ErrorResponse, "serialization"),
            (Notification, "validation"),
            (NotificationReceipt, "serialization"),
            (WitnessRequest, "validation"),
            (WitnessReceipt, "serialization"),
            (WitnessListing, "serialization"),
        ],
        ref_template=_SCHEMAS,
    )
    request_ref = refs[(LookupRequest, "validation")]
    response_ref = refs[(LookupResponse, "serialization")]
    error_ref = refs[(ErrorResponse, "serialization")]
    notification_ref = refs[(Notification, "validation")]
    receipt_ref = refs[(NotificationReceipt, "serialization")]
    witness_paths = _witness_paths(
        refs[(WitnessRequest, "validation")],
        refs[(WitnessReceipt, "serialization")],
        refs[(WitnessListing, "serialization")],
        error_ref,
    )
    health_schema = {
        "type": "object",
        "properties": {"status": {"const": "ok"}, "source": {"type": "string"}},
        "required": ["status", "source"],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "childlookup agency connector",
            "version": PROTOCOL_VERSION,
            "description": (
                "What the childlookup gateway asks an agency connector, and what it accepts back. "
                "See docs/connector-protocol.md for minimisation rules and deadline semantics."
            ),
        },
        "paths": {
            LOOKUP_PATH: {
                "post": {
                    "operationId": "lookup",
                    "summary": "Records about one child that match any of the given identifiers.",
                    "requestBody": _request_body(request_ref, MAX_BODY_BYTES),
                    "responses": {
                        "200": {
                            "description": "Matching records, minimised to the requested fields; "
                            "an empty list when there is no record.",
                            "content": {"application/json": {"schema": response_ref}},
                        },
                        **_error_responses(error_ref),
                    },
                }
            },
            NOTIFICATIONS_PATH: {
                "post": {
                    "operationId": "notify",
                    "summary": "The gateway telling the agency that one of its records was looked "
                    "at (owner notification). Signed like a lookup; delivered at least once.",
                    "requestBody": _request_body(notification_ref, MAX_BODY_BYTES),
                    "responses": {
                        "200": {
                            "description": "Kept, or already kept under this message id "
                            "(`duplicate`); either way the gateway stops sending it.",
                            "content": {"application/json": {"schema": receipt_ref}},
                        },
                        **_error_responses(error_ref, NOTIFICATION_ERRORS),
                    },
                }
            },
            RECENT_NOTIFICATIONS_PATH: {
                "get": {
                    "operationId": "recentNotifications",
                    "summary": f"The newest {RECENT_LIMIT} notifications kept, newest first: the "
                    "agency's view of recent accesses. Served to the connector's own host only.",
                    "responses": {
                        "200": {
                            "description": "Recent notifications.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "notifications": {
                                                "type": "array",
                                                "items": notification_ref,
                                            }
                                        },
                                        "required": ["notifications"],
                                    }
                                }
                            },
                        },
                        **_error_responses(error_ref, (ErrorCode.FORBIDDEN,), body_limit=None),
                    },
                }
            },
            WITNESS_PATH: witness_paths,
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness, and which source this connector is.",
                    "responses": {
                        "200": {
                            "description": "The connector is serving.",
                            "content": {"application/json": {"schema": health_schema}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }


def _witness_paths(
    request_ref: dict[str, Any],
    receipt_ref: dict[str, Any],
    listing_ref: dict[str, Any],
    error_ref: dict[str, Any],
) -> dict[str, Any]:
    """The witness routes: on a connector started with a witness store, and on a standalone
    witness (`connector witness`), which serves only these, /healthz and its JWKS."""
    return {
        "post": {
            "operationId": "witness",
            "summary": "The gateway's signed audit checkpoints for the witness to keep, oldest "
            "first. Signed like a lookup (audience: the connector's source name, or the "
            "standalone witness's name).",
            "requestBody": _request_body(request_ref, MAX_REQUEST_BYTES),
            "responses": {
                "200": {
                    "description": "How many of the checkpoints the witness now holds, the latest "
                    "it holds, and why it stopped early, if it did (`problem`).",
                    "content": {"application/json": {"schema": receipt_ref}},
                },
                **_error_responses(error_ref, NOTIFICATION_ERRORS, body_limit=MAX_REQUEST_BYTES),
            },
        },
        "get": {
            "operationId": "witnessed",
            "summary": f"The checkpoints the witness holds for a log after a sequence number, "
            f"oldest first, at most {MAX_BATCH}, and every conflict it recorded. Not "
            "authenticated: it holds no personal data.",
            "parameters": [
                {
                    "name": "log",
                    "in": "query",
                    "required": True,
                    "description": "The gateway's id.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "List checkpoints after this sequence number (default: from "
                    "the first).",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "Held checkpoints; an unknown log has none.",
                    "content": {"application/json": {"schema": listing_ref}},
                },
                **_error_responses(
                    error_ref, (ErrorCode.BAD_REQUEST, ErrorCode.UNAVAILABLE), body_limit=None
                ),
            },
        },
    }


def _request_body(schema_ref: dict[str, Any], limit: int) -> dict[str, Any]:
    return {
        "required": True,
        "description": f"At most {limit} bytes.",
        "content": {"application/json": {"schema": schema_ref}},
    }


def _error_responses(
    error_ref: dict[str, Any],
    codes: Collection[ErrorCode] = tuple(ERROR_STATUS),
    *,
    body_limit: int | None = MAX_BODY_BYTES,
) -> dict[str, Any]:
    """One response per HTTP status, naming the error codes it can carry and what each means."""
    meanings: defaultdict[int, list[str]] = defaultdict(list)
    for code in codes:
        meanings[ERROR_STATUS[code]].append(f"{code.value}: {_MEANING[code]}")
    if body_limit is not None:
        meanings[PAYLOAD_TOO_LARGE].append(
            f"{ErrorCode.BAD_REQUEST.value}: the body is larger than {body_limit} bytes"
        )
    return {
        str(status): {
            "description": "; ".join(meanings[status]) + ".",
            "content": {"application/json": {"schema": error_ref}},
        }
        for status in sorted(meanings)
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))
