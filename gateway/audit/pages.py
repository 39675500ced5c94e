"""Reading the auditors' feeds a page at a time: where an entry stands in its feed, and the opaque
cursor an auditor reads on from (gateway.audit.trail).

A feed is read in the log's own order - the order its entries were committed in: a record's or
an alert's place in the log (`seq`), a notification's place in the order notifications were given
up on (gateway.audit.outbox) - at most a page at a time, strictly after the last entry read. Not
by time: every gateway sharing a log stamps its entries with its own clock, so an entry committed
after an auditor read a page could be stamped a few milliseconds before the page's last entry, and
read on from there by time (as `since` or a cursor holding a time did) it was never read. In
commit order whatever is committed later comes later. `since` filters on the time, in that order.
The cursor holds the position, sealed under a key derived from the audit key, with the reading it
was issued for (the feed and whose entries it holds): one altered, made up or carried over from
another reading is refused as bad input rather than read on from a place the auditor never
reached; one issued when the feeds were read by time is refused too, the auditor told to start
over - no place in commit order reads on exactly where it stood.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, NamedTuple, TypeVar

from gateway.audit.outbox import OutboxEntry
from gateway.errors import ErrorCode, GatewayError

T = TypeVar("T")


class LogPosition(NamedTuple):
    """A record's or an alert's place in the log."""

    seq: int
    """Its place in commit order: what a feed is ordered and read on by."""
    at: str
    """Its time (UTC, ISO 8601), for the record of a reading by cursor alone (`AuditReading`)."""


LetterPosition = int
"""A dead letter's place in the order notifications were given up on (`given_up_seq`)."""

CURSOR_PURPOSE: Final = "audit-cursor"
"""What the cursors' keys are derived for (`Pseudonymiser.derived_keys`)."""
MAX_CURSOR_CHARS: Final = 512
"""Longer than any cursor issued: anything longer is refused unread."""
_SEAL_BYTES: Final = 16


@dataclass(frozen=True)
class Page(Generic[T]):
    """One reading of a feed: its entries, in the log's order, each with the cursor to read on
    after it."""

    entries: Sequence[T]
    cursors: Sequence[str]

    def with_cursors(self) -> Iterator[tuple[T, str]]:
        return zip(self.entries, self.cursors, strict=True)


class Cursors:
    """Seals positions into cursors, and opens cursors back into positions."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        """`keys`: the first seals; any opens, so a cursor issued before the audit key was
        rotated still reads on."""
        self._keys = tuple(keys)

    def seal(self, reading: str, position: LogPosition | LetterPosition) -> str:
        """The cursor reading on after `position` in `reading` (the feed and whose entries)."""
        held = position._asdict() if isinstance(position, LogPosition) else {"seq": position}
        payload = _b64(json.dumps(held, separators=(",", ":")).encode())
        return f"{payload}.{_b64(_seal(self._keys[0], reading, payload))}"

    def log_position(
        self, reading: str, cursor: str, *, formerly: Sequence[str] = ()
    ) -> LogPosition:
        """The record's or alert's position `cursor` was issued at, for `reading` - or for the
        same reading under a name it had before the audit key was rotated (`formerly`: a child's
        trail is named by the child's pseudonym, which each key makes anew)."""
        position = self._open((reading, *formerly), cursor)
        seq, at = position.get("seq"), position.get("at")
        if set(position) != {"seq", "at"} or type(seq) is not int or not isinstance(at, str):
            raise _not_issued()
        return LogPosition(seq, at)

    def letter_position(self, reading: str, cursor: str) -> LetterPosition:
        """The dead letter's position `cursor` was issued at, for `reading`."""
        position = self._open((reading,), cursor)
        seq = position.get("seq")
        if set(position) != {"seq"} or type(seq) is not int:
            raise _not_issued()
        return seq

    def _open(self, readings: Sequence[str], cursor: str) -> dict[str, Any]:
        payload, dot, seal = cursor.partition(".")
        if len(cursor) > MAX_CURSOR_CHARS or not dot:
            raise _not_issued()
        try:
            given = _unb64(seal)
            sealed = (_seal(k, r, payload) for k in self._keys for r in readings)
            if not any(hmac.compare_digest(made, given) for made in sealed):
                raise _not_issued()
            position = json.loads(_unb64(payload))
        except ValueError as exc:  # not base64, not JSON
            raise _not_issued() from exc
        if isinstance(position, list) and len(position) == 2:
            raise _issued_in_time_order()
        if not isinstance(position, dict):
            raise _not_issued()
        return position


def _seal(key: bytes, reading: str, payload: str) -> bytes:
    message = json.dumps([reading, payload]).encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_SEAL_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _issued_in_time_order() -> GatewayError:
    """A cursor this gateway sealed when the feeds were read in time order: its place (a time)
    has no exact place in commit order - read on from either side of it, an entry would be
    skipped or read twice."""
    return GatewayError(
        ErrorCode.BAD_USER_INPUT,
        "This cursor was issued before the audit feeds were read in the log's order, and cannot"
        " be read on from: start over, leaving `after` out.",
    )


def _not_issued() -> GatewayError:
    return GatewayError(
        ErrorCode.BAD_USER_INPUT,
        "`after` takes an entry's `cursor`, as this field gave it for the same reading (the same"
        " child, user or feed), unchanged; to start over, leave it out.",
    )


class PositionedFeeds(ABC):
    """A store's (SQLite, PostgreSQL) records, alerts and dead letters read whole - records and
    alerts by time, as the CLI reads them - and a page at a time in the log's order, written once
    over each store's own query of its rows."""

    @abstractmethod
    def _record_rows(
        self,
        child_refs: Sequence[str],
        subject: str | None,
        since: datetime | None,
        after: LogPosition | None,
        limit: int,
        *,
        by_time: bool,
    ) -> list[tuple[str, int, str]]:
        """Records as rows of (time as the log's text, seq, body): for one child (by any of its
        pseudonyms) or user, from `since`, strictly after `after`; by time, or in log order."""

    @abstractmethod
    def _alerts(
        self,
        since: datetime | None,
        kinds: Collection[str] | None,
        after: LogPosition | None,
        limit: int | None,
        *,
        by_time: bool,
    ) -> list[tuple[LogPosition, dict[str, str | None]]]:
        """Alerts from `since`, of `kinds`, strictly after `after`; by time, or in log order."""

    @abstractmethod
    def positioned_dead_letters(
        self, limit: int, after: LetterPosition | None = None
    ) -> list[tuple[LetterPosition, OutboxEntry]]:
        """`dead_letters` strictly after a position, each with its own."""

    def records(
        self,
        *,
        child_refs: Sequence[str] = (),
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Read back records, oldest first (by time, then `seq`), optionally for one child (by any
        of its pseudonyms), one user, or from a time: read on from the last one's time, no record
        already written is skipped (gateway.audit.queries.ORDERS)."""
        rows = self._record_rows(child_refs, subject, since, None, limit, by_time=True)
        return [json.loads(body) for _, _, body in rows]

    def positioned_records(
        self,
        *,
        child_refs: Sequence[str] = (),
        subject: str | None = None,
        since: datetime | None = None,
        after: LogPosition | None = None,
        limit: int = 1000,
    ) -> list[tuple[LogPosition, dict[str, Any]]]:
        """Records in the log's order, strictly after a position, each with its own."""
        rows = self._record_rows(child_refs, subject, since, after, limit, by_time=False)
        return [(LogPosition(seq, at), json.loads(body)) for at, seq, body in rows]

    def alerts(
        self,
        since: datetime | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, str | None]]:
        """The alerts feed (`AuditStore.alerts`), oldest first by time. The justification is the
        gateway's normalised text, None in alerts written before it was kept or when none was
        given. It names no child: the audit record, behind its own access controls, does that."""
        return [alert for _, alert in self._alerts(since, kinds, None, limit, by_time=True)]

    def positioned_alerts(
        self,
        since: datetime | None = None,
        kinds: Collection[str] | None = None,
        after: LogPosition | None = None,
        limit: int | None = None,
    ) -> list[tuple[LogPosition, dict[str, str | None]]]:
        """The alerts feed in the log's order, strictly after a position, each with its own."""
        return self._alerts(since, kinds, after, limit, by_time=False)

    def dead_letters(self, limit: int) -> list[OutboxEntry]:
        """Owner notifications given up on, in the order they were given up in, without
        payloads."""
        return [entry for _, entry in self.positioned_dead_letters(limit)]
