"""Turning a lookup into its audit record: everything an auditor needs, nothing of the child.

A record names the child and each source record only by keyed pseudonym, and names fields rather
than holding their values. The owner notifications the release policy obliges are composed here
too, because the record lists them and both are committed in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final

from connectors.protocol import FieldId, random_id
from gateway.audit.notify import owner_notifications
from gateway.audit.outbox import OutboxEntry, OutboxMessage
from gateway.audit.pseudonyms import Pseudonymiser
from gateway.audit.types import (
    Access,
    AuditAmbiguity,
    AuditCandidates,
    AuditField,
    AuditMatch,
    AuditRecord,
    AuditSource,
    utc_now,
)
from gateway.identifiers import InvalidIdentifier, normalise_nhs_number, normalise_upn
from gateway.merge import shown_nhs_number
from gateway.types import (
    Ambiguity,
    Caller,
    LookupContext,
    LookupOutcome,
    LookupQuery,
    LookupResult,
    MatchedRecord,
    Plan,
    Purpose,
    Release,
    ReleasedRecord,
    SourceAnswer,
)

HIDDEN = "HIDDEN"
"""Audit outcome of a demographic search that reached a child shield-safe search keeps hidden."""


@dataclass(frozen=True)
class AuditedLookup:
    """A lookup's record and the owner notifications to queue with it."""

    record: AuditRecord
    notifications: tuple[OutboxMessage, ...]


def access_by(
    caller: Caller, *, purpose: str, justification: str | None, child_ref: str | None
) -> Access:
    """Who is looking, now, at which child and why."""
    return Access(
        at=utc_now(),
        subject=caller.subject,
        name=caller.name,
        role=caller.role,
        organisation=caller.organisation,
        purpose=purpose,
        justification=justification,
        child_ref=child_ref,
    )


def lookup_access(lookup: LookupContext) -> Access:
    return access_by(
        lookup.caller,
        purpose=lookup.query.purpose.value,
        justification=lookup.query.justification,
        child_ref=lookup.child_ref,
    )


def lookup_record(
    lookup: LookupContext,
    plan: Plan,
    result: LookupResult,
    release: Release | None,
    *,
    hidden: bool,
    pseudonymiser: Pseudonymiser,
    asked: Sequence[SourceAnswer] | None = None,
    ambiguity: Ambiguity | None = None,
    linked: Sequence[MatchedRecord] | None = None,
) -> AuditedLookup:
    """The record of a lookup that ran (found, not found, ambiguous or denied by the plan).

    Sources are recorded as `asked` answered, when given - every round, even those a hidden search
    does not show the caller - else as the caller saw them; each with how it was asked. So is
    what made the linked records ambiguous: `ambiguity` when given, else the result's. The
    records `linked` (when given: a hidden search's too, which the caller was not shown), else
    those the caller was shown, are recorded as matched, and the children reached are named by
    their NHS numbers: a HIDDEN record says how the search reached the child it hid. A field is
    recorded released only where the caller was shown it (`_shown`)."""
    access = lookup_access(lookup)
    notices = owner_notifications(
        access, result.audit_id, release.notify if release is not None else ()
    )
    released = release.records if release is not None else ()
    record = AuditRecord(
        access=access,
        audit_id=result.audit_id,
        request_id=result.request_id,
        # The caller saw NOT_FOUND; the auditor sees that shield-safe search hid a child.
        outcome=HIDDEN if hidden else result.outcome.value,
        denial=result.denial,
        error_code=None,
        policy_revision=result.policy_revision,
        decision_ids=[plan.decision_id] + ([release.decision_id] if release else []),
        flagged_for_investigation=_investigated(lookup, plan),
        child_flags=None if release is None else asdict(release.flags),
        sources=[
            AuditSource(
                a.source,
                a.status.value,
                a.error_code,
                len(a.records),
                a.cached,
                [kind.value for kind in a.asked_with],
                [reason.value for reason in a.asked_because],
            )
            for a in (result.answers if asked is None else asked)
        ],
        matches=[_match(m, pseudonymiser) for m in (result.matched if linked is None else linked)],
        released=[AuditField(r.matched.source, f.value) for r in released for f in _shown(r)],
        withheld=[AuditField(w.source, w.field.value, w.reason) for w in result.withheld],
        notified=[n.audit for n in notices],
        ambiguity=_ambiguity(ambiguity or result.ambiguity),
        linked_refs=()
        if ambiguity or result.ambiguity
        else _linked_refs(
            result.matched if linked is None else linked, lookup.query, pseudonymiser
        ),
    )
    return AuditedLookup(record, tuple(n.message for n in notices))


def _shown(released: ReleasedRecord) -> list[FieldId]:
    """The fields of `released` the caller was shown, in order: each the policy released, except
    an NHS number the merge does not show as the child's (`shown_nhs_number`) - an auditor must
    not read that the caller got a field they did not."""
    unshown = shown_nhs_number(released.record) is None
    return [f for f in sorted(released.fields) if not (f is FieldId.NHS_NUMBER and unshown)]


def _linked_refs(
    matched: Sequence[MatchedRecord], asked: LookupQuery, pseudonymiser: Pseudonymiser
) -> list[str]:
    """The pseudonyms of the NHS numbers and UPNs `matched` hold, other than the one the lookup
    was asked by (the commonest case, passed over without a pseudonym made): the child it reached
    is then found by either identifier, a child with no NHS number by its UPN. Identifiers that
    are not valid are passed over. Not called for ambiguous records: the log must not name a
    child the lookup did not single out."""
    held = (
        (
            "nhs",
            normalise_nhs_number,
            asked.nhs_number,
            {m.record.identifiers.nhs_number for m in matched},
        ),
        ("upn", normalise_upn, asked.upn, {m.record.identifiers.upn for m in matched}),
    )
    refs = set()
    for kind, normalise, own, values in held:
        for value in values - {None, own}:
            try:
                identifier = normalise(value or "")
            except InvalidIdentifier:
                continue
            if identifier != own:
                refs.add(pseudonymiser.ref(kind, identifier))
    return sorted(refs)


OPERATIONS: Final = "OPERATIONS"
"""The purpose an operator's action on the log's notifications is recorded with."""
PASSED_ON: Final = "NOTIFICATION_PASSED_ON"
"""The outcome of a dead letter closed as passed on by other means."""


def passed_on_record(operator: Caller, closed: OutboxEntry) -> AuditRecord:
    """The record of an operator closing a dead letter whose agency was told by other means
    (`childlookup notifications passed-on`): who (`operator`), how (the close's note, as the
    justification), which message (its id as the request id) and agency (its one source, with
    the last error that had stopped delivery). Hash-chained and archived with the log, where the
    outbox row's note is neither; it names no child, as the message it closes is not read."""
    return AuditRecord(
        access=access_by(
            operator, purpose=OPERATIONS, justification=closed.passed_on, child_ref=None
        ),
        audit_id=random_id(),
        request_id=closed.message_id,
        outcome=PASSED_ON,
        denial=None,
        error_code=None,
        policy_revision=None,
        sources=[AuditSource(closed.source, PASSED_ON, closed.last_error, 0, False)],
    )


def failure_record(
    lookup: LookupContext, audit_id: str, outcome: str, code: str, plan: Plan | None = None
) -> AuditRecord:
    """The record of a lookup refused or failed before it could release anything. A DENIED one
    (refused before it ran, gateway.pipeline.LookupPipeline.refuse) holds `code` as its denial, as
    a lookup the policy refused does, so a break-glass attempt refused either way raises
    BREAK_GLASS_REFUSED; any other holds it as its error. `plan` is the plan the agencies were
    asked under, when the lookup failed after that: an override it permitted is investigated as
    one that ran to the end is, for the child's records were asked for past any shield."""
    denied = outcome == LookupOutcome.DENIED
    return AuditRecord(
        access=lookup_access(lookup),
        audit_id=audit_id,
        request_id=lookup.request_id,
        outcome=outcome,
        denial=code if denied else None,
        error_code=None if denied else code,
        policy_revision=None,
        decision_ids=[] if plan is None else [plan.decision_id],
        flagged_for_investigation=plan is not None and _investigated(lookup, plan),
    )


def _investigated(lookup: LookupContext, plan: Plan) -> bool:
    """Break-glass is never routine: every override the plan permitted is investigated."""
    return lookup.query.purpose is Purpose.EMERGENCY_OVERRIDE and plan.permitted


def _ambiguity(ambiguity: Ambiguity | None) -> AuditAmbiguity | None:
    """Counts and methods only: the log names no record the lookup did not link."""
    if ambiguity is None:
        return None
    return AuditAmbiguity(
        reason=ambiguity.reason.value,
        candidates=[AuditCandidates(r.source, r.method.value, r.count) for r in ambiguity.records],
    )


def _match(matched: MatchedRecord, pseudonymiser: Pseudonymiser) -> AuditMatch:
    return AuditMatch(
        source=matched.source,
        record_ref=pseudonymiser.ref("record", matched.key),
        method=matched.method.value,
        score=matched.score,
        weight=matched.weight,
        reasons=matched.reasons,
    )
