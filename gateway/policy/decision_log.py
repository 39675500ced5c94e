"""Decision logs in OPA's format, so an auditor can replay why a field was released or withheld.

Each plan and release decision is written as one JSON line with OPA's decision-log fields
(decision_id, labels, bundles, path, input, result, timestamp, requested_by), and its id goes into
the lookup's audit record. The pipeline asks through `LoggedPolicy`, so no decision can be taken
without being logged. Policy inputs carry no personal identifiers by design - records are
numbered, not named, and the justification is sent as counts of letters and words - so nothing
needs masking; `masked` is written empty to say so explicitly.

The log grows by about 2.4 KB a lookup. Written to a file, it is rotated by size
(CHILDLOOKUP_DECISION_LOG_MAX_BYTES), safely while several gateway processes append to it: see
`RotatingFile`. `childlookup audit archive` moves rotated files into the archive
(`rotated_decision_logs`). A log that cannot be written (its volume full, its stream closed)
fails each decision that cannot be logged with a PolicyError, as an unavailable policy does -
the lookup releases nothing - and says so once (`decision_log_unwritable`) until a write succeeds.
A line a full volume took only in part never has the next line run on into it (`RotatingFile`).
On stdout (`StreamSink`) a pipe read slowly is waited for by the lookups it holds, without holding
the event loop; one that takes nothing for a while, or holds too much, is a log that cannot be
written.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import json
import logging
import os
import re
import select
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol, TextIO, TypeVar, cast

from pydantic import BaseModel

from connectors.protocol import random_id
from gateway import metrics
from gateway.policy.decisions import PlanDecision, PlanInput, ReleaseDecision, ReleaseInput
from gateway.policy.engine import (
    PLAN_ENTRYPOINT,
    RELEASE_ENTRYPOINT,
    PolicyEngine,
    ServedPolicyEngine,
)
from gateway.policy.errors import PolicyError

_K = TypeVar("_K")
_REMEMBERED = 4096
"""Decision texts kept for reuse before the memory is cleared and refilled."""
_FOLLOW_S: Final = 1.0
"""How often, at most, a writer checks whether another process rotated the file away."""
_STAMP: Final = "%Y%m%dT%H%M%SZ"
_STALL_S: Final = 5.0
"""Longest lines given to stdout wait for a full pipe to take more of them (`StreamSink`): a pipe
still draining, however slowly, is waited for; one taking nothing for this long is not."""
_BACKLOG_BYTES: Final = 1024 * 1024
"""Most lines (~400 lookups') kept waiting for a full stdout pipe (`StreamSink`): past it a round's
decisions fail closed at once, rather than memory growing for as long as the reader stalls."""

_logger = logging.getLogger("childlookup.policy")


class _Sink(Protocol):
    def write(self, text: str, /) -> object: ...


class RotatingFile:
    """A log file appended to by several processes at once, rotated by size with no line lost.

    Each line is one `write` to a file opened O_APPEND, so lines from different processes never
    interleave. The process whose write takes the file past `max_bytes` (0: never) renames it to
    `<stem>.<UTC yyyymmddThhmmssZ>.<pid>.jsonl` and starts a new one under the base name; the
    rename is made under an exclusive lock on `<name>.lock`, after checking that the base name
    still is the file it filled, so two processes never both rotate. Other processes keep
    appending to the renamed file - their lines are kept there - until they notice, at their
    next write a second or more after they last looked, that the base name is another file, and
    reopen it.

    A write the file takes only in part (its volume full, a size limit) leaves a torn line: see
    `_append` for how no later line runs on into it."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._regular = False
        self._fd = self._open()
        self._looked = time.monotonic()

    def _open(self) -> int:
        """A regular file is opened to read as well: a write reads the byte before it
        (`_append`). Anything else (a FIFO, /dev/stdout) is opened only to write: opened to read,
        the gateway would be a reader of its own FIFO, so its writes would still succeed with the
        real reader gone (no EPIPE) - decisions acted on whose lines nobody reads - until the
        pipe filled and a write held the event loop for good."""
        try:
            regular = stat.S_ISREG(os.stat(self._path).st_mode)
        except FileNotFoundError:
            regular = True  # created here, as a regular file
        access = os.O_RDWR if regular else os.O_WRONLY
        fd = os.open(self._path, access | os.O_APPEND | os.O_CREAT, 0o640)
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        return fd

    def write(self, text: str) -> None:
        now = time.monotonic()
        if now - self._looked >= _FOLLOW_S:
            self._looked = now
            if not self._is_current():
                self._reopen()
        end = self._append(text.encode())
        if self._max_bytes and end >= self._max_bytes:
            self._rotate()

    def _append(self, data: bytes) -> int:
        """Append `data` (whole lines) and return the file's size just after it.

        A write the file took only in part fails (the decisions of its lines are not acted on)
        and leaves the start of a line with no end. The next line written - by this process or,
        as likely, another one appending to the same file, which knows nothing of it - would run
        on from it, and a reader would see one broken line in place of that record. So the file
        is never cut back (shrinking it under a log shipper tailing it, as Fluent Bit or Vector
        do, moves its end below the offset the shipper has read to: Fluent Bit takes that as a
        truncation and ships the whole file again from its start, others read on from the middle
        of whatever is appended next), and every write checks the byte before it instead, one
        pread: if it is not a newline, the write's first line ran on from a torn one, and is
        written again whole. Bytes once appended stay as they were, and every line in the file
        is either a whole record or one a reader drops as not JSON."""
        while True:
            end = self._write_once(data)
            start = end - len(data)
            if not self._regular or start <= 0 or os.pread(self._fd, 1, start - 1) == b"\n":
                return end
            data = data[: data.index(b"\n") + 1]

    def _write_once(self, data: bytes) -> int:
        """Append `data` in one write - a second could come after another process's line - and
        return the file's size just after it (0 for what is not a regular file: a FIFO or a
        device has no offset to ask for, and is never rotated). After a write taken in part, a
        newline ends the torn line at once if the file takes one more byte; if not, that write
        raises why."""
        written = os.write(self._fd, data)
        if written < len(data):
            os.write(self._fd, b"\n")
            raise OSError(errno.EIO, f"the decision log took {written} of {len(data)} bytes")
        return os.lseek(self._fd, 0, os.SEEK_CUR) if self._regular else 0

    def _is_current(self) -> bool:
        """Whether the base name still names the file this process appends to."""
        try:
            named = os.stat(self._path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def _rotate(self) -> None:
        with open(self._path.with_name(self._path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self._is_current() and os.fstat(self._fd).st_size >= self._max_bytes:
                os.rename(self._path, self._rotated_name())
            self._reopen()
        self._looked = time.monotonic()

    def _rotated_name(self) -> Path:
        """A name no rotated file has yet (checked under the rotation lock)."""
        base = f"{self._path.stem}.{datetime.now(UTC).strftime(_STAMP)}.{os.getpid()}"
        candidate, n = self._path.with_name(f"{base}.jsonl"), 0
        while candidate.exists():
            n += 1
            candidate = self._path.with_name(f"{base}-{n}.jsonl")
        return candidate

    def _reopen(self) -> None:
        fd = self._open()
        os.close(self._fd)
        self._fd = fd

    def close(self) -> None:
        os.close(self._fd)


class StreamSink:
    """A stream (stdout) as the decision log, written straight to its file descriptor, whole lines
    only, without holding the event loop while its reader stalls.

    In a container stdout is a pipe whose reader (the runtime's log driver) can fall behind. A
    write waiting on a full pipe in the event loop's thread held every lookup of the process,
    its health checks and deadlines, for as long as the reader stalled. Here, in an event loop,
    what the pipe takes now is written and the rest waits in memory for the loop to say the pipe
    has room: only the lookups whose decisions it holds wait (`DecisionLog.written`), since a
    decision the log has not taken is not acted on. A pipe that takes nothing for `stall_s` is a
    log that cannot be written: the decisions waiting fail closed (TimeoutError) and their lines
    are dropped, but the rest of a line begun, which is written first next time, so a reader
    never sees a line torn. What waits is bounded: past `backlog_bytes` a round's lines are
    refused at once (BlockingIOError, failing closed). Where no event loop runs, a write waits
    for the pipe itself, as long as it keeps taking more (TimeoutError after `stall_s`).

    stdout is left blocking or not as it is (other writers share it): a blocking one is written a
    pipe buffer's worth at a time, each once it says it has room for one, so no write waits. A
    pipe is written whole lines at a time, at most PIPE_BUF, so the lines of several processes
    sharing it (`serve --workers N`) never interleave (but a line longer than PIPE_BUF). What
    the process wrote to the stream through Python's buffer is flushed first, so it stays ahead
    of the decisions logged after it."""

    def __init__(
        self, stream: TextIO, *, stall_s: float = _STALL_S, backlog_bytes: int = _BACKLOG_BYTES
    ) -> None:
        self._stream = stream
        self._stall_s = stall_s
        self._most = backlog_bytes
        self._backlog = bytearray()
        """What the stream is still to take, in order: maybe the end of a line begun, then lines."""
        self._begun = False
        """Whether the stream's last byte ends a line not yet finished (the backlog's first)."""
        self._taken = 0
        """Bytes the stream has taken, all told: a batch is taken once this reaches its end."""
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        """The end of each batch being waited for (counted as `_taken`), and its outcome."""
        self._moved = 0.0
        """When the stream last took something, or the first batch now waiting was given."""
        self._watch: tuple[asyncio.AbstractEventLoop, int, asyncio.TimerHandle] | None = None

    def write(self, text: str) -> asyncio.Future[None] | None:
        """Give the stream `text`, whole lines: None once it is all taken, or (in an event loop,
        the pipe full) a future done when it is, failed if the pipe takes nothing for `stall_s`."""
        fd = self._stream.fileno()  # ValueError once closed: fails closed, as a gone volume
        data = text.encode()
        self._forget_closed_loop()
        if self._backlog and len(self._backlog) + len(data) > self._most:
            raise BlockingIOError(errno.EAGAIN, "the stalled stream's backlog is full")
        if not self._waiting:
            self._moved = time.monotonic()
        self._backlog += data
        end = self._taken + len(self._backlog)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_through(fd)
            return None
        try:
            self._pump(fd)
        except OSError as error:
            self._give_up(error)
            raise
        if not self._backlog:
            return None
        taken: asyncio.Future[None] = loop.create_future()
        self._waiting.append((end, taken))
        if self._watch is None:
            stall = loop.call_later(self._stall_s, self._check_stall)
            loop.add_writer(fd, self._on_room, fd)
            self._watch = (loop, fd, stall)
        return taken

    def _forget_closed_loop(self) -> None:
        """Forget an event loop closed while batches waited in it (the log outlives it: tests, a
        CLI running one loop after another): its watch, its batches, and their lines, dropped as
        after a stall, since nothing acted on them. Left as they were, nothing in the loop now
        running watched the pipe or timed its stall - its decisions waited for good, or were
        refused for good behind a full backlog - and settling a closed loop's batch can raise."""
        if self._watch is not None and self._watch[0].is_closed():
            self._watch = None  # its writer and timer went with it
            self._waiting.clear()
            self._drop_lines()

    def _write_through(self, fd: int) -> None:
        """Write the backlog, waiting for room (no event loop to wait in)."""
        try:
            while True:
                self._pump(fd)
                if not self._backlog:
                    return
                if not _writable(fd, self._stall_s):
                    raise TimeoutError(f"the stream took nothing for {self._stall_s} s")
        except OSError as error:
            self._give_up(error)
            raise

    def _pump(self, fd: int) -> None:
        """Write what the stream takes now, without waiting, and settle the batches it took."""
        try:
            self._stream.flush()
        except BlockingIOError:
            return
        # A blocking pipe or socket (stdout's default) never says it is full: a write to it waits
        # as long as its reader stalls. It is written at most a pipe buffer's worth at a time,
        # each once it says it has room for one. And a pipe is shared (every worker of
        # `serve --workers N` inherits stdout): only a write of at most PIPE_BUF is never split
        # by another process's, so each write is whole lines, as many as fit in PIPE_BUF.
        shared = not stat.S_ISREG(os.fstat(fd).st_mode)
        bounded = shared and os.get_blocking(fd)
        taken = self._taken
        while self._backlog:
            if bounded and not _writable(fd, 0):
                break
            chunk = _whole_lines(self._backlog) if shared else self._backlog
            try:
                done = os.write(fd, chunk)
            except BlockingIOError:
                break
            self._begun = chunk[done - 1] != 10  # b"\n"
            del self._backlog[:done]
            self._taken += done
        if self._taken > taken:
            self._moved = time.monotonic()
        while self._waiting and self._waiting[0][0] <= self._taken:
            self._waiting.popleft()[1].set_result(None)

    def _on_room(self, fd: int) -> None:
        try:
            self._pump(fd)
        except OSError as error:
            self._give_up(error)
        if not self._backlog:
            self._unwatch()

    def _check_stall(self) -> None:
        assert self._watch is not None
        loop, fd, _ = self._watch
        idle = time.monotonic() - self._moved
        if idle < self._stall_s:
            self._watch = (loop, fd, loop.call_later(self._stall_s - idle, self._check_stall))
        else:
            self._give_up(TimeoutError(f"the stream took nothing for {self._stall_s} s"))

    def _give_up(self, error: OSError) -> None:
        """Fail every batch waiting and drop its lines, but the end of the one begun."""
        self._unwatch()
        while self._waiting:
            taken = self._waiting.popleft()[1]
            taken.set_exception(error)
            taken.exception()  # retrieved here too: a lookup cancelled meanwhile never asks
        self._drop_lines()

    def _drop_lines(self) -> None:
        """Drop the backlog but the end of the line begun (a reader never sees a line torn)."""
        if self._begun and self._backlog:
            del self._backlog[self._backlog.index(b"\n") + 1 :]
        else:
            self._backlog.clear()

    def _unwatch(self) -> None:
        if self._watch is not None:
            loop, fd, stall = self._watch
            loop.remove_writer(fd)
            stall.cancel()
            self._watch = None


def _whole_lines(backlog: bytearray) -> bytearray:
    """The start of `backlog` written to a pipe at once: its whole lines that fit in PIPE_BUF, a
    write the pipe never splits nor lets another process's split. A line longer than that alone
    cannot be written so; it goes a PIPE_BUF at a time."""
    end = backlog.rfind(b"\n", 0, select.PIPE_BUF) + 1
    return backlog[: end or select.PIPE_BUF]


def _writable(fd: int, within_s: float) -> bool:
    """Whether `fd` takes more (or has failed: the write says how) within `within_s`."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(within_s * 1000))


def rotated_decision_logs(target: str, before: datetime) -> list[Path]:
    """The files a decision log (`target`, as CHILDLOOKUP_DECISION_LOG) was rotated into before
    `before`, oldest first: every line in them was written before that time."""
    if target in ("off", "stdout"):
        return []
    path = Path(target)
    pattern = re.compile(rf"^{re.escape(path.stem)}\.(\d{{8}}T\d{{6}}Z)\.\d+(-\d+)?\.jsonl$")
    found = []
    for candidate in path.parent.glob(f"{path.stem}.*.jsonl"):
        if match := pattern.match(candidate.name):
            rotated = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
            if rotated < before:
                found.append((rotated, candidate))
    return [candidate for _, candidate in sorted(found)]


class DecisionLog:
    """Appends decisions to a file or a stream, one JSON object per line."""

    def __init__(self, sink: _Sink | None, *, instance: str) -> None:
        self._sink = sink
        self._labels = {"app": "childlookup-gateway", "id": instance}
        self._heads: dict[tuple[str, str], str] = {}
        self._texts: dict[tuple[BaseModel, BaseModel], str] = {}
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._unwritable: Exception | None = None
        """Why the last write failed (its lines are lost), until a write succeeds."""
        self._outcome: Exception | tuple[asyncio.Future[None], int] | None = None
        """How the last round's write went: written, refused, or being taken (its lines)."""

    @classmethod
    def open(cls, target: str, *, instance: str, max_bytes: int = 0) -> DecisionLog:
        """`target` is "off", "stdout", or a file path (appended to, rotated past `max_bytes`
        unless that is 0)."""
        if target == "off":
            return cls(None, instance=instance)
        if target == "stdout":
            return cls(StreamSink(sys.stdout), instance=instance)
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(RotatingFile(path, max_bytes), instance=instance)

    def record(self, path: str, revision: str, request: BaseModel, result: BaseModel) -> str:
        """Log one decision and return its id (logged or not, so audit records always carry one)."""
        decision_id = random_id()
        if self._sink is None:
            return decision_id
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        line = (
            f'{{"decision_id":"{decision_id}",{self._head(path, revision)},'
            f'"timestamp":"{stamp}",{self._decided(request, result)}}}\n'
        )
        self._write(line)
        return decision_id

    def _write(self, line: str) -> None:
        """Lines logged during one round of the event loop's callbacks are written together when
        the round ends: one write a round rather than one a decision (~3 us for a file, a write
        and a pread, twice a lookup). The round ends before any later step of the lookups that
        logged them, so a decision is in the log before an audit record naming it is written.
        With no event loop in this thread the line is written at once."""
        with self._lock:
            self._pending.append(line)
            if len(self._pending) > 1:
                return  # a write is already due
        try:
            asyncio.get_running_loop().call_soon(self._flush)
        except RuntimeError:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            if not lines or self._sink is None:
                return
            try:
                taking = self._sink.write("".join(lines))
            # A full or gone volume, a closed stream - or any fault of the sink's own: whatever
            # stopped the write, its decisions must not be acted on as if it had been made.
            except Exception as error:
                self._failed(error, len(lines))
                self._outcome = error
            else:
                if isinstance(taking, asyncio.Future):
                    self._outcome = (taking, len(lines))
                else:
                    self._unwritable = self._outcome = None

    def _failed(self, error: Exception, lines: int) -> None:
        if self._unwritable is None:
            _logger.error(
                "decision log cannot be written: lookups fail closed until it can",
                extra={
                    "event": "decision_log_unwritable",
                    "context": {"error": type(error).__name__, "lines_lost": lines},
                },
            )
        self._unwritable = error

    async def written(self) -> None:
        """Wait until the lines logged so far are written (the end of this round of the event
        loop, or, on a stdout pipe that is full, until it takes them); PolicyError if the log
        could not take them. A decision that cannot be logged cannot be replayed by an auditor,
        so it must not be acted on: nothing is released on it."""
        if self._sink is None:
            return
        if self._pending:
            await asyncio.sleep(0)  # the round's write (`_write`) runs before this resumes
        outcome = self._outcome
        if isinstance(outcome, tuple):
            taking, lines = outcome
            try:
                await asyncio.shield(taking)
            except (OSError, ValueError) as error:
                self._failed(error, lines)
                outcome = error
            else:
                self._unwritable = outcome = None
        if outcome is not None:
            raise PolicyError(
                "The decision log cannot be written"
                f" ({type(outcome).__name__}), so no decision can be acted on."
            )

    def _head(self, path: str, revision: str) -> str:
        """The fields every decision at `path` under `revision` shares, as JSON (`"labels":...` to
        `"requested_by":...`): made once per pair rather than serialised for every decision. The
        id and timestamp, between which they sit, need no escaping (hex; ISO 8601)."""

        def make() -> str:
            shared = {
                "labels": self._labels,
                "bundles": {"childlookup": {"revision": revision}},
                "path": path,
                "masked": [],
                "requested_by": "childlookup-gateway",
            }
            return json.dumps(shared, separators=(",", ":"))[1:-1]

        return _kept(self._heads, (path, revision), make)

    def _decided(self, request: BaseModel, result: BaseModel) -> str:
        """`"input":...,"result":...` as JSON. Lookups repeat the same few inputs and answers (one
        role, one purpose, a few shapes of record), so the text is remembered per pair: policy
        inputs and answers are frozen, hashable values."""

        def make() -> str:
            both = {
                "input": request.model_dump(mode="json"),
                "result": result.model_dump(mode="json"),
            }
            return json.dumps(both, separators=(",", ":"))[1:-1]

        return _kept(self._texts, (request, result), make)

    def close(self) -> None:
        self._flush()
        if isinstance(self._sink, RotatingFile):
            self._sink.close()


def _kept(texts: dict[_K, str], key: _K, make: Callable[[], str]) -> str:
    """`texts[key]`, made and kept if missing. Past _REMEMBERED entries the memory is cleared, not
    evicted one by one: the few texts in use are made again at once."""
    text = texts.get(key)
    if text is None:
        text = make()
        if len(texts) >= _REMEMBERED:
            texts.clear()
        texts[key] = text
    return text


class LoggedPolicy:
    """One policy revision whose every decision is logged: each answer comes with its log id.

    A lookup holds one for its whole life, so a policy reload mid-lookup cannot split it between
    two revisions. An engine served from elsewhere (OPA) can change revision between two
    decisions: each of its decisions names the revision that made it, the first fixes the
    lookup's, and a later one from another revision is a PolicyError (the lookup fails closed,
    and asked again is decided by one revision throughout)."""

    def __init__(self, engine: PolicyEngine, log: DecisionLog) -> None:
        self._engine = engine
        self._log = log
        self.revision = engine.revision
        self._decided = False
        self._served = _served(type(engine))

    async def plan(self, request: PlanInput) -> tuple[PlanDecision, str]:
        with metrics.POLICY_SECONDS.labels("plan").time():
            if self._served:
                decision, revision = await cast(ServedPolicyEngine, self._engine).plan_at(request)
                self._decided_by(revision)
            else:
                decision = await self._engine.plan(request)
        decision_id = self._log.record(PLAN_ENTRYPOINT, self.revision, request, decision)
        await self._log.written()
        return decision, decision_id

    async def release(self, request: ReleaseInput) -> tuple[ReleaseDecision, str]:
        with metrics.POLICY_SECONDS.labels("release").time():
            if self._served:
                served = cast(ServedPolicyEngine, self._engine)
                decision, revision = await served.release_at(request)
                self._decided_by(revision)
            else:
                decision = await self._engine.release(request)
        decision_id = self._log.record(RELEASE_ENTRYPOINT, self.revision, request, decision)
        await self._log.written()
        return decision, decision_id

    def _decided_by(self, revision: str) -> None:
        if self._decided and revision != self.revision:
            raise PolicyError(
                f"The policy changed from revision {self.revision} to {revision} during this"
                " lookup: one revision must decide it all."
            )
        self.revision, self._decided = revision, True


@functools.cache
def _served(kind: type) -> bool:
    """Whether engines of this type are `ServedPolicyEngine`s, worked out once a type: checking
    a runtime protocol with isinstance costs ~40 us, and a lookup decides twice."""
    return all(callable(getattr(kind, name, None)) for name in ("plan_at", "release_at"))
