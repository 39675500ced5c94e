"""Tamper evidence for the audit log: a hash chain over every whole row, and signed checkpoints.

Each record stores a hash of its whole row - every column a query, a report or a trail reads
(`audit_id`, `at`, `child_ref`, `subject`, `role`, `organisation`, `purpose`, `outcome`, `body`)
and the alerts written with it - chained to the previous record's hash. Editing any of those
columns, deleting or inserting an alert, or deleting, inserting or reordering a record breaks the
chain there, even for someone who can bypass the append-only triggers (by editing the SQLite file,
or as PostgreSQL's superuser). Someone who also recomputes every later hash is caught by the
signed checkpoints (gateway.audit.checkpoints), which they cannot re-sign without the private key,
and which cannot be deleted from the middle, or from the end while the records they covered stay.

The notification outbox changes as messages are delivered, so it is not chained itself; it is
derived from chained records instead. Each record's body lists the owner notifications it queued
(`notified`: message id and agency), so the outbox must hold exactly those messages - no fewer, no
more, none moved to another agency or record - whatever state their delivery is in. Likewise the
children a lookup reached beyond the one it named (`linked_refs` in the body) are indexed in
`audit_log_link` for the child's trail and history, which must hold exactly those rows: a link
deleted would hide the lookup from the trail of the child it reached.

Record hash, format 2 (`format` column 2): SHA-256, as hex, of the UTF-8 of

    "childlookup audit record v2\n" + prev_hash
      + F(audit_id) + F(at) + F(child_ref) + F(subject) + F(role) + F(organisation) + F(purpose)
      + F(outcome) + F(body)
      + "<number of alerts>#" + for each alert (in the order written):
          F(kind) + F(at) + F(subject) + F(role) + F(organisation) + F(justification)

where F(None) is "-" and F(text) is "<length in characters>:<text>", so no two rows encode alike.
`at` is the column's text in SQLite, and in PostgreSQL the time in UTC to the microsecond
(`2026-11-21T12:00:00.000000+00:00`). Format 1, the rows of a log written before whole-row
hashes, hashed only `prev_hash + "\n" + body`; they verify under that rule up to the first
format-2 record, and none may follow it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.audit.checkpoints import GENESIS, Checkpoint, CheckpointKeys, legacy_checkpoint_mac
from gateway.audit.types import AuditRecord

ROW_FORMAT: Final = 2
"""The record format new rows are written in."""
_ROW_HEADER: Final = "childlookup audit record v2\n"

Text = str | None


def link_hash(previous: str, body: str) -> str:
    """The chain hash of a format-1 record: only its body bound to everything before it."""
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def _is_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _field(value: Text) -> str:
    return "-" if value is None else f"{len(value)}:{value}"


def row_hash(previous: str, columns: Sequence[Text], alerts: Sequence[Sequence[Text]] = ()) -> str:
    """The chain hash of a format-2 record: `columns` are (audit_id, at, child_ref, subject, role,
    organisation, purpose, outcome, body), `alerts` each (kind, at, subject, role, organisation,
    justification)."""
    parts = [_ROW_HEADER, previous, *map(_field, columns), f"{len(alerts)}#"]
    parts.extend(_field(value) for alert in alerts for value in alert)
    return hashlib.sha256("".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """Where a log begins when the records before it were archived (gateway.audit.archive): the
    signed checkpoint the archived records end at, which stays in the live log as its first, and
    the segment file that holds them. The live log's first record links to `head`, its counts go
    on from `records`, and its next checkpoint names `checkpoint` (that checkpoint's digest) as
    `prev`; a segment after the first starts from the anchor of the one before."""

    seq: int
    records: int
    """Records in the log up to and including `seq`, archived ones included."""
    head: str
    checkpoint: str
    file: str = ""


@dataclass(frozen=True)
class ChainReport:
    """The verdict on a log: ok, or the first record (by sequence number) where it goes wrong."""

    ok: bool
    records: int
    checkpoints: int
    first_bad_seq: int | None = None
    first_bad_audit_id: str | None = None
    problem: str | None = None
    last_checkpoint: Checkpoint | None = None
    """The newest signed checkpoint, when the log verified: what a witness would compare."""
    archived: Anchor | None = None
    """Where the verified log began, when the records before it were archived."""

    def describe(self) -> str:
        if self.ok:
            intact = (
                f"audit log intact: {self.records} records, {self.checkpoints} checkpoints verified"
            )
            if self.archived is None:
                return intact
            start = self.archived
            return (
                f"{intact}; records 1..{start.seq} archived ({start.records} records, in"
                f" {start.file})"
            )
        where = f"record #{self.first_bad_seq}" if self.first_bad_seq is not None else "the log"
        audit_id = f" (audit id {self.first_bad_audit_id})" if self.first_bad_audit_id else ""
        return f"audit log TAMPERED at {where}{audit_id}: {self.problem}"


ChainRow = tuple[int, int, str, str, Text, str, str, str, str, str, str, str, str]
"""A record as the chain sees it: (seq, format, audit_id, at, child_ref, subject, role,
organisation, purpose, outcome, body, prev_hash, hash)."""
AlertRow = tuple[str, str, str, str, str, str, Text]
"""An alert: (audit_id, kind, at, subject, role, organisation, justification)."""
CheckpointRow = tuple[int, str, str, Text, int | None, Text, Text, Text]
"""A checkpoint: (seq, hash, at, mac, records, prev, key, signature); signed ones have no mac,
MAC'd ones (format 1) nothing after it."""

RECORD_COLUMNS: Final = (
    "seq, format, audit_id, {at}, child_ref, subject, role, organisation, purpose, outcome, body,"
    " prev_hash, hash"
)
ALERT_COLUMNS: Final = "audit_id, kind, {at}, subject, role, organisation, justification"
CHECKPOINT_COLUMNS: Final = "seq, hash, {at}, mac, records, prev, key_id, signature"
SIGNED_CHECKPOINT_COLUMNS: Final = "seq, records, hash, {at}, prev, key_id, signature"
"""A signed checkpoint's columns in the order of `Checkpoint`'s fields."""
NoticeRow = tuple[str, str, str]
"""A message in the notification outbox: (message_id, audit_id, source)."""
NOTICE_QUERY: Final = "SELECT message_id, audit_id, source FROM notification_outbox"
LinkRow = tuple[str, str]
"""A child a record reached beyond the one it named: (audit_id, child_ref)."""
LINK_QUERY: Final = "SELECT audit_id, child_ref FROM audit_log_link"


def verify_chain(
    records: Iterable[ChainRow],
    alerts: Iterable[AlertRow],
    checkpoints: Iterable[CheckpointRow],
    keys: CheckpointKeys,
    every: int,
    notices: Iterable[NoticeRow] = (),
    start: Anchor | None = None,
    links: Iterable[LinkRow] | None = None,
) -> ChainReport:
    """Walk the whole chain in sequence order, then check every checkpoint against it.

    All three come from whichever store holds the log, `records` in sequence order; records are
    read one at a time, so they may stream a log larger than memory (alerts and checkpoints,
    about one per hundred records, are held). Read `alerts` and `checkpoints` in the same snapshot
    as `records`, or before them: a checkpoint written after the records were read would look like
    records cut off. `every` is the checkpoint interval the log was written with. `notices` are
    the outbox's messages, which must be exactly those the records say they queued. `start` is
    where the log begins when the records before it were archived (None: at the first record).
    `links`, the live log's index of the children records reached, must be exactly what the
    records say (None: not checked, for an archived segment, which keeps only the records).

    Raises ValueError when the log has MAC checkpoints (from before signed ones) and `keys` has no
    MAC key to check them with."""
    marks = sorted(checkpoints)
    marked = {mark[0] for mark in marks}
    by_record: dict[str, list[AlertRow]] = {}
    for alert in alerts:
        by_record.setdefault(alert[0], []).append(alert)
    queued: dict[str, set[tuple[str, str]]] = {}
    for message_id, notice_audit_id, source in notices:
        queued.setdefault(notice_audit_id, set()).add((message_id, source))
    reached: dict[str, set[str]] = {}
    for link_audit_id, linked_ref in links or ():
        reached.setdefault(link_audit_id, set()).add(linked_ref)
    expected_prev = GENESIS if start is None else start.head
    heads: dict[int, tuple[str, int]] = {}
    last_seq = 0 if start is None else start.seq
    first_signed_seq: int | None = None
    count = 0 if start is None else start.records
    for (
        seq,
        fmt,
        audit_id,
        at,
        child_ref,
        subject,
        role,
        org,
        purpose,
        outcome,
        body,
        prev,
        h,
    ) in records:
        count += 1
        if prev != expected_prev:
            problem = "the chain is broken here: a record before it was deleted, inserted or moved"
            return _bad(count, seq, audit_id, problem)
        written = by_record.pop(audit_id, [])
        if fmt == ROW_FORMAT:
            if first_signed_seq is None:
                first_signed_seq = seq
            columns = (audit_id, at, child_ref, subject, role, org, purpose, outcome, body)
            with_it = [a[1:] for a in written]
            if not all(map(_is_text, (*columns, *(v for a in with_it for v in a)))):
                # Only an archived segment's JSON can hold another type: a column is text.
                problem = "a value of this record, or of an alert with it, is not text: edited"
                return _bad(count, seq, audit_id, problem)
            if row_hash(prev, columns, with_it) != h:
                problem = "this record, or an alert written with it, was edited or deleted"
                return _bad(count, seq, audit_id, problem)
        elif fmt == 1 and first_signed_seq is None and start is None:
            # Format 1 only before the first format-2 record, and never after an archive's
            # anchor: a signed checkpoint, which only a log of format-2 records has.
            if link_hash(prev, body) != h:
                return _bad(count, seq, audit_id, "this record was edited after it was written")
        else:
            problem = f"a record in format {fmt} where only format {ROW_FORMAT} may be"
            return _bad(count, seq, audit_id, problem)
        try:
            notified = _notified(body)
            linked = set() if links is None else _linked(body)
        except (ValueError, LookupError, TypeError, AttributeError):
            # Its hash holds, so it was chained with a recomputed hash: no gateway wrote it.
            problem = "this record's body is not one a gateway writes: forged"
            return _bad(count, seq, audit_id, problem)
        if notified != queued.pop(audit_id, set()):
            problem = (
                "the owner notifications in the outbox are not those this record queued:"
                " one was deleted or inserted"
            )
            return _bad(count, seq, audit_id, problem)
        if links is not None and linked != reached.pop(audit_id, set()):
            problem = (
                "the children this record reached are not those its links index: one was"
                " deleted or inserted"
            )
            return _bad(count, seq, audit_id, problem)
        if seq in marked:
            heads[seq] = (h, count)
        expected_prev = h
        last_seq = seq
    legacy = [m for m in marks if m[7] is None]
    signed = [m for m in marks if m[7] is not None]
    for seq, chain_hash, _, mac, *_ in legacy:
        if first_signed_seq is not None and seq >= first_signed_seq:
            problem = "a MAC'd checkpoint after the log moved to signed checkpoints"
            return _bad(count, seq, None, problem)
        if not keys.legacy_macs:
            raise ValueError(
                "this log has checkpoints from before they were signed: checking them needs the"
                " audit key (CHILDLOOKUP_AUDIT_KEY, or audit.key in the state dir)"
            )
        made = {legacy_checkpoint_mac(key, seq, chain_hash) for key in keys.legacy_macs}
        if mac is None or mac not in made:
            return _bad(count, seq, None, "a checkpoint's MAC is wrong: forged or edited")
        if seq > last_seq:
            return _bad(count, seq, None, "records after the last intact one were removed")
        if heads.get(seq, ("", 0))[0] != chain_hash:
            return _bad(count, seq, None, "the chain no longer matches a MAC'd checkpoint")
    if start is not None and (
        not signed
        or signed[0][0] != start.seq
        or signed_checkpoint(signed[0]).digest() != start.checkpoint
    ):
        problem = (
            "the checkpoint the archived records end at (the log's anchor) was deleted or replaced"
        )
        return _bad(count, start.seq, None, problem)
    previous = GENESIS
    for row in signed:
        seq, chain_hash = row[0], row[1]
        checkpoint = signed_checkpoint(row)
        if wrong := keys.problem_with(checkpoint):
            return _bad(count, seq, None, wrong)
        if start is not None and seq == start.seq:
            # The anchor: its records are archived, so the chain of checkpoints starts here.
            previous = checkpoint.digest()
            continue
        if checkpoint.prev != previous:
            problem = "the checkpoint before this one was deleted or replaced (its link is broken)"
            return _bad(count, seq, None, problem)
        if seq > last_seq:
            return _bad(count, seq, None, "records after the last intact one were removed")
        if heads.get(seq) != (chain_hash, checkpoint.records):
            return _bad(count, seq, None, "the chain no longer matches a signed checkpoint")
        previous = checkpoint.digest()
    for audit_id, orphans in by_record.items():
        problem = f"an alert ({orphans[0][1]}) names a record that is not in the log"
        return _bad(count, None, audit_id, problem)
    for audit_id in queued:
        problem = "an owner notification in the outbox names a record that is not in the log"
        return _bad(count, None, audit_id, problem)
    for audit_id in reached:
        problem = "a link to a child names a record that is not in the log"
        return _bad(count, None, audit_id, problem)
    if first_signed_seq is not None:
        # A checkpoint is written whenever a commit crosses a multiple of `every`.
        covered = signed[-1][0] if signed else first_signed_seq - 1
        if last_seq // every > covered // every:
            problem = (
                f"checkpoints after record #{covered} were deleted: one is due by record"
                f" #{(covered // every + 1) * every}"
            )
            return _bad(count, last_seq, None, problem)
    if not signed:
        # Before the move to signed checkpoints, a MAC'd one was written whenever a commit crossed
        # a multiple of `every` too: format-1 records running past one with none are a log
        # rewritten in the old, unkeyed format, its checkpoints deleted - not one a gateway wrote.
        # (A signed checkpoint pins every record before it, whatever their format: a segment, or
        # a live log since its move, needs no more; only a log with none is open to the rewrite.)
        last_legacy = last_seq if first_signed_seq is None else first_signed_seq - 1
        covered = legacy[-1][0] if legacy else 0
        if last_legacy // every > covered // every:
            problem = (
                f"MAC'd checkpoints after record #{covered} were deleted: one is due by record"
                f" #{(covered // every + 1) * every}"
            )
            return _bad(count, last_legacy, None, problem)
    last = signed_checkpoint(signed[-1]) if signed else None
    return ChainReport(True, count, len(marks), last_checkpoint=last, archived=start)


def _notified(body: str) -> set[tuple[str, str]]:
    """The (message id, source) of each owner notification a record says it queued: the outbox
    is derived from the chained records, so its rows must be exactly these."""
    if '"notified":[{' not in body:  # most lookups notify nobody: no need to parse them
        return set()
    notices = json.loads(body)["notified"]
    return {(notice["message_id"], notice["source"]) for notice in notices}


def _linked(body: str) -> set[str]:
    """The pseudonyms of the children a record says it reached beyond the one it named."""
    if '"linked_refs":["' not in body:  # most lookups name the child they reach
        return set()
    return set(json.loads(body)["linked_refs"])


def signed_checkpoint(row: CheckpointRow) -> Checkpoint:
    seq, chain_hash, at, _, records, prev, key, signature = row
    return Checkpoint(seq, records or 0, chain_hash, at, prev or "", key or "", signature or "")


def _bad(records: int, seq: int | None, audit_id: str | None, problem: str) -> ChainReport:
    return ChainReport(False, records, 0, seq, audit_id, problem)


def record_row(record: AuditRecord, at: str) -> tuple[list[Text], list[list[Text]]]:
    """A record's columns and its alerts' (see `row_hash`), `at` spelt as the store keeps it."""
    a = record.access
    columns: list[Text] = [
        record.audit_id,
        at,
        a.child_ref,
        a.subject,
        a.role,
        a.organisation,
        a.purpose,
        record.outcome,
        record.body(),
    ]
    alert = record.alert
    alerts = (
        [] if alert is None else [[alert, at, a.subject, a.role, a.organisation, a.justification]]
    )
    return columns, alerts


def alert_rows(records: Iterable[AuditRecord], *, time_as_text: bool) -> list[tuple[object, ...]]:
    """The `audit_alert` rows of those records that raise an alert, as both stores insert them:
    (at, kind, audit_id, subject, role, organisation, justification); `at` as ISO text for
    SQLite, a datetime for PostgreSQL."""
    return [
        (
            r.access.at.isoformat() if time_as_text else r.access.at,
            r.alert,
            r.audit_id,
            r.access.subject,
            r.access.role,
            r.access.organisation,
            r.access.justification,
        )
        for r in records
        if r.alert is not None
    ]
