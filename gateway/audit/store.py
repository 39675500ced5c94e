"""The audit store's interface: what the gateway, the limits and the auditors' tools need of it.

Two stores implement it, and one test suite holds both to it (tests/audit): the embedded SQLite
file (gateway.audit.sqlite), and PostgreSQL (gateway.audit.postgres), shared by every gateway
process, chosen by CHILDLOOKUP_DATABASE_URL. Each keeps the notification outbox beside the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.audit.chain import Anchor, ChainReport
from gateway.audit.checkpoints import (
    Checkpoint,
    CheckpointKeys,
    ensure_checkpoint_key,
    key_id,
    load_private_key,
    load_public_keys,
    public_key_path,
)
from gateway.audit.migrations import require_current
from gateway.audit.outbox import Outbox, OutboxEntry, OutboxMessage
from gateway.audit.pages import LetterPosition, LogPosition
from gateway.audit.postgres import PostgresAuditStore, PostgresOutbox
from gateway.audit.pseudonyms import audit_key, derive_key, previous_audit_keys
from gateway.audit.segments import ArchivedSegment, SegmentRows
from gateway.audit.sqlite import SqliteAuditStore, SqliteOutbox, holds_audit_log
from gateway.audit.types import AuditRecord
from gateway.config import Mode, Settings


class AuditStore(Protocol):
    async def append(
        self, record: AuditRecord, notifications: Sequence[OutboxMessage] = ()
    ) -> None:
        """Return once the record, and the notifications it obliges, are durably committed;
        raise AuditUnavailable otherwise, in which case neither was."""
        ...

    def verify(self) -> ChainReport:
        """Check the whole hash chain and every checkpoint."""
        ...

    def pass_on(
        self,
        message_ids: Sequence[str],
        how: str,
        now: float,
        record: Callable[[OutboxEntry], AuditRecord],
    ) -> list[OutboxEntry]:
        """Close the dead letters among `message_ids`, as of `now`, as passed on by other means
        (`how`; gateway.audit.outbox.pass_on_statement), and append `record(closed)` for each,
        in one transaction: a close is made with its audit record or not at all, and a message
        sent again meanwhile (`resend`) is not closed. The messages closed, by id; messages not
        dead are left as they are. Raise AuditUnavailable when the log could not be written
        (nothing was closed), ValueError when this store's key did not sign the log's latest
        checkpoint (`CheckpointKeys.require_signer_of`: the records could complete one)."""
        ...

    def seal(self) -> Checkpoint | None:
        """Sign a checkpoint over the records written since the latest checkpoint (None when
        there are none), under the lock appends take, so checkpoints stay one chain; raise
        AuditUnavailable when the log cannot be written now."""
        ...

    def checkpoints(self, after_seq: int, limit: int) -> list[Checkpoint]:
        """Signed checkpoints with `seq` > `after_seq`, oldest first, at most `limit`: what the
        witnesses are sent, and compared with."""
        ...

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint, or None: where a witness the gateway has not heard from
        yet is asked to start."""
        ...

    def is_writable(self) -> bool:
        """For readiness probes: could a record be committed right now?"""
        ...

    def records(
        self,
        *,
        child_refs: Sequence[str] = (),
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records oldest first (by time, then `seq`), optionally for one child (by any of its
        pseudonyms, one per audit key), one user, or from a time: what `childlookup audit query`
        prints, read on from the last one's time (gateway.audit.queries.ORDERS)."""
        ...

    def positioned_records(
        self,
        *,
        child_refs: Sequence[str] = (),
        subject: str | None = None,
        since: datetime | None = None,
        after: LogPosition | None = None,
        limit: int = 1000,
    ) -> list[tuple[LogPosition, dict[str, Any]]]:
        """`records` in the log's order instead (`seq`, the order they were committed in), only
        those strictly after `after` when given, each with its position: what an auditor reads a
        page at a time, read on after its last entry (gateway.audit.pages)."""
        ...

    def notified_records(
        self, child_refs: Sequence[str], sources: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        """Records of this child (by any of its pseudonyms) whose owner notifications went to
        one of `sources`, newest first: what those agencies were told of (gateway.audit.history)."""
        ...

    def alerts(
        self,
        since: datetime | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, str | None]]:
        """The alerts feed, oldest first (as `records`), of `kinds` (None: all), from a time, at
        most `limit` (None: all):
        break-glass overrides and the
        attempts the policy refused (BREAK_GLASS, BREAK_GLASS_REFUSED), with each justification,
        for privacy officers; lookups refused at a usage limit (LIMIT_ALERTS), for information
        governance. Who, when, and which audit record to read: it names no child."""
        ...

    def positioned_alerts(
        self,
        since: datetime | None = None,
        kinds: Collection[str] | None = None,
        after: LogPosition | None = None,
        limit: int | None = None,
    ) -> list[tuple[LogPosition, dict[str, str | None]]]:
        """`alerts` in the log's order instead (as `positioned_records`), only those strictly
        after `after` when given, each with its position."""
        ...

    def children_seen(self, subject: str, since: datetime) -> dict[str, set[str]]:
        """The pseudonyms of the children a user looked up (and was answered about) since a time,
        each with the pseudonyms the records its lookups reached link it to: a child looked up by
        NHS number and by UPN is one child (gateway.limits.ChildrenSeen)."""
        ...

    def dead_letters(self, limit: int) -> list[OutboxEntry]:
        """Owner notifications given up on, and neither sent again nor closed as passed on, in
        the order they were given up in (by commit, not by the dispatchers' clocks), at most
        `limit`, without their payloads (gateway.audit.outbox.dead_letters_query)."""
        ...

    def positioned_dead_letters(
        self, limit: int, after: LetterPosition | None = None
    ) -> list[tuple[LetterPosition, OutboxEntry]]:
        """`dead_letters`, only those strictly after `after` when given, each with its position."""
        ...

    def close(self) -> None: ...

    # --- archiving (gateway.audit.archive) ------------------------------------------------------

    def archive_anchor(self) -> Anchor | None:
        """Where the live log begins: the end of the last segment archived, or None."""
        ...

    def archived(self) -> list[ArchivedSegment]:
        """Every segment archived from this log, oldest first."""
        ...

    def archivable(self, before: datetime, max_records: int | None = None) -> Checkpoint | None:
        """The checkpoint the next segment may end at, for records before `before`: the newest
        signed one before it, with no undelivered owner notification of a record up to it, and
        at most `max_records` records after the live log's anchor when given."""
        ...

    def segment_rows(
        self, start: Anchor | None, end: Checkpoint
    ) -> contextlib.AbstractContextManager[SegmentRows]:
        """Everything a segment from `start` to `end` holds, read in one snapshot."""
        ...

    def archive(self, segment: ArchivedSegment, start: Anchor | None) -> None:
        """Delete the segment's records (with their alerts, outbox receipts and every checkpoint
        but its last) and record it, in one transaction; ArchiveRefused if the log changed."""
        ...


def open_audit_store(
    settings: Settings, *, create: bool = True, sign: bool | None = None
) -> AuditStore:
    """The configured audit store: PostgreSQL when `database_url` is set, else the SQLite file.

    With `create=False` a missing SQLite log is an error rather than a new empty one: verifying a
    mistyped path must not pass. A PostgreSQL schema is never created here (`childlookup db
    upgrade` does that): one that is missing or at another revision is a ValueError saying so.
    `sign` (by default `create`): whether the store can sign checkpoints (`checkpoint_keys`)."""
    if settings.database_url is not None:
        require_current(settings.database_url, settings.database_schema)
        return PostgresAuditStore(
            settings.database_url,
            settings.database_schema,
            checkpoint_key=checkpoint_keys(settings, create=create, sign=sign),
        )
    path = settings.resolved_audit_db() if create else existing_audit_log(settings)
    return SqliteAuditStore(
        path,
        checkpoint_key=checkpoint_keys(settings, create=create, sign=sign),
        synchronous=settings.audit_synchronous,
    )


def existing_audit_log(settings: Settings) -> Path:
    """The SQLite audit log's path, when the file there is one; else a ValueError saying what is
    there. An empty file - a log wiped, or a path touched by mistake - is refused too: opened
    as a log it would be given a new empty schema and verify as intact."""
    path = settings.resolved_audit_db()
    if not path.exists():
        raise ValueError(f"no audit log at {path}")
    if not holds_audit_log(path):
        raise ValueError(
            f"cannot open the audit log at {path}: no audit log could be read there (the file is"
            " empty, damaged, locked or another kind of file)"
        )
    return path


def open_outbox(settings: Settings) -> Outbox:
    """The notification outbox beside the configured audit log (see `open_audit_store`)."""
    if settings.database_url is not None:
        return PostgresOutbox(settings.database_url, settings.database_schema)
    return SqliteOutbox(settings.resolved_audit_db())


def checkpoint_keys(
    settings: Settings, *, create: bool, sign: bool | None = None
) -> CheckpointKeys:
    """The keys a gateway signs checkpoints with (`sign`, by default `create`), or an auditor's
    tools check them with.

    Signing needs the private key (CHILDLOOKUP_AUDIT_CHECKPOINT_KEY_FILE); in dev mode a gateway
    (`create`) generates one in the state dir's `keys/`. An operator's command that writes to an
    existing log signs with the gateways' key and never makes one (`sign` without `create`): a
    checkpoint signed with a key made on the spot would fail `audit verify` for good. Checking
    needs only the public keys: those in CHILDLOOKUP_AUDIT_CHECKPOINT_PUBLIC_KEYS_FILE, else the
    public key beside the private key file, else the private key's own. The audit key checks MAC'd
    checkpoints of a log from before checkpoints were signed; reading without it, those alone
    cannot be checked."""
    private_path = settings.resolved_checkpoint_key_file()
    configured = settings.audit_checkpoint_public_keys_file
    if create if sign is None else sign:
        if create and settings.audit_checkpoint_key_file is None and settings.mode is Mode.DEV:
            ensure_checkpoint_key(private_path)
        elif not create and not private_path.exists():
            raise ValueError(
                f"no audit checkpoint key at {private_path}: run this with the gateways'"
                " environment (CHILDLOOKUP_AUDIT_CHECKPOINT_KEY_FILE, or CHILDLOOKUP_STATE_DIR or"
                " --state-dir the gateway's state directory)"
            )
        private = load_private_key(private_path)
        also = load_public_keys(configured) if configured is not None else []
        keys = CheckpointKeys.signing_with(private, also, _legacy_macs(settings, create=create))
        if configured is not None and key_id(private.public_key()) not in map(key_id, also):
            raise ValueError(
                f"{configured} does not hold the public key of the audit checkpoint key"
                f" {private_path}: checkpoints signed with it would not verify"
            )
        return keys
    public_path = configured or public_key_path(private_path)
    if public_path.exists():
        public = load_public_keys(public_path)
    elif configured is None and private_path.exists():
        public = [load_private_key(private_path).public_key()]
    else:
        raise ValueError(
            f"no audit key to check checkpoints with at {public_path}: set"
            " CHILDLOOKUP_AUDIT_CHECKPOINT_PUBLIC_KEYS_FILE, or CHILDLOOKUP_STATE_DIR (or"
            " --state-dir) to the gateway's state directory"
        )
    return CheckpointKeys.verifying_with(public, _legacy_macs(settings, create=False))


def _legacy_macs(settings: Settings, *, create: bool) -> tuple[bytes, ...]:
    """The keys MAC'd checkpoints were made with: from the audit key, or a key it replaced."""
    current: tuple[bytes, ...] = ()
    with contextlib.suppress(ValueError):  # reading with only the public keys
        current = (audit_key(settings, create=create),)
    return tuple(
        derive_key(k, "audit-checkpoint") for k in (*current, *previous_audit_keys(settings))
    )
