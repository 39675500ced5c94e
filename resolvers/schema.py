"""The GraphQL schema, its SDL export, and how errors are shown to callers.

`schema.graphql` at the repository root is the published contract; `export_sdl()` regenerates it
and a test fails when the two drift.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Final

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from connectors.logs import log_event
from gateway.errors import ErrorCode, GatewayError
from resolvers.arguments import plan_root_resolvers
from resolvers.error_messages import safe_message
from resolvers.executor import PlannedExecutor
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
        """Log unexpected faults by type and where they were raised, never their message, which
        may carry personal data. A GraphQLError underneath (a variable that does not coerce) is
        the caller's mistake, as in format_error."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, GatewayError | GraphQLError):
                log_event(
                    _log,
                    logging.ERROR,
                    "resolver_error",
                    error_type=type(original).__name__,
                    raised_at=_raised_at(original),
                    path=".".join(map(str, error.path or ())),
                )


def _raised_at(error: BaseException) -> str:
    """Where `error` was raised: the file, line and function of its innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"


_Rules = tuple[type[ASTValidationRule], ...]


class _Prepared:
    """One operation text parsed, and what validating it under `rules` found (`errors` None: not
    validated yet)."""

    __slots__ = ("document", "errors", "operations", "rules")

    def __init__(self, document: DocumentNode) -> None:
        self.document = document
        self.rules: _Rules = ()
        self.errors: list[GraphQLError] | None = None
        self.operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)


def _prepare(query: str) -> _Prepared:
    """At most MAX_TOKENS tokens: a longer operation is refused before it is parsed any further."""
    return _Prepared(parse(query, max_tokens=MAX_TOKENS))


class _PreparedOperations(SchemaExtension):
    """Parse and validate each operation text once: portals send the same few operations over and
    over. One extension doing what strawberry's ParserCache, MaxTokensLimiter, the limiters'
    AddValidationRules and ValidationCache did, because each extension costs every request a
    round of hook lookups, and ValidationCache keyed its cache on the parsed document, hashing
    the whole syntax tree on every request; here the key is the text, and the document parsed
    from it carries its own validation result."""

    def __init__(
        self, prepared: Callable[[str], _Prepared], rules: _Rules, *, hide_suggestions: bool
    ) -> None:
        """`prepared` is the schema's cache of operations; `rules` are the limiters' rules;
        `hide_suggestions` keeps "Did you mean ...?" out of every validation message."""
        self._prepared = prepared
        self._rules = rules
        self._hide_suggestions = hide_suggestions
        self._operation: _Prepared | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None  # strawberry refuses a request with neither before
        self._operation = self._prepared(context.query)
        context.graphql_document = self._operation.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        operation = self._operation
        assert operation is not None
        rules = context.validation_rules + self._rules
        if operation.errors is None or operation.rules != rules:
            operation.errors = _validated(
                context.schema._schema, operation.document, rules, self._hide_suggestions
            )
            operation.rules = rules
        context.validation_rules = rules
        context.pre_execution_errors = operation.errors
        if not operation.errors and operation.operations > 1 and not _named(context):
            # The specification's GetOperation: which of several operations is meant must be
            # said. Strawberry would run the first - a lookup, audited, that nobody named.
            context.pre_execution_errors = [GraphQLError(_UNNAMED)]
        yield


_UNNAMED: Final = "Must provide operation name if query contains multiple operations."


def _named(context: ExecutionContext) -> bool:
    """Whether the request said which operation to run (`operationName`): strawberry's
    `operation_name` falls back to the document's first, so the name as sent is read."""
    return context._provided_operation_name is not None


_INVALID: Final = "childlookup.invalid_document"
"""Marks an error validation found (`_validated`); never shown (format_error builds its own)."""


def _validated(
    schema: GraphQLSchema, document: DocumentNode, rules: _Rules, hide_suggestions: bool
) -> list[GraphQLError]:
    """The document's validation errors: by the specification's rules first, and only if it
    passes them by the rest. Strawberry's rules (the depth limit, and @oneOf and `Maybe`, which
    its `validate_document` always adds) assume a document the specification's rules accept,
    and raise on one that names an unknown fragment or an undeclared variable - an internal
    error where the caller's mistake deserves its message."""
    specified = tuple(rule for rule in rules if rule in specified_rules)
    # Not strawberry's validate_document, which adds its own rules and would suggest field and
    # argument names whatever StrawberryConfig says (it strips them only from unknown fields).
    errors = validate(schema, document, specified, hide_suggestions=hide_suggestions)
    if not errors:
        errors = validate_document(schema, document, tuple(r for r in rules if r not in specified))
    for error in errors:
        # A document's fault whatever its words: "Variable '$n' is not defined" is no bad input.
        error.extensions = {**(error.extensions or {}), _INVALID: True}
    return errors


def build_schema(*, explorable: bool = True) -> strawberry.Schema:
    """The schema; `explorable=False` (production) refuses introspection and stops error messages
    suggesting field names, so the API cannot be mapped from outside by probing it."""
    limiters: list[AddValidationRules] = [
        QueryDepthLimiter(max_depth=8),
        MaxAliasesLimiter(max_alias_count=15),
    ]
    if not explorable:
        limiters.append(DisableIntrospection())
    # The limiters build their rules when constructed: built once, the rules are the same
    # classes on every request, so an operation validated once stays validated.
    rules = tuple(rule for limiter in limiters for rule in limiter.validation_rules)
    # Validation results belong to this schema, so its cache of operations is its own.
    prepared = lru_cache(maxsize=256)(_prepare)
    schema = _Schema(
        query=Query,
        config=StrawberryConfig(disable_field_suggestions=not explorable),
        scalar_overrides=SCALARS,
        extensions=[partial(_PreparedOperations, prepared, rules, hide_suggestions=not explorable)],
        execution_context_class=PlannedExecutor,
    )
    plan_root_resolvers(schema)
    return schema


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
        if error.message.startswith("Variable ") and not (error.extensions or {}).get(_INVALID):
            code = ErrorCode.BAD_USER_INPUT  # a value sent for a variable (its coercion)
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
