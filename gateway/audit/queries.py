"""Queries both audit stores run alike, with `%s` placeholders (the SQLite store turns them into
its `?`): records by child, user or time; and archiving (gateway.audit.archive)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Final

from gateway.audit.types import AuditRecord


def of_child(marks: str, *, postgres: bool) -> str:
    """The condition that picks a child's records: looked up by the pseudonyms `marks` stands for,
    or reaching records that hold them (`audit_log_link`: a lookup by UPN or demographics of a
    child then looked for by NHS number). Each side is found through its index. PostgreSQL reads
    the whole log for an `IN (SELECT ...)` beside an OR; given the ids as an array computed once,
    it ORs two index scans."""
    linked = f"SELECT audit_id FROM audit_log_link WHERE child_ref IN ({marks})"  # noqa: S608
    reaching = f"= ANY(ARRAY({linked}))" if postgres else f"IN ({linked})"
    return f"(child_ref IN ({marks}) OR audit_id {reaching})"


def records_query(
    *,
    child_refs: Sequence[str],
    subject: str | None,
    since: object | None,
    after: int | None = None,
    limit: int,
    postgres: bool = False,
    by_time: bool = False,
) -> tuple[str, Sequence[object]]:
    """`SELECT at, seq, body ...` with `%s` placeholders and its parameters, in the log's order
    (`seq`, commit order: gateway.audit.pages) or, `by_time`, oldest first (time, then `seq`);
    a child by any of its pseudonyms (`child_refs`: one per audit key, current and previous),
    whether looked up by it or reaching it; from `since` (a time, in the form the store's driver
    compares times in) and strictly after the `seq` `after` when given (in the log's order)."""
    conditions: list[tuple[str, Sequence[object]]] = []
    if child_refs:
        marks = ", ".join(["%s"] * len(child_refs))
        conditions.append((of_child(marks, postgres=postgres), (*child_refs, *child_refs)))
    for column, value in (("subject = %s", subject), ("at >= %s", since), (AFTER, after)):
        if value is not None:
            conditions.append((column, (value,)))
    statement = "SELECT at, seq, body FROM audit_log"
    if conditions:
        statement += " WHERE " + " AND ".join(column for column, _ in conditions)
    params = [value for _, values in conditions for value in values]
    assert after is None or not by_time, "a position is in the log's order"
    return statement + f" ORDER BY {ORDERS[by_time]} LIMIT %s", (*params, limit)


ORDERS: Final = {False: "seq", True: "at, seq"}
"""The orders a log's records or alerts are read in. The log's own (`seq`, commit order), for a
reading read on after its last entry (gateway.audit.pages): `at` is the writing gateway's clock,
and one committed after a page was read may be stamped before its last entry. By time, then
`seq`, for a reading read on from the last time it gave (`since`, as `childlookup audit` is):
from a time, every entry already written at or after it is read, wherever it stands in the log."""


AFTER: Final = "seq > %s"
"""Strictly after a position in the log's order (gateway.audit.pages.LogPosition.seq)."""


def alerts_query(kinds: str | None, *, after: bool, by_time: bool = False) -> str:
    """`SELECT at, seq, kind, ...` of the alerts feed, in the log's order (an alert's `seq` is
    taken in its record's commit) or `by_time` (`ORDERS`), with `%s` placeholders for: the time
    it starts at; the kinds when `kinds` (the store's condition on them) is given; the `seq` it
    reads on after (`AFTER`, in the log's order) when `after`; then the limit."""
    assert not (after and by_time), "a position is in the log's order"
    conditions = ["at >= %s", *([] if kinds is None else [kinds]), *([AFTER] if after else [])]
    return (
        "SELECT at, seq, kind, audit_id, subject, role, organisation, justification"  # noqa: S608
        f" FROM audit_alert WHERE {' AND '.join(conditions)}"
        f" ORDER BY {ORDERS[by_time]} LIMIT %s"
    )


ALERT_KEYS: Final = ("kind", "audit_id", "subject", "role", "organisation", "justification")
"""The alert's fields after its time and `seq`, in `alerts_query`'s order."""


LINK_INSERT: Final = "INSERT INTO audit_log_link (audit_id, child_ref) VALUES (%s, %s)"


def link_rows(records: Sequence[AuditRecord]) -> list[tuple[str, str]]:
    """`audit_log_link`'s rows for `records`: each child a lookup reached other than the one it
    was looked up by (`AuditRecord.linked_refs`, in the hash-chained body too)."""
    return [(r.audit_id, ref) for r in records for ref in r.linked_refs]


ANSWERED: Final = (
    "FOUND",
    "NOT_FOUND",
    "NOT_FOUND_INCOMPLETE",
    "UNAVAILABLE",
    "AMBIGUOUS",
    "HIDDEN",
)
"""Outcomes of lookups whose child counts against the user's daily cap: every one admitted and
run, whatever it found."""

AUDIT_TRAIL_VIEWED: Final = "AUDIT_TRAIL_VIEWED"
"""The outcome an auditor's reading of one child's trail is recorded with (gateway.audit.trail):
admitted under the same limits as a lookup, its child counts against the daily cap as one looked
up does."""

CHILDREN_SEEN_QUERY: Final = (
    "SELECT DISTINCT child_ref, {linked} FROM audit_log"  # noqa: S608
    " WHERE subject = %s AND at >= %s"
    " AND outcome IN ("
    + ", ".join(f"'{outcome}'" for outcome in (*ANSWERED, AUDIT_TRAIL_VIEWED))
    + ")"
    " AND child_ref IS NOT NULL"
)
"""A user's answered lookups and readings of a child's trail since a time, for `children_seen`:
each pseudonym looked up or read, with the JSON text of the pseudonyms its records linked it to
(`{linked}`: the store's way of reading `linked_refs` from the body where the record says the NHS
number was released, else NULL - always, for a reading: see gateway.limits.shows_nhs_number), each
pair once however often the user looked the child up. Read from the body rather than by joining
`audit_log_link`, which has no index by lookup."""


def children_seen(rows: Iterable[tuple[str, str | None]]) -> dict[str, set[str]]:
    """From CHILDREN_SEEN_QUERY's rows: each pseudonym the lookups named, with the pseudonyms of
    the children the records they reached link it to (`AuditRecord.linked_refs`)."""
    seen: dict[str, set[str]] = {}
    for child_ref, linked in rows:
        seen.setdefault(child_ref, set()).update(json.loads(linked) if linked else ())
    return seen


# --- archiving ------------------------------------------------------------------------------------

ARCHIVE_COLUMNS: Final = "first_seq, last_seq, records, head, checkpoint, file, sha256, at"
"""`audit_archive`: one row per segment archived, whose `last_seq` checkpoint stays in the live log
as its anchor; `records` counts the log up to and including `last_seq`."""
ANCHOR_QUERY: Final = (
    "SELECT last_seq, records, head, checkpoint, file FROM audit_archive"
    " ORDER BY last_seq DESC LIMIT 1"
)
LATEST_SIGNED_QUERY: Final = (
    "SELECT {columns} FROM audit_checkpoint WHERE signature IS NOT NULL ORDER BY seq DESC LIMIT 1"
)
"""The newest signed checkpoint (`columns`: SIGNED_CHECKPOINT_COLUMNS): what the next one links
to, and where a witness is asked to start."""
UNSENT_QUERY: Final = (
    "SELECT min(l.seq) FROM notification_outbox o JOIN audit_log l ON l.audit_id = o.audit_id"
    " WHERE o.state <> 'DELIVERED'"
)
"""The first record with an owner notification still pending or dead-lettered: archiving stops
before it, so no notification the owner has not had leaves the live log."""
ARCHIVABLE_QUERY: Final = (
    "SELECT {columns} FROM audit_checkpoint WHERE signature IS NOT NULL AND at < %s"
    " AND seq > %s AND seq < %s AND seq < (SELECT max(seq) FROM audit_log)"
    " ORDER BY seq DESC LIMIT 1"
)
"""The newest signed checkpoint before a time, after the anchor and before the first unsent
notification's record: where the next segment may end (`columns`: SIGNED_CHECKPOINT_COLUMNS).
The newest record always stays live: the next one is chained onto it."""
_UP_TO: Final = "audit_id IN (SELECT audit_id FROM audit_log WHERE seq <= %s)"
SEGMENT_QUERIES: Final = (
    "SELECT {checkpoints} FROM audit_checkpoint WHERE seq <= %s ORDER BY seq",
    f"SELECT {{alerts}} FROM audit_alert WHERE {_UP_TO} ORDER BY seq",  # noqa: S608
    "SELECT message_id, audit_id, source, state FROM notification_outbox"  # noqa: S608
    f" WHERE {_UP_TO} ORDER BY created_at, message_id",
)
"""A segment's checkpoints, alerts and outbox receipts, up to a sequence number."""
SEGMENT_RECORDS: Final = "SELECT {records} FROM audit_log WHERE seq <= %s ORDER BY seq"
ARCHIVE_DELETES: Final = (
    f"DELETE FROM audit_log_link WHERE {_UP_TO}",  # noqa: S608
    f"DELETE FROM audit_alert WHERE {_UP_TO}",  # noqa: S608
    f"DELETE FROM notification_outbox WHERE {_UP_TO}",  # noqa: S608
    "DELETE FROM audit_log WHERE seq <= %s",
    "DELETE FROM audit_checkpoint WHERE seq < %s",
)
"""Archiving's deletions, each given the segment's last sequence number: its checkpoint stays."""
ARCHIVE_INSERT: Final = (
    f"INSERT INTO audit_archive ({ARCHIVE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
)
