"""The GraphQL schema, its SDL export, and how errors are shown to callers.

`schema.graphql` at the repository root is the published contract; `export_sdl()` regenerates it
and a test fails when the two drift.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.errors import ErrorCode, GatewayError
from resolvers.error_messages import safe_message
from resolvers.query import Query
from resolvers.types import SCALARS

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"
MAX_TOKENS = 2_000
"""The most tokens an operation may have (also the longest text kept as a persisted query)."""

_log = logging.getLogger("childlookup.graphql")


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log unexpected faults by type only: messages may carry personal data. A GraphQLError
        underneath (a variable that does not coerce) is the caller's mistake, as in format_error."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, GatewayError | GraphQLError):
                _log.error(
                    "unexpected error in resolver",
                    extra={"error_type": type(original).__name__, "path": error.path},
                )


def build_schema(*, explorable: bool = True) -> strawberry.Schema:
    """The schema; `explorable=False` (production) refuses introspection and stops error messages
    suggesting field names, so the API cannot be mapped from outside by probing it."""
    # The limiters build their validation rules when constructed; sharing one instance of each
    # keeps those rules identical across requests, which is what lets ValidationCache hit.
    limiters: list[SchemaExtension] = [
        QueryDepthLimiter(max_depth=8),
        MaxAliasesLimiter(max_alias_count=15),
        MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ]
    if not explorable:
        limiters.append(DisableIntrospection())
    return _Schema(
        query=Query,
        config=StrawberryConfig(disable_field_suggestions=not explorable),
        scalar_overrides=SCALARS,
        extensions=[
            # Portals send the same few operations over and over: parse and validate each once.
            partial(ParserCache, maxsize=256),
            *(partial(_shared, limiter) for limiter in limiters),
            partial(ValidationCache, maxsize=256),
        ],
    )


def _shared(extension: SchemaExtension) -> SchemaExtension:
    return extension


def export_sdl() -> str:
    return build_schema().as_str() + "\n"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """A caller sees a stable code and a safe message; never a stack trace, internal text, or the
    input values graphql-core writes into its messages (resolvers.error_messages)."""
    original = error.original_error
    if isinstance(original, GatewayError):
        code, message = original.code, original.message
    elif original is None or isinstance(original, GraphQLError):
        code = (
            ErrorCode.GRAPHQL_PARSE_FAILED
            if error.message.startswith("Syntax Error")
            else ErrorCode.GRAPHQL_VALIDATION_FAILED
        )
        if error.message.startswith("Variable "):
            code = ErrorCode.BAD_USER_INPUT
        message = safe_message(error.message)
    else:
        code, message = ErrorCode.INTERNAL_ERROR, "Internal error: the lookup could not be done."
    formatted: dict[str, Any] = {"message": message, "extensions": {"code": code.value}}
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path:
        formatted["path"] = error.path
    return formatted
