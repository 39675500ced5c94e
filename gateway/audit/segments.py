"""Archive segments: the records taken out of the live audit log, in files that verify on their own.

A segment holds every record from just after the previous segment's end (or the first record) up
to and including a signed checkpoint, with everything needed to check them: their alerts, every
checkpoint among them (and the previous segment's last, which they link to), and the outbox
receipts of the owner notifications they queued (delivered by then: no payload is kept). It is
gzipped JSON lines, `audit-<first seq>-<last seq>.jsonl.gz`:

    {"segment": "childlookup audit segment v1", "first_seq": F, "last_seq": L,
     "start": null | {"seq", "records", "head", "checkpoint", "file"}, "end": {...}}
    {"checkpoint": {"seq", "hash", "at", "mac", "records", "prev", "key_id", "signature"}}  ...
    {"alert": {"audit_id", "kind", "at", "subject", "role", "organisation", "justification"}}  ...
    {"receipt": {"message_id", "audit_id", "source", "state"}}  ...
    {"record": {"seq", "format", "audit_id", "at", ..., "body", "prev_hash", "hash"}}  ...

`start` is the anchor the segment continues from (the previous segment's `end`), `end` the one it
ends at: the signed checkpoint that stays in the live log as its first. Columns are named as in
the database and `at` is spelt as the chain hashes it (gateway.audit.chain), so the segment is
checked by the same `verify_chain` as the live log, from `start`. The records come last, so a
reader holds the small parts and streams the records, as `verify` does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final

from gateway.audit.chain import (
    ALERT_COLUMNS,
    CHECKPOINT_COLUMNS,
    RECORD_COLUMNS,
    AlertRow,
    Anchor,
    ChainRow,
    CheckpointRow,
    signed_checkpoint,
    verify_chain,
)
from gateway.audit.checkpoints import Checkpoint, CheckpointKeys

SEGMENT_FORMAT: Final = "childlookup audit segment v1"
ReceiptRow = tuple[str, str, str, str]
"""An owner notification's receipt: (message_id, audit_id, source, state)."""


def _names(columns: str) -> tuple[str, ...]:
    return tuple(name.strip().replace("{at}", "at") for name in columns.split(","))


_KINDS: Final = {
    "checkpoint": _names(CHECKPOINT_COLUMNS),
    "alert": _names(ALERT_COLUMNS),
    "receipt": ("message_id", "audit_id", "source", "state"),
    "record": _names(RECORD_COLUMNS),
}


@dataclass(frozen=True)
class SegmentRows:
    """What a store reads, in one snapshot, for a segment from `start` to `end`."""

    start: Anchor | None
    end: Checkpoint
    checkpoints: list[CheckpointRow]
    alerts: list[AlertRow]
    receipts: list[ReceiptRow]
    records: Iterable[ChainRow]

    @property
    def first_seq(self) -> int:
        return 1 if self.start is None else self.start.seq + 1

    @property
    def name(self) -> str:
        return segment_name(self.first_seq, self.end.seq)


@dataclass(frozen=True)
class ArchivedSegment:
    """A segment as the live log records it (`audit_archive`): where it ends, the file, its
    SHA-256, and when it was archived."""

    first_seq: int
    end: Anchor
    sha256: str
    at: str


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"audit-{first_seq}-{last_seq}.jsonl.gz"


def write_segment(directory: Path, rows: SegmentRows) -> Path:
    """Write the segment durably: to a temporary name, fsync'd, renamed into place and the
    directory fsync'd, so a crash leaves either no segment or a whole one. A segment of the same
    name (left by a run interrupted before it deleted anything) is replaced."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / rows.name
    header = {
        "segment": SEGMENT_FORMAT,
        "first_seq": rows.first_seq,
        "last_seq": rows.end.seq,
        "start": None if rows.start is None else asdict(rows.start),
        "end": asdict(anchor_at(rows.end, rows.name)),
    }

    def lines() -> Iterator[str]:
        yield json.dumps(header)
        for kind, values in (
            ("checkpoint", rows.checkpoints),
            ("alert", rows.alerts),
            ("receipt", rows.receipts),
            ("record", rows.records),
        ):
            names = _KINDS[kind]
            for row in values:
                yield json.dumps({kind: dict(zip(names, row, strict=True))})

    write_durably(path, lambda out: _gzip_lines(out, lines()))
    return path


def anchor_at(checkpoint: Checkpoint, file: str) -> Anchor:
    """The anchor a segment ending at `checkpoint` leaves the log."""
    return Anchor(
        checkpoint.seq, checkpoint.records, checkpoint.head, checkpoint.digest(), file=file
    )


def _gzip_lines(out: IO[bytes], lines: Iterable[str]) -> None:
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed:
        for line in lines:
            packed.write(line.encode() + b"\n")


def write_durably(path: Path, fill: Callable[[IO[bytes]], None]) -> None:
    """Create `path` with what `fill(file)` writes, surviving a crash whole or not at all. A
    write that fails (a full disk, say) removes its partial file: left behind, it would keep the
    space the next attempt needs, and sit in the archive beside the segments."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a write's error names no file: name the one asked for
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename or removal in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading and verifying ----------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentReport:
    """The verdict on one segment: it verified from `start` and ends at `end`, or why not."""

    name: str
    ok: bool
    problem: str = ""
    end: Anchor | None = None
    sha256: str = ""
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """Its signed checkpoints, for comparing with what witnesses kept."""

    def describe(self) -> str:
        if not self.ok:
            return f"archive segment {self.name}: {self.problem}"
        assert self.end is not None
        return f"archive segment {self.name} intact: records to #{self.end.seq}"


class SegmentDamaged(ValueError):
    """The file is not a readable segment: not gzip, not JSON lines, or not in this format."""


@dataclass
class _Held:
    """A segment's parts other than its records, read before them."""

    checkpoints: list[CheckpointRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    receipts: list[ReceiptRow] = field(default_factory=list)


def verify_segment(path: Path, keys: CheckpointKeys, start: Anchor | None) -> SegmentReport:
    """Check a segment on its own: its chain and checkpoints from `start` (the previous segment's
    end, None for the first), and that it ends exactly at the checkpoint its header names."""
    name = path.name
    try:
        with gzip.open(path, "rt", encoding="utf-8") as text:
            claimed_start, end = _header(next(text, ""))
            if _unnamed(claimed_start) != _unnamed(start):
                where = "the log's first record" if start is None else f"record #{start.seq}"
                return SegmentReport(name, False, f"does not continue from {where}")
            held, records = _split(_parsed(text))
            chain = verify_chain(
                records,
                held.alerts,
                held.checkpoints,
                keys,
                every=1,  # a segment ends at a checkpoint: no record may follow its last
                notices=[receipt[:3] for receipt in held.receipts],
                start=start,
            )
    except (OSError, EOFError, SegmentDamaged) as exc:
        return SegmentReport(name, False, f"cannot be read: {exc}")
    if not chain.ok:
        return SegmentReport(name, False, chain.describe())
    if (
        chain.last_checkpoint is None
        or anchor_at(chain.last_checkpoint, end.file) != end
        or records.last_seq != end.seq
    ):
        return SegmentReport(name, False, f"does not end at its checkpoint #{end.seq}")
    signed = [signed_checkpoint(row) for row in held.checkpoints if row[7] is not None]
    return SegmentReport(name, True, end=end, sha256=file_sha256(path), checkpoints=signed)


def _unnamed(anchor: Anchor | None) -> Anchor | None:
    """An anchor compared by what it says of the chain, not by which file holds the records."""
    return None if anchor is None else replace(anchor, file="")


def _header(line: str) -> tuple[Anchor | None, Anchor]:
    try:
        values = json.loads(line)
        if values["segment"] != SEGMENT_FORMAT:
            raise SegmentDamaged(f"it is not a segment in this format ({values['segment']!r})")
        start = None if values["start"] is None else Anchor(**values["start"])
        return start, Anchor(**values["end"])
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, SegmentDamaged):
            raise
        raise SegmentDamaged(f"it has no segment header ({exc})") from exc


def _parsed(text: Iterable[str]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(kind, row) for each line after the header, the row as the tuple `verify_chain` reads."""
    for number, line in enumerate(text, start=2):
        try:
            ((kind, values),) = json.loads(line).items()
            yield kind, tuple(values[column] for column in _KINDS[kind])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SegmentDamaged(f"line {number} is not a segment line ({exc})") from exc


def _split(lines: Iterator[tuple[str, tuple[Any, ...]]]) -> tuple[_Held, _Records]:
    """Read the parts before the first record (checkpoints, alerts, receipts: small, and needed
    first by `verify_chain`), and leave the records to be streamed."""
    held = _Held()
    parts: dict[str, list[Any]] = {
        "checkpoint": held.checkpoints,
        "alert": held.alerts,
        "receipt": held.receipts,
    }
    for kind, row in lines:
        if kind == "record":
            return held, _Records(row, lines)
        parts[kind].append(row)
    return held, _Records(None, lines)


class _Records:
    """A segment's records, streamed, remembering the last one's sequence number."""

    def __init__(
        self, first: tuple[Any, ...] | None, rest: Iterator[tuple[str, tuple[Any, ...]]]
    ) -> None:
        self._first = first
        self._rest = rest
        self.last_seq = 0

    def __iter__(self) -> Iterator[ChainRow]:
        if self._first is None:
            return
        row = self._first
        while True:
            self.last_seq = row[0]
            yield row
            following = next(self._rest, None)
            if following is None:
                return
            kind, row = following
            if kind != "record":
                raise SegmentDamaged(f"a {kind} after the records")
