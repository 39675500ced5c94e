"""Reading the auditors' feeds a page at a time: where an entry stands in its feed, and the opaque
cursor an auditor reads on from (gateway.audit.trail).

A feed is read oldest first - by time, then by what no two of its entries share: a record's or an
alert's place in the log (`seq`), a notification's message id - at most a page at a time. Read on
from the last entry's time alone, as `since` does, a page's worth of entries at one time (a
harvesting script's burst) is read again and again and nothing after it ever is; read on strictly
after the last entry's position, every entry is read once. The cursor holds that position, sealed
under a key derived from the audit key, with the reading it was issued for (the feed and whose
entries it holds): one altered, made up or carried over from another reading is refused as bad
input rather than read on from a place the auditor never reached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from gateway.errors import ErrorCode, GatewayError

T = TypeVar("T")

LogPosition = tuple[str, int]
"""A record's or an alert's place in time order: its time as the store compares it (SQLite: the
text it keeps; PostgreSQL: UTC ISO 8601, `utc_text`), then its `seq`."""
LetterPosition = tuple[float, str]
"""A dead letter's place: when it was given up on (seconds since the epoch), then its message id."""

CURSOR_PURPOSE: Final = "audit-cursor"
"""What the cursors' keys are derived for (`Pseudonymiser.derived_keys`)."""
MAX_CURSOR_CHARS: Final = 512
"""Longer than any cursor issued: anything longer is refused unread."""
_SEAL_BYTES: Final = 16


@dataclass(frozen=True)
class Page(Generic[T]):
    """One reading of a feed: its entries, oldest first, each with the cursor to read on after it.
    Iterated, the entries alone, as a reading gave them before it had cursors."""

    entries: Sequence[T]
    cursors: Sequence[str]

    def __iter__(self) -> Iterator[T]:
        return iter(self.entries)

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
        payload = _b64(json.dumps(list(position), separators=(",", ":")).encode())
        return f"{payload}.{_b64(_seal(self._keys[0], reading, payload))}"

    def log_position(
        self, reading: str, cursor: str, *, formerly: Sequence[str] = ()
    ) -> LogPosition:
        """The record's or alert's position `cursor` was issued at, for `reading` - or for the
        same reading under a name it had before the audit key was rotated (`formerly`: a child's
        trail is named by the child's pseudonym, which each key makes anew)."""
        at, seq = self._open((reading, *formerly), cursor)
        if not isinstance(at, str) or type(seq) is not int:
            raise _not_issued()
        return at, seq

    def letter_position(self, reading: str, cursor: str) -> LetterPosition:
        """The dead letter's position `cursor` was issued at, for `reading`."""
        at, message_id = self._open((reading,), cursor)
        if type(at) not in (int, float) or not isinstance(message_id, str):
            raise _not_issued()
        return float(at), message_id

    def _open(self, readings: Sequence[str], cursor: str) -> tuple[Any, Any]:
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
        if not isinstance(position, list) or len(position) != 2:
            raise _not_issued()
        return position[0], position[1]


def _seal(key: bytes, reading: str, payload: str) -> bytes:
    message = json.dumps([reading, payload]).encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_SEAL_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _not_issued() -> GatewayError:
    return GatewayError(
        ErrorCode.BAD_USER_INPUT,
        "`after` takes an entry's `cursor`, as this field gave it for the same reading (the same"
        " child, user or feed), unchanged; to start over, leave it out.",
    )
