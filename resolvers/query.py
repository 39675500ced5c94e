"""The root Query. Resolvers stay thin: validate arguments, call the pipeline, map the result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from connectors.backend import today_in_england
from gateway.audit import DEFAULT_LIMIT, LIMIT_ALERTS, MAX_LIMIT, AccessHistory, AuditTrail
from gateway.errors import ErrorCode, GatewayError
from gateway.identifiers import (
    ChildKind,
    InvalidIdentifier,
    address_lines,
    carer_names,
    check_could_link,
    check_one_way,
    holds_child_identifier,
    named_child,
    normalise_nhs_number,
    normalise_upn,
)
from gateway.identifiers import demographics as validate_demographics
from gateway.justification import Justification
from gateway.linkage import LinkageModel
from gateway.pipeline import LookupPipeline
from gateway.types import Caller, Corroboration, LookupQuery, Purpose
from resolvers.mapping import (
    audit_entry,
    limit_alert,
    lookup_to_graphql,
    override_alert,
    owner_history,
    undelivered_notification,
)
from resolvers.types import (
    DEMOGRAPHICS_DESCRIPTION,
    NHS_NUMBER_DESCRIPTION,
    UPN_DESCRIPTION,
    AuditEntry,
    ChildIdentity,
    ChildLookup,
    DemographicsInput,
    LimitAlert,
    OverrideAlert,
    UndeliveredNotification,
)
from resolvers.types import AccessHistory as AccessHistoryType

_USE_IDENTIFY = "Use identify, which takes exactly one of nhsNumber, upn or demographics."


@dataclass(frozen=True)
class RequestContext:
    """Per-request context: the authenticated caller and the pipeline to run.

    `caller` is None only for requests that never execute an operation (serving GraphiQL).
    """

    caller: Caller | None
    pipeline: LookupPipeline
    audit_trail: AuditTrail
    access_history: AccessHistory
    justification_max_chars: int

    def signed_in(self) -> Caller:
        """The caller, for an operation that needs one (every operation does)."""
        if self.caller is None:
            raise GatewayError(ErrorCode.UNAUTHENTICATED, "Sign in: this request carries no token.")
        return self.caller


async def resolve_child(
    info: Info[RequestContext, None],
    purpose: Annotated[Purpose, strawberry.argument(description="Why you are looking.")],
    identify: Annotated[
        ChildIdentity | None,
        strawberry.argument(
            description=(
                "Who the child is: exactly one of an NHS number, a UPN or demographics. Required"
                " unless the deprecated nhsNumber, upn or demographics arguments are used, which"
                " cannot be combined with it."
            )
        ),
    ] = None,
    nhs_number: Annotated[
        str | None,
        strawberry.argument(description=NHS_NUMBER_DESCRIPTION, deprecation_reason=_USE_IDENTIFY),
    ] = None,
    upn: Annotated[
        str | None,
        strawberry.argument(description=UPN_DESCRIPTION, deprecation_reason=_USE_IDENTIFY),
    ] = None,
    demographics: Annotated[
        DemographicsInput | None,
        strawberry.argument(description=DEMOGRAPHICS_DESCRIPTION, deprecation_reason=_USE_IDENTIFY),
    ] = None,
    justification: Annotated[
        str | None,
        strawberry.argument(
            description="Free-text reason, recorded in the audit log; it may not hold an NHS number"
            " or UPN."
        ),
    ] = None,
) -> ChildLookup:
    context = info.context
    caller = context.signed_in()
    # Recorded and judged as it reads: invisible characters removed, spaces collapsed.
    reason = Justification.of(justification or "").text
    refused = _refused_justification(reason, context.justification_max_chars)
    if refused is not None and purpose is not Purpose.EMERGENCY_OVERRIDE:
        raise refused
    if identify is not None:
        if any(given is not None for given in (nhs_number, upn, demographics)):
            raise GatewayError(
                ErrorCode.IDENTIFY_ONE_WAY,
                "Identify the child with `identify` alone, not also with nhsNumber, upn or"
                " demographics.",
            )
        nhs_number, upn, demographics = identify.nhs_number, identify.upn, identify.demographics
    query = _validated(
        purpose,
        reason or None,
        nhs_number=nhs_number,
        upn=upn,
        given=demographics,
        model=context.pipeline.linkage,
    )
    if refused is not None:
        # A break-glass attempt, refused as one the policy refuses is: audited (without the
        # text) and alerted, once the child it was for is known.
        await context.pipeline.refuse(caller, query, refused.code.value)
        raise refused
    result = await context.pipeline.lookup(caller, query)
    return lookup_to_graphql(result)


def _refused_justification(reason: str, max_chars: int) -> GatewayError | None:
    """Why `reason` (normalised) cannot be kept, as the caller is to be told; None if it can."""
    if len(reason) > max_chars:
        return GatewayError(
            ErrorCode.INVALID_JUSTIFICATION, f"A justification is at most {max_chars} characters."
        )
    if holds_child_identifier(reason):
        # Kept in the audit log, sent to agencies in owner notifications and shown in the alerts
        # feed, none of which may name a child by an identifier.
        return GatewayError(
            ErrorCode.INVALID_JUSTIFICATION,
            "A justification may not hold an NHS number or UPN: it is kept and shared where no"
            " child may be named by one. Give the reason without it (a phone number or reference"
            " that reads as one: write it another way, or leave it out).",
        )
    return None


def _validated(
    purpose: Purpose,
    justification: str | None,
    *,
    nhs_number: str | None,
    upn: str | None,
    given: DemographicsInput | None,
    model: LinkageModel,
) -> LookupQuery:
    """The lookup as the pipeline takes it: exactly one way of identifying, each normalised, and
    demographics only when they could link a record under `model`."""
    try:
        check_one_way(nhs_number=nhs_number, upn=upn, demographics=given)
        demographics = None
        corroboration = Corroboration()
        if given is not None:
            demographics = validate_demographics(
                given=given.given_name,
                family=given.family_name,
                date_of_birth=given.date_of_birth,
                postcode=given.postcode,
                sex=given.sex,
                former_family=given.former_family_name,
                known_as=given.known_as or (),
                today=today_in_england(),  # born today in England: not "future" at 00:30 BST
            )
            corroboration = Corroboration(
                address_lines=address_lines(given.address_lines or ()),
                carer_names=carer_names(given.carer_names or ()),
            )
            check_could_link(demographics, model)
        return LookupQuery(
            purpose=purpose,
            justification=justification,
            nhs_number=None if nhs_number is None else normalise_nhs_number(nhs_number),
            upn=None if upn is None else normalise_upn(upn),
            demographics=demographics,
            corroboration=corroboration,
        )
    except InvalidIdentifier as exc:
        raise GatewayError(exc.code, exc.message) from exc


_AccessesSince = Annotated[
    datetime | None, strawberry.argument(description="Only accesses from this time on.")
]
_After = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "Only the entries after this one: the `cursor` of an entry this field gave, for the"
            " same child, user or feed, unchanged. Anything else is refused (BAD_USER_INPUT)."
        )
    ),
]


_ChildNhsNumber = Annotated[
    str | None, strawberry.argument(description="The child's NHS number (or give upn).")
]
_ChildUpn = Annotated[
    str | None,
    strawberry.argument(description="The child's UPN, for a child known by no NHS number."),
]


MAX_SUBJECT_CHARS = 256
"""The longest account a user's trail is asked for by (tokens' subjects are far shorter)."""
MAX_READ = 1000
"""The most entries one reading of a trail or feed gives, in the log's order: a child's trail can be
flooded (each auditor's reading adds to it), and a script hammering the API is alerted at every
call. The rest is read on after the last entry (`READ_ON`, gateway.audit.pages)."""
IN_LOG_ORDER = (
    "in the order they were written to the log (oldest first, but for the few milliseconds by"
    " which the clocks of the gateways writing it differ)"
)
"""How the feeds are ordered (gateway.audit.pages): by commit, so that reading on after the last
entry misses none written later, whatever time it was stamped with."""
READ_ON = (
    f"at most {MAX_READ}: to read on, ask again with `after` set to the last one's `cursor`, until"
    f" fewer than {MAX_READ} come back; each entry is read once, those written after the reading"
    " too (`since` only leaves out entries before a time: set to the last one's `at` it gives"
    f" those at that very time again, cannot get past {MAX_READ} at one time, and misses one"
    " written after it by a gateway whose clock is behind)"
)

AUDITED = (
    "Reading it is itself audited, and so is an attempt by anyone not an auditor, refused"
    " (FORBIDDEN) and recorded with what it asked for."
)
"""What the log keeps of the readings of an auditors' feed (gateway.audit.trail)."""


async def resolve_audit_trail(
    info: Info[RequestContext, None],
    nhs_number: _ChildNhsNumber = None,
    upn: _ChildUpn = None,
    since: _AccessesSince = None,
    after: _After = None,
) -> list[AuditEntry]:
    context = info.context
    caller = context.signed_in()
    child = _named_child(nhs_number, upn)
    page = await context.audit_trail.for_child(caller, child, since, MAX_READ, after)
    return [audit_entry(r, cursor) for r, cursor in page.with_cursors()]


def _named_child(nhs_number: str | None, upn: str | None) -> tuple[ChildKind, str]:
    try:
        return named_child(nhs_number=nhs_number, upn=upn)
    except InvalidIdentifier as exc:
        raise GatewayError(exc.code, exc.message) from exc


async def resolve_user_audit_trail(
    info: Info[RequestContext, None],
    subject: Annotated[
        str,
        strawberry.argument(
            description="The user's account, as an entry's or an alert's `subject` gives it."
        ),
    ],
    since: _AccessesSince = None,
    after: _After = None,
) -> list[AuditEntry]:
    context = info.context
    caller = context.signed_in()
    if not subject or len(subject) > MAX_SUBJECT_CHARS or Justification.of(subject).text != subject:
        # It is written to the log with the reading: no control or direction character that
        # could make it read as another account, no text of any length.
        raise GatewayError(
            ErrorCode.BAD_USER_INPUT,
            f"Name the user by their account, as an entry or alert shows it: printable, at most"
            f" {MAX_SUBJECT_CHARS} characters.",
        )
    page = await context.audit_trail.for_user(caller, subject, since, MAX_READ, after)
    return [audit_entry(r, cursor) for r, cursor in page.with_cursors()]


async def resolve_override_alerts(
    info: Info[RequestContext, None],
    since: Annotated[
        datetime | None, strawberry.argument(description="Only overrides from this time on.")
    ] = None,
    after: _After = None,
) -> list[OverrideAlert]:
    context = info.context
    caller = context.signed_in()
    page = await context.audit_trail.alerts(caller, since, limit=MAX_READ, after=after)
    return [override_alert(a, cursor) for a, cursor in page.with_cursors()]


async def resolve_limit_alerts(
    info: Info[RequestContext, None],
    since: Annotated[
        datetime | None, strawberry.argument(description="Only refusals from this time on.")
    ] = None,
    after: _After = None,
) -> list[LimitAlert]:
    context = info.context
    caller = context.signed_in()
    page = await context.audit_trail.alerts(
        caller, since, kinds=LIMIT_ALERTS, limit=MAX_READ, after=after
    )
    return [limit_alert(a, cursor) for a, cursor in page.with_cursors()]


async def resolve_undelivered_notifications(
    info: Info[RequestContext, None],
    after: _After = None,
) -> list[UndeliveredNotification]:
    context = info.context
    caller = context.signed_in()
    page = await context.audit_trail.undelivered(caller, MAX_READ, after)
    return [undelivered_notification(e, cursor) for e, cursor in page.with_cursors()]


async def resolve_access_history(
    info: Info[RequestContext, None],
    nhs_number: _ChildNhsNumber = None,
    upn: _ChildUpn = None,
    limit: Annotated[
        int,
        strawberry.argument(description=f"How many of the most recent accesses, 1 to {MAX_LIMIT}."),
    ] = DEFAULT_LIMIT,
) -> AccessHistoryType:
    context = info.context
    caller = context.signed_in()
    child = _named_child(nhs_number, upn)
    history = await context.access_history.for_child(caller, child, limit)
    return owner_history(history)


@strawberry.type(
    description=(
        "Look up one child at a time: no query lists or searches children. Auditors also read"
        " one user's trail and the override alerts, which name no child."
    )
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
            "Auditors only: every recorded access to one child, named by its NHS number or its"
            " UPN (who, when, why, what was released or withheld): lookups by the identifier"
            " given, and lookups by another means whose records held it. "
            + IN_LOG_ORDER.capitalize()
            + ", "
            + READ_ON
            + ". "
            + AUDITED
        ),
    )
    user_audit_trail: list[AuditEntry] = strawberry.field(
        resolver=resolve_user_audit_trail,
        description=(
            "Auditors only: every recorded access by one user (who, when, why, what was released"
            " or withheld; the child by no identifier), "
            + IN_LOG_ORDER
            + ", "
            + READ_ON
            + ". "
            + AUDITED
        ),
    )
    override_alerts: list[OverrideAlert] = strawberry.field(
        resolver=resolve_override_alerts,
        description=(
            "Auditors and privacy officers: the break-glass overrides to investigate (those that"
            " failed after the agencies were asked too), and the attempts refused - by the policy,"
            " or for a justification the gateway may not keep - who, when, why and the audit record"
            " to read; it names no child. "
            + IN_LOG_ORDER.capitalize()
            + ", "
            + READ_ON
            + ". "
            + AUDITED
        ),
    )
    limit_alerts: list[LimitAlert] = strawberry.field(
        resolver=resolve_limit_alerts,
        description=(
            "Auditors and information governance: the lookups refused because their user had"
            " reached a usage limit (possible trawling) - who, when, which limit and the audit"
            " record to read; it names no child. "
            + IN_LOG_ORDER.capitalize()
            + ", "
            + READ_ON
            + ". "
            + AUDITED
        ),
    )
    undelivered_notifications: list[UndeliveredNotification] = strawberry.field(
        resolver=resolve_undelivered_notifications,
        description=(
            "Auditors only: the owner notifications the gateway gave up delivering and no operator"
            " has sent again or closed as passed on by other means, in the order they were given"
            " up in (each gateway gives up by its own clock, and one given up later is never"
            f" listed before one read already), at most {MAX_READ}: to read on, ask again with"
            " `after` set to the last one's `cursor`, until fewer come back - each agency that"
            " was not told of a lookup of a child it holds a record of, and has to be told some"
            " other way. Names the lookup's audit record and the agency, never the child. "
            + AUDITED
        ),
    )
    access_history: AccessHistoryType = strawberry.field(
        resolver=resolve_access_history,
        description=(
            "For the agency holding a child's protection plan or looked-after status (the"
            " organisations configured for that source): who looked at the child - the lookups"
            " your agency was notified of, newest first, as NHS CP-IS shows recent accesses."
            " Anyone else is refused (NOT_THE_OWNER). Reading it is itself audited, and notifies"
            " no one."
        ),
    )
