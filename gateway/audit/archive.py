"""Retention: the oldest part of the audit log moved into archive segments that still verify.

The live log grows by about 4.5 KB a lookup. `childlookup audit archive` moves the records before a
cutoff into a segment file (gateway.audit.segments) and deletes them from the live log, in an order
that never loses one:

1. choose where the segment ends: the newest signed checkpoint written before the cutoff, after
   the live log's anchor, such that no owner notification of a record up to it is still pending
   or dead-lettered (the owner has not been told yet: those records stay live);
2. write the segment (to a temporary name, fsync'd, renamed, the directory fsync'd);
3. read it back from disk and verify it on its own, from where the previous segment ended;
4. in one transaction, check that the live log still holds exactly what was written, delete those
   records with their alerts, outbox receipts and every checkpoint before the last, and record the
   segment (`audit_archive`). The last checkpoint stays as the live log's anchor: its first record
   links to it, so the live log verifies from there (gateway.audit.chain.Anchor).

A crash before step 4 commits deletes nothing; the next run writes the segment again over the
leftover. The append-only guards are lifted only inside that transaction (see the stores).
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.audit.chain import Anchor
from gateway.audit.checkpoints import Checkpoint, CheckpointKeys, canonical_time
from gateway.audit.queries import (
    ANCHOR_QUERY,
    ARCHIVABLE_QUERY,
    ARCHIVE_COLUMNS,
    ARCHIVE_DELETES,
    ARCHIVE_INSERT,
    UNSENT_QUERY,
)
from gateway.audit.segments import (
    ArchivedSegment,
    SegmentReport,
    sync_directory,
    verify_segment,
    write_durably,
    write_segment,
)
from gateway.audit.types import utc_now

if TYPE_CHECKING:
    from gateway.audit.store import AuditStore

Run = Callable[[str, Sequence[object]], list[tuple[Any, ...]]]
"""Run one statement (`%s` placeholders) in the store's current transaction; the rows it read."""


# --- what the stores run, alike ------------------------------------------------------------------


def read_anchor(run: Run) -> Anchor | None:
    """Where the live log begins: the end of the last segment archived, or None."""
    rows = run(ANCHOR_QUERY, ())
    return Anchor(*rows[0]) if rows else None


def read_archived(run: Run) -> list[ArchivedSegment]:
    """Every segment archived from the log, oldest first."""
    rows = run(f"SELECT {ARCHIVE_COLUMNS} FROM audit_archive ORDER BY last_seq", ())  # noqa: S608
    return [
        ArchivedSegment(first, Anchor(last, records, head, checkpoint, file), sha256, at)
        for first, last, records, head, checkpoint, file, sha256, at in rows
    ]


def choose_end(
    run: Run, before: object, columns: str, max_records: int | None = None
) -> Checkpoint | None:
    """Where the next segment may end (step 1), `before` as the store compares times, `columns`
    the signed checkpoint's columns with `at` spelt as the chain hashes it, and at most
    `max_records` records after the anchor when given."""
    anchor = read_anchor(run)
    ((unsent,),) = run(UNSENT_QUERY, ())
    after = 0 if anchor is None else anchor.seq
    bound = unsent if unsent is not None else 2**62
    if max_records is not None:
        bound = min(bound, after + max_records + 1)
    rows = run(ARCHIVABLE_QUERY.format(columns=columns), (before, after, bound))
    return Checkpoint(*rows[0]) if rows else None


class ArchiveRefused(ValueError):
    """The live log is not as the segment was written from: nothing was deleted."""


def delete_archived(
    run: Run, segment: ArchivedSegment, start: Anchor | None, checkpoint_columns: str
) -> None:
    """Step 4, inside the store's transaction (with the append-only guards lifted): check, delete,
    record. Raises ArchiveRefused, for the store to roll back, if the log changed meanwhile."""
    end = segment.end
    if read_anchor(run) != start:
        raise ArchiveRefused("another archive ran meanwhile: run this one again")
    ((unsent,),) = run(UNSENT_QUERY, ())
    if unsent is not None and unsent <= end.seq:
        raise ArchiveRefused(f"record #{unsent} has an owner notification not yet delivered")
    rows = run(
        f"SELECT {checkpoint_columns} FROM audit_checkpoint WHERE seq = %s",  # noqa: S608
        (end.seq,),
    )
    if not rows or Checkpoint(*rows[0]).digest() != end.checkpoint:
        raise ArchiveRefused(f"checkpoint #{end.seq} in the live log is not the segment's last")
    ((live,),) = run("SELECT count(*) FROM audit_log WHERE seq <= %s", (end.seq,))
    if live != end.records - (0 if start is None else start.records):
        raise ArchiveRefused(f"the live log's records up to #{end.seq} are not the segment's")
    for statement in ARCHIVE_DELETES:
        run(statement, (end.seq,))
    run(
        ARCHIVE_INSERT,
        (
            segment.first_seq,
            end.seq,
            end.records,
            end.head,
            end.checkpoint,
            end.file,
            segment.sha256,
            segment.at,
        ),
    )


# --- archiving -----------------------------------------------------------------------------------


def write_next_segment(
    store: AuditStore, directory: Path, before: datetime, max_records: int | None = None
) -> Path | None:
    """Steps 1 and 2 alone: write the segment the next archive would, deleting nothing (None when
    nothing is due). A segment left by an interrupted run, starting where this one does, is
    removed first: its records are all still in the live log."""
    start = store.archive_anchor()
    end = store.archivable(before, max_records)
    if end is None:
        return None
    first = 1 if start is None else start.seq + 1
    for leftover in directory.glob(f"audit-{first}-*.jsonl.gz"):
        leftover.unlink()
    with store.segment_rows(start, end) as rows:
        return write_segment(directory, rows)


def archive_log(
    store: AuditStore,
    directory: Path,
    before: datetime,
    keys: CheckpointKeys,
    *,
    max_records: int | None = None,
) -> ArchivedSegment | None:
    """Archive the records before `before` into a segment in `directory` (steps 1-4); the segment,
    or None when nothing is due. With `max_records`, the segment holds at most that many records
    (call again for the rest): deleting them is one transaction, which on SQLite holds the log's
    write lock, ~34 us a record on a 2-core VM, while appends wait 250 ms at most before the
    lookup fails closed. Raises ValueError, having deleted nothing, when the segment written does
    not verify or the live log changed meanwhile, or when `directory` holds a segment file it would
    replace that is not this log's own (`_refuse_foreign_segments`)."""
    start = store.archive_anchor()
    _refuse_foreign_segments(store, directory, keys, start)
    path = write_next_segment(store, directory, before, max_records)
    if path is None:
        return None
    report = verify_segment(path, keys, start)
    if not report.ok or report.end is None:
        raise ValueError(
            f"the segment written does not verify, so nothing was deleted: {report.describe()}"
        )
    first = 1 if start is None else start.seq + 1
    segment = ArchivedSegment(first, report.end, report.sha256, canonical_time(utc_now()))
    store.archive(segment, start)
    return segment


def _refuse_foreign_segments(
    store: AuditStore, directory: Path, keys: CheckpointKeys, start: Anchor | None
) -> None:
    """Raise ValueError when `directory` holds a segment file the next archive would replace (one
    starting where this log's live records do) that is not this log's own leftover - a whole
    segment, ending at a checkpoint the live log still holds - from an interrupted run: another
    log's archive (two logs archived into one directory, or a log made afresh after a rebuild),
    whose records are nowhere else."""
    first = 1 if start is None else start.seq + 1
    for path in sorted(directory.glob(f"audit-{first}-*.jsonl.gz")):
        report = verify_segment(path, keys, start) if path.is_file() else None
        end = None if report is None or not report.ok else report.end
        live = [] if end is None else store.checkpoints(end.seq - 1, 1)
        if end is not None and live and live[0].digest() == end.checkpoint:
            continue  # an interrupted run's: its records are all still live
        raise ValueError(
            f"{path} is not a segment of this audit log that an interrupted run left, and"
            " archiving would replace it (another log's archive?): stopped before it; give"
            " each log a directory of its own, or move the file aside"
        )


def archive_files(paths: Iterable[Path], directory: Path) -> list[Path]:
    """Gzip each file into `directory` (durably) and then remove it: rotated decision logs."""
    directory.mkdir(parents=True, exist_ok=True)
    archived = []
    for path in paths:
        target = directory / f"{path.name}.gz"

        def pack(out: Any, source: Path = path) -> None:
            with source.open("rb") as data, gzip.GzipFile(fileobj=out, mode="wb") as packed:
                shutil.copyfileobj(data, packed, 1 << 20)

        write_durably(target, pack)
        path.unlink()
        sync_directory(path.parent)
        archived.append(target)
    return archived


# --- verifying the archive -----------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveReport:
    """The verdict on every segment the live log says was archived, in order."""

    ok: bool
    segments: list[SegmentReport] = field(default_factory=list)
    problem: str = ""
    strays: list[str] = field(default_factory=list)
    """Segment files the log does not list: left by an interrupted run, their records live."""

    @property
    def checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint the segments hold, oldest first, once each."""
        held = {c.seq: c for report in self.segments for c in report.checkpoints}
        return [held[seq] for seq in sorted(held)]

    def describe(self) -> str:
        lines = [report.describe() for report in self.segments if report.ok]
        if not self.ok:
            lines.append(f"archive TAMPERED or incomplete: {self.problem}")
        else:
            lines.append(f"archive intact: {len(self.segments)} segments join up with the live log")
        lines.extend(f"not part of the archive (an interrupted run's): {n}" for n in self.strays)
        return "\n".join(lines)


def verify_archive(
    segments: Sequence[ArchivedSegment], directory: Path, keys: CheckpointKeys
) -> ArchiveReport:
    """Check each segment the live log lists (`store.archived()`): it is in `directory`, verifies
    on its own from where the one before ended, ends where the log recorded, and is the file that
    was archived (its SHA-256). The last one's end is the live log's anchor, which `verify` checks
    the live log against."""
    reports: list[SegmentReport] = []
    start: Anchor | None = None
    listed = {s.end.file for s in segments}
    strays = sorted(p.name for p in directory.glob("audit-*.jsonl.gz") if p.name not in listed)
    for segment in segments:
        path = directory / segment.end.file
        span = f"records {segment.first_seq}..{segment.end.seq}"
        if not path.is_file():
            problem = f"segment {segment.end.file} ({span}) is not in {directory}"
            return ArchiveReport(False, reports, problem, strays)
        report = verify_segment(path, keys, start)
        if not report.ok:
            return ArchiveReport(False, reports, report.describe(), strays)
        if report.end != segment.end or report.sha256 != segment.sha256:
            problem = (
                f"archive segment {path.name} is not the file archived as {span}"
                " (its end or SHA-256 differs from the live log's record of it)"
            )
            return ArchiveReport(False, reports, problem, strays)
        reports.append(report)
        start = segment.end
    return ArchiveReport(True, reports, strays=strays)
