"""The notification outbox: owner notifications waiting to be delivered, kept in the audit database.

A notification is queued in the same transaction as the audit record of the lookup that caused it
(see `AuditStore.append`), so a lookup that was audited always has its notifications queued and a
lookup whose audit failed has none. Delivery (gateway.audit.notify) happens later, off the request
path, and survives a dead receiver and a restarted gateway because the queue is on disk.

Unlike the audit tables this one changes: attempts are counted, and a delivered message's payload
(who looked at which of the agency's records) is erased at once, since nothing about a child should
outlive its need. The row itself stays, without personal data, as the receipt that the owner was
told. A message that could not be delivered in time is dead-lettered with its payload kept, since
the owner still has to be told some other way.

Which messages exist is not for anyone to change, though: each lookup's audit record lists the
notifications it queued, so `audit verify` finds a message deleted, invented or moved to another
agency (gateway.audit.chain).

`Outbox` is the delivering side's interface; the store holding the audit log implements it
(gateway.audit.sqlite, gateway.audit.postgres) and `gateway.audit.store.open_outbox` opens the
configured one. Times are seconds since the epoch: they must mean the same thing to every process.
What no clock gives is the order messages were given up in, which auditors read the dead letters
in: each gateway's dispatcher gives up by its own clock, so that order is a counter of its own
(`GIVEN_UP_ORDER`), taken in the commit that gives a message up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol


class OutboxState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


@dataclass(frozen=True)
class OutboxMessage:
    """One notification for one agency: the exact body to sign and send, and where it stands."""

    message_id: str
    source: str
    audit_id: str
    payload: bytes
    created_at: float
    attempts: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """A row as an operator or a test sees it; `payload` is None once delivered."""

    message_id: str
    audit_id: str
    source: str
    state: OutboxState
    attempts: int
    last_error: str | None
    payload: bytes | None
    queued_at: float
    """When it was queued with its lookup's audit record, or queued again (`resend`)."""
    finished_at: float | None
    """When it was delivered or given up on; None while pending."""
    passed_on: str | None
    """How an operator said the agency was told by other means, for a dead letter closed so
    (`pass_on_statement`); None for everything else. Kept until the row is archived (a segment's
    receipt is the message, agency and state only, gateway.audit.segments); the close's audit
    record keeps it for good."""


@dataclass(frozen=True)
class OutboxStats:
    """The queue at a glance, for metrics (gateway.metrics): counts and a time, never a message."""

    pending: int
    oldest_pending_at: float | None
    """When the oldest pending message was queued (seconds since the epoch); None if none is."""
    dead: int


STATS_QUERY = (
    "SELECT SUM(CASE WHEN state = 'PENDING' THEN 1 ELSE 0 END),"
    " MIN(CASE WHEN state = 'PENDING' THEN created_at END),"
    " SUM(CASE WHEN state = 'DEAD' THEN 1 ELSE 0 END)"
    " FROM notification_outbox WHERE state IN ('PENDING', 'DEAD')"
)
"""`OutboxStats` in one statement, the same in SQLite and PostgreSQL; the state index serves it."""


ENTRY_COLUMNS = (
    "message_id, audit_id, source, state, attempts, last_error, {payload}, created_at, finished_at,"
    " passed_on"
)
"""An `OutboxEntry`'s columns, in its order (`outbox_entries`); `{payload}` is `payload`, or
`NULL` where the message must not be read."""


GIVEN_UP_ORDER: Final = (
    "INSERT INTO outbox_given_up (id, last_seq) VALUES (1, 1)"
    " ON CONFLICT (id) DO UPDATE SET last_seq = outbox_given_up.last_seq + 1"
)
"""The next place in the order notifications are given up on, taken in the transaction that gives
one up (`OutboxRows.dead`): its row stays locked to that commit (PostgreSQL's row lock, SQLite's
write lock), so the next is taken only once this one is committed - the places follow commit
order, and a reader that saw one has seen every place before it. Never taken back: the row holds
the last one given, whatever is passed on, sent again or archived."""
GIVE_UP: Final = (
    "UPDATE notification_outbox SET state = 'DEAD', last_error = %s, finished_at = %s,"
    " given_up_seq = (SELECT last_seq FROM outbox_given_up WHERE id = 1)"
    " WHERE message_id = %s AND state = 'PENDING'"
)
"""Give a message up (parameters: the error, the time, its id), in its place (`GIVEN_UP_ORDER`)."""


def dead_letters_query(*, after: bool) -> str:
    """`given_up_seq` and the ENTRY_COLUMNS of the dead letters, in the order they were given up
    on, at most a number (the last parameter), never their payloads: what an auditor is shown of
    them names the lookup and the agency, never what the agency was to be told. With `after`,
    only those strictly after a place in that order (gateway.audit.pages.LetterPosition, the first
    parameter). Not by when they were given up on: each gateway's dispatcher gives up by its own
    clock, and one given up after an auditor read the list could be stamped before its last."""
    position = " AND given_up_seq > %s" if after else ""
    return (
        f"SELECT given_up_seq, {ENTRY_COLUMNS.format(payload='NULL')}"  # noqa: S608
        f" FROM notification_outbox WHERE state = 'DEAD'{position}"
        " ORDER BY given_up_seq LIMIT %s"
    )


def positioned_letters(rows: Sequence[Sequence[Any]]) -> list[tuple[int, OutboxEntry]]:
    """The dead letters, each with its place, from rows of `dead_letters_query`."""
    places = [row[0] for row in rows]
    return list(zip(places, outbox_entries([row[1:] for row in rows]), strict=True))


def pass_on_statement(count: int) -> str:
    """Close `count` dead letters (parameters: now, how, then their ids) because an operator told
    their agency by other means (`how`: who told whom, and how) and they will not be sent - an
    agency that left the federation, an endpoint not coming back; returns their ENTRY_COLUMNS.
    Each is then delivered, as far as the queue is concerned: its payload erased, since nothing
    about a child outlives its need, the row kept as the receipt with `how` on it. Messages not
    dead are left as they are. Run only by the audit store, which records each close in the same
    transaction (`AuditStore.pass_on`)."""
    marks = ", ".join(["%s"] * count)
    # Only placeholders are joined in: the values are parameters.
    return (
        "UPDATE notification_outbox SET state = 'DELIVERED', payload = NULL,"  # noqa: S608
        f" finished_at = %s, passed_on = %s WHERE state = 'DEAD' AND message_id IN ({marks})"
        f" RETURNING {ENTRY_COLUMNS.format(payload='payload')}"
    )


def outbox_entries(rows: Sequence[Sequence[Any]]) -> list[OutboxEntry]:
    """The entries from rows of ENTRY_COLUMNS."""
    return [
        OutboxEntry(mid, aid, source, OutboxState(state), attempts, error, payload, at, done, how)
        for mid, aid, source, state, attempts, error, payload, at, done, how in rows
    ]


def outbox_stats(row: Sequence[Any] | None) -> OutboxStats:
    """The stats from the row STATS_QUERY returned (its sums are NULL when no row matched)."""
    pending, oldest, dead = row or (None, None, None)
    return OutboxStats(
        pending=int(pending or 0),
        oldest_pending_at=None if oldest is None else float(oldest),
        dead=int(dead or 0),
    )


class Outbox(Protocol):
    """The queue as dispatchers see it, shared by every gateway process writing one audit log.

    Each method is a short transaction. A message is claimed for a lease before it is sent, so two
    dispatchers never send it at once, and a dispatcher that dies mid-send leaves it to be sent
    again when the lease runs out. Nothing is queued here: messages are queued by the audit
    store's `append`, in its record's transaction.
    """

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxMessage]:
        """Pending messages due by `now`, oldest first, each counted as one more attempt and
        hidden from other claims until `now + lease_s`."""
        ...

    def next_due(self) -> float | None:
        """When the earliest pending message falls due, or None when nothing is pending."""
        ...

    def stats(self) -> OutboxStats:
        """How many messages are pending and dead, and when the oldest pending was queued."""
        ...

    def delivered(self, message_id: str, now: float) -> None:
        """Mark delivered and erase the payload: the owner has it now."""
        ...

    def dead(self, message_id: str, error: str, now: float) -> None:
        """Give up on automatic delivery; the payload stays for an operator to act on."""
        ...

    def retry(self, message_id: str, error: str, at: float) -> None:
        """Record a failed attempt (`error` is a code, never personal data) and when to retry."""
        ...

    def entries(
        self,
        audit_id: str | None = None,
        states: Collection[OutboxState] = (),
        message_id: str | None = None,
    ) -> list[OutboxEntry]:
        """Every message, or those of one lookup, in these states, or the one of this id; oldest
        first."""
        ...

    def resend(
        self, now: float, message_ids: Sequence[str] = (), source: str | None = None
    ) -> list[str]:
        """Dead letters queued again (see `OutboxRows.resend`); the ids queued again."""
        ...

    def close(self) -> None: ...


class OutboxRows(ABC):
    """What the SQLite and PostgreSQL outboxes do alike, written once: everything but `claim`,
    whose locking differs. Statements use `%s` placeholders; a store runs them through `_rows`
    (the SQLite store turns the placeholders into its `?`)."""

    @abstractmethod
    def _rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as its own transaction; the rows it returned, if any."""

    @abstractmethod
    def _together(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """Run statements, with their parameters, as one write transaction."""

    def next_due(self) -> float | None:
        """When the earliest pending message falls due, or None when nothing is pending."""
        ((due,),) = self._rows(
            "SELECT MIN(next_attempt_at) FROM notification_outbox WHERE state = 'PENDING'"
        )
        return None if due is None else float(due)

    def stats(self) -> OutboxStats:
        return outbox_stats(self._rows(STATS_QUERY)[0])

    def delivered(self, message_id: str, now: float) -> None:
        """Mark delivered and erase the payload: the owner has it now."""
        self._rows(
            "UPDATE notification_outbox SET state = 'DELIVERED', last_error = NULL,"
            " finished_at = %s, payload = NULL WHERE message_id = %s AND state = 'PENDING'",
            (now, message_id),
        )

    def dead(self, message_id: str, error: str, now: float) -> None:
        """Give up on automatic delivery; the payload stays for an operator to act on. The
        message takes its place in the order messages are given up on (`GIVEN_UP_ORDER`), which
        auditors read them in (undeliveredNotifications)."""
        self._together([(GIVEN_UP_ORDER, ()), (GIVE_UP, (error, now, message_id))])

    def retry(self, message_id: str, error: str, at: float) -> None:
        """Record a failed attempt (`error` is a code, never personal data) and when to retry."""
        self._rows(
            "UPDATE notification_outbox SET last_error = %s, next_attempt_at = %s"
            " WHERE message_id = %s AND state = 'PENDING'",
            (error, at, message_id),
        )

    def entries(
        self,
        audit_id: str | None = None,
        states: Collection[OutboxState] = (),
        message_id: str | None = None,
    ) -> list[OutboxEntry]:
        """Every message, or those of one lookup, in these states, or the one of this id; oldest
        first."""
        conditions, params = [], []
        for column, value in (("audit_id", audit_id), ("message_id", message_id)):
            if value is not None:
                conditions.append(f"{column} = %s")
                params.append(value)
        if states:
            conditions.append(f"state IN ({', '.join(['%s'] * len(states))})")
            params += [state.value for state in states]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # Only placeholders are joined in: the values are parameters.
        statement = (
            f"SELECT {ENTRY_COLUMNS.format(payload='payload')}"  # noqa: S608
            f" FROM notification_outbox{where}"
        )
        return outbox_entries(self._rows(statement + " ORDER BY created_at, message_id", params))

    def resend(
        self, now: float, message_ids: Sequence[str] = (), source: str | None = None
    ) -> list[str]:
        """Dead letters queued again, due `now`, once an operator has mended what stopped them
        (the agency's endpoint, its key): those of `message_ids`, else every one (of `source`,
        if given). Their attempts and age count afresh from `now`, or the limits that gave up on
        them would give up again at the first failure; the lookup's own time is in its audit
        record and in the message. Messages not dead are left as they are. Returns the ids
        queued again, for the operator's record."""
        statement = (
            "UPDATE notification_outbox SET state = 'PENDING', attempts = 0, created_at = %s,"
            " next_attempt_at = %s, finished_at = NULL WHERE state = 'DEAD'"
        )
        params: list[object] = [now, now]
        if message_ids:
            statement += f" AND message_id IN ({', '.join(['%s'] * len(message_ids))})"
            params += message_ids
        if source is not None:
            statement += " AND source = %s"
            params.append(source)
        return sorted(row[0] for row in self._rows(statement + " RETURNING message_id", params))
