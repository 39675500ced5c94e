"""Witnessing a gateway's audit log: the messages a gateway and its witnesses exchange.

A gateway's audit log is hash-chained and its checkpoints are signed (gateway.audit.checkpoints),
but whoever runs the gateway's database could still cut the log back to an earlier checkpoint and
delete everything after it: a shorter log that is consistent with itself. So every signed
checkpoint is also sent to witnesses the gateway's operator does not run - the connectors of the
agencies, and any standalone witness - which keep it. `childlookup audit verify --witness URL`
then compares the log with what each witness saw: a log cut back or rewritten contradicts a
checkpoint someone else holds.

A witness keeps, for each log, an unbroken run of checkpoints: each one it accepts names the digest
of the one before it (`prev`). A gateway sends what the witness has not seen yet, oldest first, in
batches (`WitnessRequest`, at WITNESS_PATH, signed like every gateway request); the witness answers
with how many it accepted and the latest it holds (`WitnessReceipt`), so a witness that was down
catches up from where it stopped, without gaps. A checkpoint that contradicts one the witness
already holds (same `seq`, different statement), or that does not follow on from its latest, is not
accepted: the first is kept as evidence (`conflicts`), the second answered with the latest it
holds, for the gateway to resend from there.

What a witness holds is no personal data: sequence numbers, counts, hashes, times and signatures.
It discloses how many lookups a gateway audited, and when; `GET WITNESS_PATH?log=...` serves it to
whoever can reach the witness, so that auditors need no gateway credentials to compare.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from connectors.protocol import PROTOCOL_VERSION

WITNESS_PATH: Final = "/v1/witness/checkpoints"
STATEMENT_HEADER: Final = "childlookup audit checkpoint v2"
MAX_BATCH: Final = 500
"""Checkpoints in one request or one page of a listing."""
MAX_REQUEST_BYTES: Final = 256 * 1024
"""A full batch is about 220 KB of JSON; a witness reads no more than this."""

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
LogName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
"""Which gateway's log: the gateway's id (CHILDLOOKUP_GATEWAY_ID), the issuer of its requests."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def checkpoint_statement(seq: int, records: int, head: str, at: str, prev: str, key: str) -> bytes:
    """A checkpoint's statement, the bytes its signature covers (the format is documented in
    gateway.audit.checkpoints, which signs with this function): written once, here in the SDK,
    so the gateway and every witness spell it alike."""
    return (
        f"{STATEMENT_HEADER}\nseq={seq}\nrecords={records}\nhead={head}\n"
        f"at={at}\nprev={prev}\nkey={key}\n"
    ).encode()


SQL_INT_MAX: Final = 2**63 - 1
"""The largest count a witness's database column holds (SQLite and PostgreSQL `bigint`): a
checkpoint naming more is malformed (400), not a store that failed (503, "retry")."""


class SignedCheckpoint(_Message):
    """One checkpoint exactly as the gateway signed it (gateway.audit.checkpoints.Checkpoint)."""

    seq: int = Field(ge=0, le=SQL_INT_MAX)
    records: int = Field(ge=0, le=SQL_INT_MAX)
    head: Hex64
    at: str = Field(min_length=1, max_length=64)
    """UTC, ISO 8601 with microseconds, as signed: kept as text, never re-spelt."""
    prev: Hex64
    key: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]

    def statement(self) -> bytes:
        """The bytes the gateway signed."""
        return checkpoint_statement(self.seq, self.records, self.head, self.at, self.prev, self.key)

    def digest(self) -> str:
        """What the next checkpoint names as `prev`, and what tells two statements apart."""
        return hashlib.sha256(self.statement()).hexdigest()


class WitnessRequest(_Message):
    """Checkpoints of one log for a witness to keep, oldest first, each following the one before."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    log: LogName
    checkpoints: list[SignedCheckpoint] = Field(min_length=1, max_length=MAX_BATCH)


class WitnessProblem(StrEnum):
    """Why a witness stopped accepting part way through a request."""

    NOT_CONSECUTIVE = "NOT_CONSECUTIVE"
    """A checkpoint does not follow on from the latest the witness holds (it missed some, or the
    log was rewritten): resend from the latest in the receipt."""
    CONFLICT = "CONFLICT"
    """A checkpoint contradicts one the witness holds under the same sequence number: the log was
    rewritten, or two logs share a name. The witness keeps both; a person must look."""


class WitnessReceipt(_Message):
    """The witness's answer to a `WitnessRequest`."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    log: LogName
    accepted: int = Field(ge=0)
    """How many of the request's checkpoints are now held (new ones, and ones already held)."""
    latest: SignedCheckpoint | None
    """The newest checkpoint the witness holds for this log, after this request."""
    problem: WitnessProblem | None = None


class WitnessedConflict(_Message):
    """A checkpoint a witness was sent that contradicted the one it already held."""

    received_at: str
    held: SignedCheckpoint
    offered: SignedCheckpoint


class WitnessListing(_Message):
    """`GET WITNESS_PATH?log=NAME&after=SEQ`: held checkpoints with `seq` > SEQ, oldest first, at
    most MAX_BATCH (ask again after the last for more), and every conflict the witness recorded."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    log: LogName
    checkpoints: list[SignedCheckpoint]
    first_seen_seq: int | None
    """The first checkpoint this witness held for the log: it saw nothing before it."""
    conflicts: list[WitnessedConflict] = Field(default_factory=list)


# --- the witness's store --------------------------------------------------------------------------

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS witnessed_checkpoint (
    log TEXT NOT NULL,
    seq INTEGER NOT NULL,
    checkpoint TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (log, seq)
);
CREATE TABLE IF NOT EXISTS witnessed_conflict (
    log TEXT NOT NULL,
    seq INTEGER NOT NULL,
    offered_digest TEXT NOT NULL,
    held TEXT NOT NULL,
    offered TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (log, seq, offered_digest)
);
"""
"""Checkpoints as received (JSON: `at` is never re-spelt, so the statement stays the signed one)
and when each arrived, for a person reading the file; each contradiction once, however often the
gateway offers it again."""


class _Verdict(StrEnum):
    KEEP = "KEEP"
    HELD = "HELD"
    """Held already, or older than anything this witness saw: nothing to keep, but accepted."""
    CONFLICT = "CONFLICT"
    NOT_CONSECUTIVE = "NOT_CONSECUTIVE"


def _verdict(
    offered: SignedCheckpoint,
    held: SignedCheckpoint | None,
    latest: SignedCheckpoint | None,
    first_seen_seq: int | None,
) -> _Verdict:
    """The witness rule for one checkpoint, given what is held under its `seq`, the latest held
    and the first seen."""
    if held is not None:
        return _Verdict.HELD if held.digest() == offered.digest() else _Verdict.CONFLICT
    if latest is None or first_seen_seq is None:
        return _Verdict.KEEP
    if offered.seq < first_seen_seq:
        return _Verdict.HELD  # from before this witness started: it cannot say anything about it
    if offered.seq > latest.seq and offered.prev == latest.digest():
        return _Verdict.KEEP
    return _Verdict.NOT_CONSECUTIVE


class WitnessStore:
    """What a witness holds, in a SQLite file written through to disk before it answers, so a
    checkpoint it acknowledged survives a crash: the gateway never sends it again.

    Methods are synchronous (call them through `asyncio.to_thread`) and serialised by one lock;
    each request is one transaction, so a crash part way keeps none of it and the gateway's
    resend is judged against what was durably kept.
    """

    def __init__(self, path: Path) -> None:
        """Open (or create) the witness database at `path`.

        Raises ValueError when it cannot be opened or is not a SQLite database.
        """
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise ValueError(f"cannot open the witness database {path}: {error}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def witness(self, request: WitnessRequest) -> WitnessReceipt:
        """Keep what follows on from what is held, in order, stopping at the first checkpoint that
        does not (see the module docstring); a contradiction is recorded as evidence."""
        log = request.log
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._lock, self._transaction():
            latest = self._latest(log)
            first_seen_seq = self._first_seen_seq(log)
            accepted, problem = 0, None
            for offered in request.checkpoints:
                held = self._held(log, offered.seq)
                verdict = _verdict(offered, held, latest, first_seen_seq)
                if verdict is _Verdict.CONFLICT and held is not None:
                    self._record_conflict(log, held, offered, received_at)
                    problem = WitnessProblem.CONFLICT
                    break
                if verdict is _Verdict.NOT_CONSECUTIVE:
                    problem = WitnessProblem.NOT_CONSECUTIVE
                    break
                if verdict is _Verdict.KEEP:
                    self._keep(log, offered, received_at)
                    latest = offered
                    first_seen_seq = offered.seq if first_seen_seq is None else first_seen_seq
                accepted += 1
        return WitnessReceipt(log=log, accepted=accepted, latest=latest, problem=problem)

    def listing(self, log: str, after: int | None) -> WitnessListing:
        """Held checkpoints with `seq` > `after` (all when None), oldest first, at most MAX_BATCH;
        the first seen; every conflict recorded, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT checkpoint FROM witnessed_checkpoint WHERE log = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (log, -1 if after is None else after, MAX_BATCH),
            ).fetchall()
            conflicts = self._conn.execute(
                "SELECT received_at, held, offered FROM witnessed_conflict WHERE log = ?"
                " ORDER BY rowid",
                (log,),
            ).fetchall()
            first_seen_seq = self._first_seen_seq(log)
        return WitnessListing(
            log=log,
            checkpoints=[SignedCheckpoint.model_validate_json(row[0]) for row in rows],
            first_seen_seq=first_seen_seq,
            conflicts=[
                WitnessedConflict(
                    received_at=received_at,
                    held=SignedCheckpoint.model_validate_json(held),
                    offered=SignedCheckpoint.model_validate_json(offered),
                )
                for received_at, held, offered in conflicts
            ],
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")  # another process on the same file waits its turn
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _latest(self, log: str) -> SignedCheckpoint | None:
        row = self._conn.execute(
            "SELECT checkpoint FROM witnessed_checkpoint WHERE log = ? ORDER BY seq DESC LIMIT 1",
            (log,),
        ).fetchone()
        return None if row is None else SignedCheckpoint.model_validate_json(row[0])

    def _first_seen_seq(self, log: str) -> int | None:
        row = self._conn.execute(
            "SELECT min(seq) FROM witnessed_checkpoint WHERE log = ?", (log,)
        ).fetchone()
        first: int | None = row[0]
        return first

    def _held(self, log: str, seq: int) -> SignedCheckpoint | None:
        row = self._conn.execute(
            "SELECT checkpoint FROM witnessed_checkpoint WHERE log = ? AND seq = ?", (log, seq)
        ).fetchone()
        return None if row is None else SignedCheckpoint.model_validate_json(row[0])

    def _keep(self, log: str, checkpoint: SignedCheckpoint, received_at: str) -> None:
        self._conn.execute(
            "INSERT INTO witnessed_checkpoint (log, seq, checkpoint, received_at)"
            " VALUES (?, ?, ?, ?)",
            (log, checkpoint.seq, checkpoint.model_dump_json(), received_at),
        )

    def _record_conflict(
        self, log: str, held: SignedCheckpoint, offered: SignedCheckpoint, received_at: str
    ) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO witnessed_conflict"
            " (log, seq, offered_digest, held, offered, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                log,
                offered.seq,
                offered.digest(),
                held.model_dump_json(),
                offered.model_dump_json(),
                received_at,
            ),
        )
