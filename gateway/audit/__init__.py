"""The audit side: the append-only, hash-chained log of every lookup, and what is written with it.

- `record` turns a lookup into its audit record; `auditor` is the pipeline's audit stage, which
  commits it (with the owner notifications it obliges) before any data is returned.
- `store` is the interface the gateway writes through; `sqlite` the embedded store, `postgres` the
  store shared by several gateway processes (its schema made by `migrations`).
- `chain` makes tampering evident, with `checkpoints` signed; `pseudonyms` names children
  without identifying them.
- `witnessing` seals the log and sends its checkpoints to witnesses outside the gateway's reach;
  `witness_check` compares the log with what they hold.
- `archive` moves the oldest records out of the live log into `segments`, files that verify on
  their own and join up with the log, whose first record then links to the anchor they leave.
- `outbox` and `notify` deliver owner notifications queued with the records; `trail` is the
  auditors' reading (one child's accesses, one user's, the override alerts), and `history` the
  owners' reading of the accesses they were notified of, each itself audited.
"""

from gateway.audit.archive import (
    ArchiveRefused,
    ArchiveReport,
    archive_files,
    archive_log,
    verify_archive,
    write_next_segment,
)
from gateway.audit.auditor import LookupAuditor
from gateway.audit.chain import Anchor, ChainReport
from gateway.audit.checkpoints import Checkpoint, CheckpointKeys, ensure_checkpoint_key
from gateway.audit.history import (
    ACCESS_HISTORY_VIEWED,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    OWNER_REVIEW,
    OWNING_FIELDS,
    AccessHistory,
    OwnerAccess,
    OwnerHistory,
    owning_sources,
)
from gateway.audit.migrations import downgrade_schema, upgrade_schema, writer_role
from gateway.audit.notify import NotificationDispatcher, RetryPolicy, owner_notifications
from gateway.audit.outbox import Outbox, OutboxEntry, OutboxMessage, OutboxState, OutboxStats
from gateway.audit.postgres import PostgresAuditStore, PostgresOutbox
from gateway.audit.pseudonyms import Pseudonymiser, audit_key, derive_key, previous_audit_keys
from gateway.audit.record import (
    HIDDEN,
    OPERATIONS,
    PASSED_ON,
    AuditedLookup,
    failure_record,
    lookup_record,
    passed_on_record,
)
from gateway.audit.segments import ArchivedSegment, SegmentReport, verify_segment
from gateway.audit.sqlite import SqliteAuditStore, SqliteOutbox
from gateway.audit.store import (
    AuditStore,
    checkpoint_keys,
    existing_audit_log,
    open_audit_store,
    open_outbox,
)
from gateway.audit.trail import (
    ALERTS_VIEWED,
    AUDIT_REVIEW,
    UNDELIVERED_VIEWED,
    USER_TRAIL_VIEWED,
    AuditTrail,
)
from gateway.audit.types import (
    BREAK_GLASS,
    BREAK_GLASS_ALERTS,
    BREAK_GLASS_REFUSED,
    DISTINCT_CHILDREN_CAP,
    LIMIT_ALERTS,
    ORGANISATION_RATE_LIMITED,
    RATE_LIMITED,
    REFUSED,
    Access,
    AuditAmbiguity,
    AuditCandidates,
    AuditField,
    AuditMatch,
    AuditNotice,
    AuditReading,
    AuditRecord,
    AuditSource,
    AuditUnavailable,
    utc_now,
)
from gateway.audit.witness_check import WitnessComparison, compare_with_witnesses
from gateway.audit.witnessing import (
    WITNESSING_LOCK_FILE,
    Witness,
    WitnessDispatcher,
    configured_witnesses,
)

__all__ = [
    "ACCESS_HISTORY_VIEWED",
    "ALERTS_VIEWED",
    "AUDIT_REVIEW",
    "BREAK_GLASS",
    "BREAK_GLASS_ALERTS",
    "BREAK_GLASS_REFUSED",
    "DEFAULT_LIMIT",
    "DISTINCT_CHILDREN_CAP",
    "HIDDEN",
    "LIMIT_ALERTS",
    "MAX_LIMIT",
    "OPERATIONS",
    "ORGANISATION_RATE_LIMITED",
    "OWNER_REVIEW",
    "OWNING_FIELDS",
    "PASSED_ON",
    "RATE_LIMITED",
    "REFUSED",
    "UNDELIVERED_VIEWED",
    "USER_TRAIL_VIEWED",
    "WITNESSING_LOCK_FILE",
    "Access",
    "AccessHistory",
    "Anchor",
    "ArchiveRefused",
    "ArchiveReport",
    "ArchivedSegment",
    "AuditAmbiguity",
    "AuditCandidates",
    "AuditField",
    "AuditMatch",
    "AuditNotice",
    "AuditReading",
    "AuditRecord",
    "AuditSource",
    "AuditStore",
    "AuditTrail",
    "AuditUnavailable",
    "AuditedLookup",
    "ChainReport",
    "Checkpoint",
    "CheckpointKeys",
    "LookupAuditor",
    "NotificationDispatcher",
    "Outbox",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxState",
    "OutboxStats",
    "OwnerAccess",
    "OwnerHistory",
    "PostgresAuditStore",
    "PostgresOutbox",
    "Pseudonymiser",
    "RetryPolicy",
    "SegmentReport",
    "SqliteAuditStore",
    "SqliteOutbox",
    "Witness",
    "WitnessComparison",
    "WitnessDispatcher",
    "archive_files",
    "archive_log",
    "audit_key",
    "checkpoint_keys",
    "compare_with_witnesses",
    "configured_witnesses",
    "derive_key",
    "downgrade_schema",
    "ensure_checkpoint_key",
    "existing_audit_log",
    "failure_record",
    "lookup_record",
    "open_audit_store",
    "open_outbox",
    "owner_notifications",
    "owning_sources",
    "passed_on_record",
    "previous_audit_keys",
    "upgrade_schema",
    "utc_now",
    "verify_archive",
    "verify_segment",
    "write_next_segment",
    "writer_role",
]
