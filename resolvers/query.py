"""The root Query. Resolvers stay thin: validate arguments, call the pipeline, map the result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from gateway.audit_trail import AuditTrail
from gateway.errors import ErrorCode, GatewayError
from gateway.identifiers import InvalidIdentifier, normalise_nhs_number
from gateway.pipeline import LookupPipeline
from gateway.types import Caller, LookupQuery, Purpose
from resolvers.mapping import audit_entry, lookup_to_graphql
from resolvers.types import AuditEntry, ChildLookup


@dataclass(frozen=True)
class RequestContext:
    """Per-request context: the authenticated caller and the pipeline to run.

    `caller` is None only for requests that never execute an operation (serving GraphiQL).
    """

    caller: Caller | None
    pipeline: LookupPipeline
    audit_trail: AuditTrail
    justification_max_chars: int


async def resolve_child(
    info: Info[RequestContext, None],
    nhs_number: Annotated[
        str, strawberry.argument(description="The child's 10-digit NHS number (spaces allowed).")
    ],
    purpose: Annotated[Purpose, strawberry.argument(description="Why you are looking.")],
    justification: Annotated[
        str | None,
        strawberry.argument(description="Free-text reason, recorded in the audit log."),
    ] = None,
) -> ChildLookup:
    context = info.context
    if context.caller is None:
        raise GatewayError(ErrorCode.UNAUTHENTICATED, "Sign in: this request carries no token.")
    nhs = _nhs(nhs_number)
    reason = justification.strip() if justification else None
    if reason is not None and len(reason) > context.justification_max_chars:
        raise GatewayError(
            ErrorCode.INVALID_JUSTIFICATION,
            f"A justification is at most {context.justification_max_chars} characters.",
        )
    query = LookupQuery(nhs_number=nhs, purpose=purpose, justification=reason or None)
    result = await context.pipeline.lookup(context.caller, query)
    return lookup_to_graphql(result)


def _nhs(raw: str) -> str:
    try:
        return normalise_nhs_number(raw)
    except InvalidIdentifier as exc:
        raise GatewayError(ErrorCode.INVALID_NHS_NUMBER, str(exc)) from exc


async def resolve_audit_trail(
    info: Info[RequestContext, None],
    nhs_number: Annotated[str, strawberry.argument(description="The child's NHS number.")],
    since: Annotated[
        datetime | None, strawberry.argument(description="Only accesses from this time on.")
    ] = None,
) -> list[AuditEntry]:
    context = info.context
    if context.caller is None:
        raise GatewayError(ErrorCode.UNAUTHENTICATED, "Sign in: this request carries no token.")
    records = await context.audit_trail.for_child(
        context.caller, _nhs(nhs_number), since, limit=1000
    )
    return [audit_entry(r) for r in records]


@strawberry.type(
    description="Look up one child at a time. There are no list or search-all queries."
)
class Query:
    child: ChildLookup = strawberry.field(
        resolver=resolve_child,
        description=(
            "Who else is working with this child, and how to reach them. Asks every agency that"
            " may hold a record, applies the access policy for your role and purpose, and audits"
            " the lookup. Always check `sources`: an agency that did not answer may hold a record."
        ),
    )
    audit_trail: list[AuditEntry] = strawberry.field(
        resolver=resolve_audit_trail,
        description=(
            "Auditors only: every recorded access to one child (who, when, why, what was"
            " released or withheld), oldest first. Reading it is itself audited."
        ),
    )
