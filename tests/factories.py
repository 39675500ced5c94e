"""Small builders for what tests arrange: connector records, policy bundles and decision inputs,
audit records and owner notifications."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.check_digits import nhs_check_digit
from connectors.notifications import (
    AccessedRecord,
    Accessor,
    Notification,
    NotificationReason,
)
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    FieldId,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    School,
    Sex,
)
from connectors.protocol import Caller as ProtocolCaller
from gateway.audit import (
    Access,
    AuditField,
    AuditNotice,
    AuditRecord,
    AuditSource,
    CheckpointKeys,
    OutboxMessage,
    Pseudonymiser,
)
from gateway.audit.chain import link_hash
from gateway.audit.checkpoints import GENESIS, legacy_checkpoint_mac
from gateway.config import DEFAULT_POLICY_DIR, SourceConfig
from gateway.decide import NO_BROKERS, decide
from gateway.justification import Justification
from gateway.match import MatchResult
from gateway.plan import make_plan
from gateway.policy import (
    DecisionLog,
    LoggedPolicy,
    PlanInput,
    PlanJustification,
    PlanSource,
    PolicyEngine,
    RegoPolicyEngine,
    ReleaseChild,
    ReleaseInput,
    ReleaseRecord,
)
from gateway.types import (
    Caller,
    LookupContext,
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    Purpose,
    Release,
    SourceAnswer,
    SourceStatus,
)

NHS = "9434765919"
OTHER_NHS = "9000000009"
AS_OF = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def health_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "H1",
        "identifiers": Identifiers(nhs_number=nhs),
        "name": PersonName(given="Amelia", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "sex": Sex.FEMALE,
        "address": Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
        "gp_practice": GpPractice(ods_code="A81001", name="Test Surgery", phone="01632 960001"),
        "carers": [Carer(name="Jo Hart", relationship="mother", parental_responsibility=True)],
        "involvements": [
            Involvement(
                service="health visiting",
                organisation="Leeds Community Healthcare",
                practitioner=Contact(
                    name="Hana Visitor", role="health visitor", phone="07700 900001"
                ),
            ),
            Involvement(
                service="CAMHS",
                organisation="Leeds CAMHS",
                practitioner=Contact(name="Dr Mind", phone="07700 900002"),
                sensitive=True,
                broker=Contact(name="Health safeguarding hub", phone="01632 960999"),
            ),
        ],
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def social_care_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "LA-000001",
        "identifiers": Identifiers(nhs_number=nhs, local_id="LA-000001"),
        "name": PersonName(given="Amelia", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "address": Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
        "involvements": [
            Involvement(
                service="children's social care",
                organisation="Leeds City Council",
                practitioner=Contact(name="Sam Social", role="social worker", phone="07700 900003"),
                lead=True,
            )
        ],
        "indicators": Indicators(child_protection_plan=True, child_in_need=True),
        "flags": RecordFlags(),
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def school_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "E1",
        "identifiers": Identifiers(nhs_number=nhs, upn="H801200001001"),
        "name": PersonName(given="Millie", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "school": School(urn="107000", name="Test Primary", phone="01632 960500"),
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def synthetic_nhs(n: int) -> str:
    """The n-th valid NHS number in the synthetic range (never issued to a real person)."""
    found = -1
    stem = 900_000_000
    while True:
        check = nhs_check_digit(str(stem))
        if check is not None:
            found += 1
            if found == n:
                return f"{stem}{check}"
        stem += 1


CALLER = Caller(subject="s", name="n", role="gp", organisation="A81001")

LOCATION_FIELDS = frozenset(
    {FieldId.ADDRESS, FieldId.SCHOOL, FieldId.GP_PRACTICE, FieldId.CARERS, FieldId.INVOLVEMENTS}
)
"""The fields shielding withholds (the `location` category of policies/data.json)."""

FULL_SOURCES = (
    SourceConfig(name="health", url="http://127.0.0.1:1", provides=tuple(FieldId)),
    SourceConfig(
        name="social_care",
        url="http://127.0.0.1:2",
        provides=tuple(FieldId),
        shield_authority=True,
    ),
)
"""Two configured sources that provide every field; social care is the shield authority."""


@cache
def real_policy() -> PolicyEngine:
    """The project's own policy bundle, compiled once per test session."""
    return RegoPolicyEngine.from_directory(DEFAULT_POLICY_DIR)


def lookup_context(
    query: LookupQuery,
    caller: Caller = CALLER,
    *,
    policy: PolicyEngine | None = None,
    decision_log: DecisionLog | None = None,
    deadline_s: float = 5.0,
    request_id: str = "req-1",
    child_ref: str = "nhs:test",
) -> LookupContext:
    """A lookup as the pipeline starts it, deciding by `policy` (the real bundle by default) and
    logging its decisions to `decision_log` (nowhere by default)."""
    logged = LoggedPolicy(
        policy or real_policy(), decision_log or DecisionLog(None, instance="test")
    )
    return LookupContext(
        caller=caller,
        query=query,
        request_id=request_id,
        child_ref=child_ref,
        deadline=time.monotonic() + deadline_s,
        policy=logged,
    )


# --- policy bundles and decision inputs -----------------------------------------------------------

POLICY_DIR = DEFAULT_POLICY_DIR
"""The project's own policy bundle."""


def write_bundle(
    directory: Path,
    modules: dict[str, str],
    data: dict[str, Any] | None = None,
    revision: str = "test-1",
) -> Path:
    """A bundle directory in OPA's layout, holding `modules` (path -> Rego source) and `data`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".manifest").write_text(json.dumps({"revision": revision, "roots": ["t"]}))
    (directory / "data.json").write_text(json.dumps(data if data is not None else {}))
    for path, source in modules.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_text(source)
    return directory


PLAN_SOURCES = (
    PlanSource(
        name="health",
        provides=(FieldId.NHS_NUMBER, FieldId.NAME, FieldId.ADDRESS, FieldId.GP_PRACTICE),
        shield_authority=False,
    ),
    PlanSource(name="education", provides=(FieldId.NAME, FieldId.SCHOOL), shield_authority=False),
    PlanSource(
        name="social_care",
        provides=(FieldId.NAME, FieldId.CARERS, FieldId.CHILD_PROTECTION_PLAN),
        shield_authority=True,
    ),
)
"""Three agencies as the plan decision sees them; only social care may say a child is shielded."""

CLEAR_CHILD = ReleaseChild(
    shielded=False, restricted=False, shield_status_known=True, restriction_status_known=True
)


def plan_input(role: str, purpose: str, justification: str | None = None) -> PlanInput:
    """The plan question for a caller in `role` at PLAN_SOURCES."""
    counted = Justification.of(justification or "")
    return PlanInput(
        caller=ProtocolCaller(role=role, organisation="X00001"),
        purpose=purpose,
        justification=PlanJustification(letters=counted.letters, words=counted.words),
        sources=PLAN_SOURCES,
    )


def release_input(
    role: str,
    purpose: str,
    child: ReleaseChild = CLEAR_CHILD,
    records: tuple[ReleaseRecord, ...] = (
        ReleaseRecord(id="health:H1", source="health", fields=tuple(FieldId)),
    ),
) -> ReleaseInput:
    """The release question for a caller in `role`: one health record with every field, by
    default."""
    return ReleaseInput(
        caller=ProtocolCaller(role=role, organisation="X00001"),
        purpose=purpose,
        child=child,
        records=records,
    )


# --- audit records and owner notifications --------------------------------------------------------

AUDIT_KEY = b"k" * 32
"""The pseudonym key of test audit records."""
CHECKPOINT_KEY = CheckpointKeys.signing_with(
    Ed25519PrivateKey.from_private_bytes(b"c" * 32), legacy_macs=(b"c" * 32,)
)
"""The keys test audit stores sign (Ed25519) and check their checkpoints with."""
OPERATOR = Caller("operator:Jo Smith", "Jo Smith", "operator", "childlookup-gateway")
"""An operator closing dead letters (`childlookup notifications passed-on --by "Jo Smith"`)."""


def access(**overrides: Any) -> Access:
    """A health visitor's safeguarding lookup of the child NHS, pseudonymised with AUDIT_KEY."""
    fields: dict[str, Any] = {
        "at": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "subject": "dev:RR8:Hana",
        "name": "Hana",
        "role": "health_visitor",
        "organisation": "RR8",
        "purpose": "SAFEGUARDING_ENQUIRY",
        "justification": "home visit concern",
        "child_ref": Pseudonymiser(AUDIT_KEY).ref("nhs", NHS),
    }
    return Access(**(fields | overrides))


def audit_record(audit_id: str, child_ref: str | None = None, **overrides: Any) -> AuditRecord:
    """A found lookup by `access()` (of `child_ref` when given) that showed a name and withheld a
    shielded address."""
    fields: dict[str, Any] = {
        "access": access(**({"child_ref": child_ref} if child_ref else {})),
        "audit_id": audit_id,
        "request_id": "r-" + audit_id,
        "outcome": "FOUND",
        "denial": None,
        "error_code": None,
        "policy_revision": "rev-1",
        "sources": [AuditSource("health", "ANSWERED", None, 1, False)],
        "released": [AuditField("health", "name")],
        "withheld": [AuditField("health", "address", "SHIELDED")],
    }
    return AuditRecord(**(fields | overrides))


BREAK_GLASS_REASON = "Child reported missing; police need the current address now."


def break_glass_record(audit_id: str) -> AuditRecord:
    """A permitted emergency override by `access()`, flagged for investigation."""
    return audit_record(
        audit_id,
        access=access(purpose="EMERGENCY_OVERRIDE", justification=BREAK_GLASS_REASON),
        flagged_for_investigation=True,
    )


def notification(message_id: str = "m-1", **overrides: Any) -> Notification:
    """What an agency is told when an emergency clinician sees its record of a child on a plan."""
    fields: dict[str, Any] = {
        "message_id": message_id,
        "audit_id": "a-1",
        "at": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "accessor": Accessor(
            subject="dev:RX1:eddie", name="Eddie Clinician", role="ed_clinician", organisation="RX1"
        ),
        "purpose": "DIRECT_CARE",
        "justification": None,
        "records": [
            AccessedRecord(
                record_id="LA-000001", reasons=[NotificationReason.CHILD_PROTECTION_PLAN]
            )
        ],
    }
    return Notification(**(fields | overrides))


def outbox_message(
    message_id: str, audit_id: str = "a-1", source: str = "social_care"
) -> OutboxMessage:
    """A `notification` queued for `source`."""
    body = notification(message_id, audit_id=audit_id).model_dump_json().encode()
    return OutboxMessage(message_id, source, audit_id, body, created_at=time.time())


def notifying_record(audit_id: str, *message_ids: str) -> tuple[AuditRecord, list[OutboxMessage]]:
    """An `audit_record` that told social care of the child's plan, once per message id, with the
    outbox messages queued beside it - as the pipeline writes them (gateway.audit.record)."""
    notices = [AuditNotice("social_care", ["CHILD_PROTECTION_PLAN"], m) for m in message_ids]
    record = audit_record(audit_id, notified=notices)
    return record, [outbox_message(m, audit_id) for m in message_ids]


def matched(record: ConnectorRecord, source: str) -> MatchedRecord:
    """`record` from `source`, linked to the child by its NHS number."""
    return MatchedRecord(record.record_id, source, record, MatchMethod.NHS_NUMBER)


UNMARKED_CAMHS = Involvement(
    service="CAMHS",
    organisation="Leeds CAMHS",
    practitioner=Contact(name="Dr Mind", phone="07700 900002"),
)
"""A sensitive service listed by an agency that did not mark it `sensitive`."""


def social_care_with_unmarked_camhs(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    """The local authority's record, listing `UNMARKED_CAMHS` beside its own involvements."""
    record = social_care_record(nhs, **overrides)
    return record.model_copy(update={"involvements": [*record.involvements, UNMARKED_CAMHS]})


def answered(
    *records: MatchedRecord,
    sources: Sequence[SourceConfig] = FULL_SOURCES,
    silent: Collection[str] = (),
) -> MatchResult:
    """The match stage's verdict linking `records`, every source having answered but those
    `silent`, which timed out."""
    answers = tuple(
        SourceAnswer(s.name, SourceStatus.TIMED_OUT if s.name in silent else SourceStatus.ANSWERED)
        for s in sources
    )
    return MatchResult(answers=answers, matched=records, unmatched={}, possible={})


async def decided(
    role: str,
    purpose: Purpose,
    matching: MatchResult,
    *,
    justification: str | None = None,
    sources: Sequence[SourceConfig] = FULL_SOURCES,
    brokers: Mapping[str, Contact] = NO_BROKERS,
) -> Release:
    """The decide stage's release of `matching` to a caller of `role` looking the child up by
    NHS number for `purpose`, under the plan the real policy makes for it."""
    query = LookupQuery(purpose=purpose, nhs_number=NHS, justification=justification)
    lookup = lookup_context(query, Caller("dev:X:u", "U", role, "X1"))
    plan = await make_plan(lookup, sources)
    return await decide(lookup, plan, matching, brokers)


def legacy_log(records: int, checkpoint_at: int) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """A log as gateways wrote it before whole-row hashes: rows of (audit_id, at, child_ref,
    subject, role, organisation, purpose, outcome, body, prev_hash, hash), each hashing only its
    body, and one MAC'd checkpoint (seq, hash, mac) after record `checkpoint_at`."""
    rows, previous, checkpoint = [], GENESIS, ()
    for i in range(records):
        r = audit_record(f"old{i}")
        a = r.access
        chain = link_hash(previous, r.body())
        access = (a.at.isoformat(), a.child_ref, a.subject, a.role, a.organisation, a.purpose)
        rows.append((r.audit_id, *access, r.outcome, r.body(), previous, chain))
        previous = chain
        if i + 1 == checkpoint_at:
            mac = legacy_checkpoint_mac(CHECKPOINT_KEY.legacy_macs[0], i + 1, chain)
            checkpoint = (i + 1, chain, mac)
    return rows, checkpoint


LEGACY_INSERT = (
    "INSERT INTO audit_log (audit_id, at, child_ref, subject, role, organisation, purpose, outcome,"
    " body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
