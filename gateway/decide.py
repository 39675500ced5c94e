"""The decide stage: policy rules, per record and field, on what leaves the gateway.

The policy sees which fields each linked record holds and the child's restrictions aggregated over
all of them, and answers released or withheld-with-reason for each. The gateway then keeps only what
was released: a field the policy did not mention is withheld (POLICY_UNDECIDED), and an answer that
decides a field twice is malformed (PolicyError), so nothing is released. Nothing here can widen
what the policy said.

The child's shielding and restriction come from every record a source returned for the
identifier the lookup used, linked or not: a source (a local authority holding the child under its
own case id, say) may answer the child's NHS number with a record that does not carry it, which is
then not linked (`recordsUnmatched`), but its shield or restriction is the child's for all the
gateway can tell - ignoring it would show the child's location from the other records. By
demographics, unlinked records are other children; shield-safe search deals with those near it.

The same answer carries the policy's owner-notification obligation: which matched records' holders
must be told of this lookup, and why. The policy sees each record's true indicators for that, even
those it then withholds from the caller; an obligation naming a record the lookup lacks is an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Final

from connectors.minimisation import minimise
from connectors.notifications import NotificationReason
from connectors.protocol import (
    INDICATOR_FIELDS,
    PLAIN_FIELDS,
    ConnectorRecord,
    Contact,
    FieldId,
    Identifiers,
    Involvement,
)
from connectors.sensitive_services import with_sensitive_marked
from gateway import tracing
from gateway.match import MatchResult
from gateway.policy import (
    PolicyError,
    ReleaseChild,
    ReleaseDecision,
    ReleaseInput,
    ReleaseRecord,
    WithholdingReason,
)
from gateway.types import (
    ChildFlags,
    IdentifiedBy,
    LookupContext,
    LookupQuery,
    MatchedRecord,
    OwnerNotice,
    Plan,
    Release,
    ReleasedRecord,
    SourceAnswer,
    SourceStatus,
    Withheld,
)

POLICY_UNDECIDED = "POLICY_UNDECIDED"
SHIELD_REASONS: Final = frozenset(
    {
        WithholdingReason.SHIELDED,
        WithholdingReason.RESTRICTED,
        WithholdingReason.RESTRICTION_STATUS_UNKNOWN,
        WithholdingReason.SHIELD_STATUS_UNKNOWN,
    }
)
"""Reasons under which a record shows identity only: then its sensitive service details are
said to be withheld whether or not it holds any - said only when it did, they would tell a
shielded child's sensitive service (DOMAIN.md: a shielded record shows only name, sex, date of
birth and ID)."""


def present_fields(record: ConnectorRecord) -> frozenset[FieldId]:
    """The catalogued fields a record actually holds a value for."""
    present = {f for f in PLAIN_FIELDS if _holds(getattr(record, f.value))}
    if record.identifiers.nhs_number is not None:
        present.add(FieldId.NHS_NUMBER)
    if record.involvements:
        present.add(FieldId.INVOLVEMENTS)
        if any(_has_sensitive_details(i) for i in record.involvements if i.sensitive):
            present.add(FieldId.SENSITIVE_SERVICE_DETAILS)
    if record.indicators is not None:
        present.update(
            f for f in INDICATOR_FIELDS if getattr(record.indicators, f.value) is not None
        )
    return frozenset(present)


def _holds(value: object) -> bool:
    """Neither None nor an empty list: `value not in (None, [])` without comparing a model with
    None and [] through pydantic's __eq__, for each field of each record."""
    return value is not None and not (isinstance(value, list) and not value)


def _has_sensitive_details(involvement: Involvement) -> bool:
    """Whether an involvement holds what `sensitive_service_details` covers for a sensitive
    service: its provider, or when it began or ended."""
    return not (
        involvement.service is None
        and involvement.organisation is None
        and involvement.practitioner is None
        and involvement.since is None
        and involvement.until is None
    )


def child_flags(
    matched: Sequence[MatchedRecord],
    answers: Sequence[SourceAnswer],
    shield_authorities: Collection[str],
    restriction_authorities: Collection[str],
    unlinked: Sequence[ConnectorRecord] = (),
    unasked: Collection[str] = (),
) -> ChildFlags:
    """One shielding or restricting record restricts the whole child - a linked one, or one
    returned for the child's identifier without carrying it (`unlinked`); a silent authority is
    doubt - of shielding, or of an NHS restriction, which the policy then assumes - and so is one
    the lookup never asked (`unasked`: Plan.unasked_authorities)."""
    records = [m.record for m in matched] + list(unlinked)
    return ChildFlags(
        shielded=any(r.flags.shielded for r in records),
        restricted=any(r.flags.restricted for r in records),
        shield_status_known=_all_answered(answers, shield_authorities, unasked),
        restriction_status_known=_all_answered(answers, restriction_authorities, unasked),
    )


def _all_answered(
    answers: Sequence[SourceAnswer], authorities: Collection[str], unasked: Collection[str]
) -> bool:
    """Whether every one of `authorities` was asked, and each asked one answered in a way that
    tells (`_tells`). Checking the answers alone is not enough: an agency asked only when routed,
    of a kind the plan left out, is in no answer at all, and absent must not read as clear."""
    return not any(a in unasked for a in authorities) and all(
        _tells(a) for a in answers if a.source in authorities
    )


def _tells(answer: SourceAnswer) -> bool:
    """Whether an authority's answer says whether it shields (or restricts) the child: the
    records it sent, or "no record" for the NHS number or for a search by the child's details.
    "No record" for a UPN alone says only that it files nothing under that UPN: an authority
    keying its records by NHS number (a local authority's social care, often; the spine, always)
    may still shield the child, and the school's copy of the address must not go out on it."""
    if answer.status is SourceStatus.ANSWERED:
        return True
    return answer.status is SourceStatus.NO_RECORD and not set(answer.asked_with) <= {
        IdentifiedBy.UPN
    }


def _traced(release: Release) -> dict[str, str]:
    return {"childlookup.policy.decision_id": release.decision_id}


NO_BROKERS: Final[Mapping[str, Contact]] = MappingProxyType({})


@tracing.stage("decide", _traced)
async def decide(
    lookup: LookupContext,
    plan: Plan,
    matching: MatchResult,
    brokers: Mapping[str, Contact] = NO_BROKERS,
    sensitive: Collection[str] = frozenset(),
) -> Release:
    """Ask the policy once for every matched record and field, then cut each record down to its
    release.

    Fields a source provides that the plan did not ask for (`plan.unrequested`) are asked about
    too, so the caller learns that a record may hold more than they can see. Records are numbered
    rather than named in the policy input, which keeps source record ids out of the policy and
    lets identical lookups share one remembered decision.

    An involvement in a sensitive service (connectors.sensitive_services) is marked sensitive
    first, as the SDK's minimise marks it: a connector not built on the current SDK, or an agency
    that did not mark it, must not show its provider. Marked before the policy is asked, it is
    decided and reported as any marked one is - `sensitive_service_details` released or withheld
    with the policy's reason - rather than only cut. A sensitive involvement without a broker is
    given its source's configured one (`brokers`: gateway.config.sensitive_brokers), so the
    practitioner has someone to ask. Every involvement of a source that is a sensitive service
    itself (`sensitive`: gateway.config.sensitive_sources) is sensitive, whatever it is called.
    """
    matched = tuple(
        _with_sensitive_marked(m, brokers.get(m.source), every=m.source in sensitive)
        for m in matching.matched
    )
    flags = child_flags(
        matched,
        matching.answers,
        plan.shield_authorities,
        plan.restriction_authorities,
        unlinked=_returned_for_identifier(lookup.query, matching),
        unasked=plan.unasked_authorities,
    )
    present = [present_fields(m.record) for m in matched]
    asked: list[frozenset[FieldId]] = []
    for m, held in zip(matched, present, strict=True):
        fields = held | plan.unrequested.get(plan.planned_as(m.source), frozenset())
        if _has_brokered_involvement(m.record):
            fields |= {FieldId.SENSITIVE_SERVICE_DETAILS}
        asked.append(fields)
    request = ReleaseInput(
        caller=lookup.caller.protocol,
        purpose=lookup.query.purpose.value,
        child=ReleaseChild(
            shielded=flags.shielded,
            restricted=flags.restricted,
            shield_status_known=flags.shield_status_known,
            restriction_status_known=flags.restriction_status_known,
        ),
        records=tuple(
            ReleaseRecord(
                id=str(i),
                source=m.source,
                fields=tuple(sorted(fields)),
                true_indicators=_true_indicators(m.record),
            )
            for i, (m, fields) in enumerate(zip(matched, asked, strict=True))
        ),
    )
    decision, decision_id = await lookup.policy.release(request)
    reasons: dict[tuple[str, FieldId], str] = {}
    for w in decision.withheld:
        reasons.setdefault((w.record, w.field), w.reason)
    released_pairs = {(r.record, r.field) for r in decision.released} - reasons.keys()

    records: list[ReleasedRecord] = []
    withheld: list[Withheld] = []
    for i, (m, fields) in enumerate(zip(matched, asked, strict=True)):
        rid = str(i)
        # Both decisions must allow a field: a record can hold more than the plan allowed (what
        # matching a search needs, what an obligation needs), and a release policy in error -
        # or a policy server not answering as it should - must not show it.
        released = frozenset(
            f for f in present[i] if (rid, f) in released_pairs and f in plan.fields
        )
        why = {f: reasons.get((rid, f), POLICY_UNDECIDED) for f in fields - released}
        if why.get(FieldId.INVOLVEMENTS) in SHIELD_REASONS:
            why.setdefault(FieldId.SENSITIVE_SERVICE_DETAILS, why[FieldId.INVOLVEMENTS])
        for f in sorted(why):
            withheld.append(Withheld(f, m.source, why[f]))
        records.append(ReleasedRecord(m, released, _cut(m.record, released)))
    return Release(
        tuple(records), tuple(withheld), flags, decision_id, _owner_notices(decision, matched)
    )


def _with_sensitive_marked(m: MatchedRecord, broker: Contact | None, every: bool) -> MatchedRecord:
    marked = _every_one_marked(m.record) if every else with_sensitive_marked(m.record)
    record = _with_broker(marked, broker)
    return m if record is m.record else replace(m, record=record)


def _every_one_marked(record: ConnectorRecord) -> ConnectorRecord:
    """`record` with every involvement marked sensitive, as a sensitive service's are; `record`
    itself when all were."""
    involvements = record.involvements or []
    if all(i.sensitive for i in involvements):
        return record
    marked = [i if i.sensitive else i.model_copy(update={"sensitive": True}) for i in involvements]
    return record.model_copy(update={"involvements": marked})


def _with_broker(record: ConnectorRecord, broker: Contact | None) -> ConnectorRecord:
    """`record` with `broker` on each sensitive involvement that has none; `record` itself when
    none lacked one. An agency's own broker for an involvement is kept: it knows the service."""
    involvements = record.involvements or []
    if broker is None or not any(i.sensitive and i.broker is None for i in involvements):
        return record
    brokered = [
        i.model_copy(update={"broker": broker}) if i.sensitive and i.broker is None else i
        for i in involvements
    ]
    return record.model_copy(update={"involvements": brokered})


def _returned_for_identifier(
    query: LookupQuery, matching: MatchResult
) -> tuple[ConnectorRecord, ...]:
    """The records sources returned for the NHS number or UPN the lookup used, linked or not (a
    record carrying another value of it has been dropped, its source FAILED); none for a search
    by demographics, whose unlinked candidates are other children."""
    if query.identified_by is IdentifiedBy.DEMOGRAPHICS:
        return ()
    return tuple(record for answer in matching.answers for record in answer.records)


def _true_indicators(record: ConnectorRecord) -> tuple[FieldId, ...]:
    if record.indicators is None:
        return ()
    return tuple(f for f in INDICATOR_FIELDS if getattr(record.indicators, f.value) is True)


def _owner_notices(
    decision: ReleaseDecision, matched: Sequence[MatchedRecord]
) -> tuple[OwnerNotice, ...]:
    """One notice per record named, with every reason given for it, in record order.

    A record the lookup does not have is a broken policy, and a notice that cannot be addressed
    would be an obligation silently dropped: that is a PolicyError, so nothing is released.
    """
    positions = {str(i): i for i in range(len(matched))}
    reasons: defaultdict[int, set[NotificationReason]] = defaultdict(set)
    for item in decision.notify:
        if item.record not in positions:
            raise PolicyError("The policy's notify obligation names a record the lookup lacks.")
        reasons[positions[item.record]].add(item.reason)
    return tuple(OwnerNotice(matched[i], tuple(sorted(reasons[i]))) for i in sorted(reasons))


def _has_brokered_involvement(record: ConnectorRecord) -> bool:
    """A sensitive involvement whose details the connector left out: they exist, unseen."""
    return any(i.sensitive and not _has_sensitive_details(i) for i in record.involvements or ())


def _cut(record: ConnectorRecord, released: frozenset[FieldId]) -> ConnectorRecord:
    """Minimise to the released fields, and drop the NHS number too unless it was released."""
    cut = minimise(record, released)
    if FieldId.NHS_NUMBER in released:
        return cut
    return cut.model_copy(update={"identifiers": Identifiers()})
