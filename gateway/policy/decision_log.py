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
On stdout (`StreamSink`) a pipe read slowly is waited for, not a log that cannot be written.
"""

from __future__ import annotations

import asyncio
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
"""Longest a write to stdout waits for a full pipe to take more of a round's lines (`StreamSink`):
a pipe still draining, however slowly, is waited for; one taking nothing for this long is not."""

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
    reopen it."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._fd = self._open()
        self._looked = time.monotonic()

    def _open(self) -> int:
        return os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, text: str) -> None:
        now = time.monotonic()
        if now - self._looked >= _FOLLOW_S:
            self._looked = now
            if not self._is_current():
                self._reopen()
        data = text.encode()
        while data:
            data = data[os.write(self._fd, data) :]
        if self._max_bytes and os.fstat(self._fd).st_size >= self._max_bytes:
            self._rotate()

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
    only.

    In a container stdout is a pipe whose reader (the runtime's log driver) can fall behind, and
    uvloop or a parent process may have made it non-blocking. Written through Python's buffered
    stream, a full pipe then raised BlockingIOError - every decision of the round failed, for a
    pipe full for a moment - and a write the pipe took in part left half a line, which the next
    write ran on into. Here a full pipe is waited for (in the writing thread, the event loop's, as
    a blocking stdout is) for up to `stall_s`; a pipe that takes nothing for that long is a log
    that cannot be written (the round's decisions fail closed, TimeoutError), and the rest of a
    line begun is kept and written first next time, so a reader never sees a line torn. What the
    process wrote to the stream through Python's buffer is flushed first, so it stays ahead of
    the decisions logged after it."""

    def __init__(self, stream: TextIO, *, stall_s: float = _STALL_S) -> None:
        self._stream = stream
        self._stall_s = stall_s
        self._rest = b""
        """The end of a line the last write stopped in the middle of."""

    def write(self, text: str) -> None:
        fd = self._stream.fileno()  # ValueError once closed: fails closed, as a gone volume
        while True:
            try:
                self._stream.flush()
                break
            except BlockingIOError:
                _wait_writable(fd, self._stall_s)
        data, continued = self._rest + text.encode(), bool(self._rest)
        self._rest = b""
        # A blocking pipe or socket (stdout's default) never says it is full: a write to it waits
        # as long as its reader stalls. It is written a pipe buffer's worth at a time, each once
        # the stream says it has room for one, so a stall is seen as on a non-blocking one.
        bounded = os.get_blocking(fd) and not stat.S_ISREG(os.fstat(fd).st_mode)
        done = 0
        try:
            while done < len(data):
                try:
                    if bounded:
                        _wait_writable(fd, self._stall_s)
                        done += os.write(fd, data[done : done + select.PIPE_BUF])
                    else:
                        done += os.write(fd, data[done:])
                except BlockingIOError:
                    _wait_writable(fd, self._stall_s)
        except OSError:
            begun = data.rfind(b"\n", 0, done) + 1  # where the line being written starts
            if begun < done or (begun == 0 and continued):
                self._rest = data[done : data.index(b"\n", done) + 1]
            raise


def _wait_writable(fd: int, stall_s: float) -> None:
    """Wait until `fd` takes more (or has failed: the write says how); TimeoutError if it has not
    within `stall_s`."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not poller.poll(stall_s * 1000):
        raise TimeoutError(f"the stream took nothing for {stall_s} s")


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
        the round ends: one write a round rather than one a decision (a write and a stat, ~5 us,
        twice a lookup). The round ends before any later step of the lookups that logged them,
        so a decision is in the log before an audit record naming it is written. With no event
        loop in this thread the line is written at once."""
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
                self._sink.write("".join(lines))
            except (OSError, ValueError) as error:  # a full or gone volume, a closed stream
                if self._unwritable is None:
                    _logger.error(
                        "decision log cannot be written: lookups fail closed until it can",
                        extra={
                            "event": "decision_log_unwritable",
                            "context": {"error": type(error).__name__, "lines_lost": len(lines)},
                        },
                    )
                self._unwritable = error
            else:
                self._unwritable = None

    async def written(self) -> None:
        """Wait until the lines logged so far are written (the end of this round of the event
        loop); PolicyError if the log could not take them. A decision that cannot be logged cannot
        be replayed by an auditor, so it must not be acted on: nothing is released on it."""
        if self._sink is None:
            return
        if self._pending:
            await asyncio.sleep(0)  # the round's write (`_write`) runs before this resumes
        if self._unwritable is not None:
            raise PolicyError(
                "The decision log cannot be written"
                f" ({type(self._unwritable).__name__}), so no decision can be acted on."
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
