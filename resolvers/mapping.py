"""Pipeline results -> GraphQL schema types. Pure functions, no decisions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import strawberry

from connectors.protocol import Contact, Involvement
from gateway.audit import OutboxEntry, OwnerHistory
from gateway.policy import DenialCode, WithholdingReason
from gateway.types import Ambiguity, LookupResult, MergedChild, Sourced
from resolvers import types as gql


def lookup_to_graphql(result: LookupResult) -> gql.ChildLookup:
    matched = Counter(m.source for m in result.matched)
    unmatched = result.unmatched or {}
    possible = result.possible or {}
    ambiguity = result.ambiguity
    return gql.ChildLookup(
        outcome=result.outcome,
        complete=result.complete,
        denial=result.denial,
        denial_code=None if result.denial is None else DenialCode(result.denial),
        child=None if result.child is None else _child(result.child),
        records=[
            gql.RecordMatch(
                source=m.source,
                method=m.method,
                score=m.score,
                weight=m.weight,
                as_of=m.record.as_of,
            )
            for m in result.matched
        ],
        sources=[
            gql.SourceReport(
                source=a.source,
                status=a.status,
                latency_ms=a.latency_ms,
                error_code=a.error_code,
                failure_code=None if a.error_code is None else gql.SourceFailure(a.error_code),
                records_matched=matched[a.source],
                records_unmatched=unmatched.get(a.source, 0),
                records_possible=possible.get(a.source, 0),
                records_ambiguous=0 if ambiguity is None else ambiguity.count(a.source),
                cached=a.cached,
                asked_with=list(a.asked_with),
                asked_because=list(a.asked_because),
            )
            for a in result.answers
        ],
        withheld=[
            _withheld(w.field.value, w.source, w.reason, WithholdingReason(w.reason))
            for w in result.withheld
        ],
        audit_id=strawberry.ID(result.audit_id),
        request_id=result.request_id,
        policy_revision=result.policy_revision,
        ambiguity=None if ambiguity is None else _ambiguity(ambiguity),
    )


def _ambiguity(ambiguity: Ambiguity) -> gql.Ambiguity:
    return gql.Ambiguity(
        reason=ambiguity.reason,
        records=[
            gql.AmbiguousRecords(source=r.source, method=r.method, count=r.count)
            for r in ambiguity.records
        ],
    )


def _provenance(value: Sourced[Any]) -> gql.Provenance:
    return gql.Provenance(source=value.source, as_of=value.as_of)


def _flag(value: Sourced[bool] | None) -> gql.SourcedFlag | None:
    if value is None:
        return None
    return gql.SourcedFlag(value=value.value, provenance=_provenance(value))


def _contact(contact: Contact | None) -> gql.ContactDetails | None:
    if contact is None:
        return None
    return gql.ContactDetails(
        name=contact.name, role=contact.role, phone=contact.phone, email=contact.email
    )


def _involvement(entry: Sourced[Involvement]) -> gql.InvolvementEntry:
    i = entry.value
    return gql.InvolvementEntry(
        service=i.service,
        organisation=i.organisation,
        practitioner=_contact(i.practitioner),
        lead=i.lead,
        since=i.since,
        until=i.until,
        sensitive=i.sensitive,
        broker=_contact(i.broker),
        provenance=_provenance(entry),
    )


def _child(child: MergedChild) -> gql.Child:
    name, address, school, gp = child.name, child.address, child.school, child.gp_practice
    return gql.Child(
        nhs_number=None
        if child.nhs_number is None
        else gql.SourcedText(
            value=child.nhs_number.value, provenance=_provenance(child.nhs_number)
        ),
        name=None
        if name is None
        else gql.Name(
            given=name.value.given,
            family=name.value.family,
            former_family=list(name.value.former_family),
            provenance=_provenance(name),
        ),
        date_of_birth=None
        if child.date_of_birth is None
        else gql.SourcedDate(
            value=child.date_of_birth.value, provenance=_provenance(child.date_of_birth)
        ),
        sex=None
        if child.sex is None
        else gql.SourcedText(value=child.sex.value.value, provenance=_provenance(child.sex)),
        address=None
        if address is None
        else gql.PostalAddress(
            lines=list(address.value.lines),
            postcode=address.value.postcode,
            provenance=_provenance(address),
        ),
        school=None
        if school is None
        else gql.SchoolPlace(
            urn=school.value.urn,
            name=school.value.name,
            phone=school.value.phone,
            provenance=_provenance(school),
        ),
        gp_practice=None
        if gp is None
        else gql.GpRegistration(
            ods_code=gp.value.ods_code,
            name=gp.value.name,
            phone=gp.value.phone,
            provenance=_provenance(gp),
        ),
        carers=[
            gql.CarerEntry(
                name=c.value.name,
                relationship=c.value.relationship,
                parental_responsibility=c.value.parental_responsibility,
                phone=c.value.phone,
                provenance=_provenance(c),
            )
            for c in child.carers
        ],
        involvements=[_involvement(i) for i in child.involvements],
        indicators=gql.Indicators(
            child_protection_plan=_flag(child.child_protection_plan),
            looked_after=_flag(child.looked_after),
            child_in_need=_flag(child.child_in_need),
            early_help=_flag(child.early_help),
        ),
        conflicts=[
            gql.FieldConflict(field=c.field.value, chosen=c.chosen, disagreeing=list(c.disagreeing))
            for c in child.conflicts
        ],
    )


def audit_entry(record: dict[str, Any], cursor: str = "") -> gql.AuditEntry:
    """`record` as an auditor reads it; `cursor` reads on after it in the trail it was read from
    (gateway.audit.pages), empty for a record mapped on its own."""
    access = record["access"]
    return gql.AuditEntry(
        audit_id=strawberry.ID(record["audit_id"]),
        at=datetime.fromisoformat(access["at"]),
        subject=access["subject"],
        name=access["name"],
        role=access["role"],
        organisation=access["organisation"],
        purpose=access["purpose"],
        purpose_code=gql.AuditPurpose(access["purpose"]),
        justification=access["justification"],
        outcome=record["outcome"],
        outcome_code=gql.AuditOutcome(record["outcome"]),
        flagged_for_investigation=bool(record.get("flagged_for_investigation")),
        released=[f"{f['source']}:{f['field']}" for f in record.get("released", [])],
        withheld=[
            _withheld(f["field"], f["source"], f["reason"], _recorded_reason(f["reason"]))
            for f in record.get("withheld", [])
        ],
        reading=_reading(record.get("read")),
        cursor=cursor,
    )


def _reading(read: dict[str, Any] | None) -> gql.AuditReading | None:
    if read is None:
        return None
    since = read["since"]
    return gql.AuditReading(
        since=None if since is None else datetime.fromisoformat(since),
        subject=read["subject"],
        alert_kinds=list(read["alert_kinds"]),
    )


def owner_history(history: OwnerHistory) -> gql.AccessHistory:
    return gql.AccessHistory(
        accesses=[
            gql.AccessHistoryEntry(
                audit_id=strawberry.ID(a.audit_id),
                at=a.access.at,
                subject=a.access.subject,
                name=a.access.name,
                role=a.access.role,
                organisation=a.access.organisation,
                purpose=gql.AuditPurpose(a.access.purpose),
                justification=a.access.justification,
                outcome=gql.AuditOutcome(a.outcome),
                override=a.override,
                reasons=list(a.reasons),
            )
            for a in history.accesses
        ],
        more=history.more,
    )


def limit_alert(alert: dict[str, str | None], cursor: str) -> gql.LimitAlert:
    return gql.LimitAlert(**_alert(alert), cursor=cursor)


def override_alert(alert: dict[str, str | None], cursor: str) -> gql.OverrideAlert:
    return gql.OverrideAlert(**_alert(alert), justification=alert["justification"], cursor=cursor)


def undelivered_notification(entry: OutboxEntry, cursor: str) -> gql.UndeliveredNotification:
    return gql.UndeliveredNotification(
        audit_id=strawberry.ID(entry.audit_id),
        agency=entry.source,
        attempts=entry.attempts,
        last_error=entry.last_error,
        queued_at=datetime.fromtimestamp(entry.queued_at, UTC),
        given_up_at=None
        if entry.finished_at is None
        else datetime.fromtimestamp(entry.finished_at, UTC),
        cursor=cursor,
    )


def _alert(alert: dict[str, str | None]) -> dict[str, Any]:
    """What every alert says: when, what kind, which record, and who."""
    return {
        "at": datetime.fromisoformat(str(alert["at"])),
        "kind": str(alert["kind"]),
        "audit_id": strawberry.ID(str(alert["audit_id"])),
        "subject": str(alert["subject"]),
        "role": str(alert["role"]),
        "organisation": str(alert["organisation"]),
    }


def _recorded_reason(reason: str) -> WithholdingReason:
    """A withholding reason read back from the audit log. Gateways of two versions can share one
    log (PostgreSQL, a rolling upgrade): a reason a newer one records is UNKNOWN here, as an
    AuditPurpose is, so that it does not fail every trail an older one reads. A live lookup's
    reasons are read strictly: there the gateway knows every reason it gives."""
    try:
        return WithholdingReason(reason)
    except ValueError:
        return WithholdingReason.UNKNOWN


def _withheld(field: str, source: str, reason: str, code: WithholdingReason) -> gql.WithheldField:
    return gql.WithheldField(field=field, source=source, reason=reason, reason_code=code)
