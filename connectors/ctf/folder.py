"""A folder of Common Transfer Files, read into one index of current records.

The folder is the authority's drop point for CTFs (from schools' systems or the DfE's
school-to-school service). `CtfFolder.refresh` looks at it again: files that are new, changed
(size, modification time or inode) or gone are found by their `stat` alone, and only those are
read. The rules:

- A pupil found in several files - a transfer, or a school's roll sent again - is served from the
  newest file by header `DateTime` (the file name breaks a tie). A newer record whose `FormerUPN` is
  an older file's record's UPN replaces that record too, but only when it is the same child by
  name, date of birth and sex; never a pupil of its own file, nor a different child. A record
  kept so keeps its UPN: the newer record is served without that former UPN.
- A file that cannot be read is reported (logged with its name and the reason, never its content)
  and does not stop the others being served, whatever went wrong reading it (a bug included). If
  it was read well before, what it held then is still served - a half-copied or mangled
  replacement must not make a school's pupils vanish - until the file is fixed or removed. A
  removed file's pupils are no longer served: removal is deliberate.
- Refused besides bad XML, and read again only when they change: a file over `MAX_FILE_BYTES`; a
  symbolic link (it could point anywhere on the server); a header `DateTime` more than
  `FUTURE_SKEW` ahead of the clock (it would outrank every later file for good).
- Only regular `*.xml` files are read (any case), not hidden ones (`.name`): copy a file in under
  a hidden or other name and rename it, so that it is never seen half-written. A file written
  within the last second is read again on the next refresh, in case it was still being written.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from connectors.ctf.reader import CtfFileError, TransferFile, TransferPupil, read_ctf
from connectors.ctf.schools import NO_SCHOOL_CONTACTS, SchoolContacts
from connectors.logs import log_event
from connectors.protocol import ConnectorRecord, PersonName, Sex
from connectors.records import FileBackend

_SETTLE_NS: Final = 1_000_000_000
"""A file modified this recently may still be being written, so its stat cannot yet vouch that an
unchanged file was read whole: file times can be as coarse as a clock tick."""

MAX_FILE_BYTES: Final = 32 * 2**20
"""The largest CTF read. A large secondary school's whole roll with its histories is a few tens of
megabytes at most; parsed, a file takes about 25 times its size in memory, so one file bounds the
connector's memory to under a gigabyte."""

FUTURE_SKEW: Final = timedelta(hours=1)
"""How far ahead of this server's clock a header `DateTime` may be: schools' clocks drift, but
a file from the future would be the newest forever and its records' as-of a lie."""

_logger = logging.getLogger("childlookup.connector.ctf")

_Fingerprint = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class CtfFileStatus:
    """How one file of the folder stands, for operators: what is served from it and why not."""

    name: str
    pupils: int
    """Pupils served from this file's last good reading (some may be superseded by newer files)."""
    skipped: int
    error: str | None
    """Why the file's current content cannot be read; None when it was read."""


@dataclass(slots=True)
class _File:
    fingerprint: _Fingerprint
    settled: bool
    good: TransferFile | None = None
    error: str | None = None
    skipped: tuple[str, ...] = field(default_factory=tuple)


class CtfFolder:
    """The state of one folder of CTFs between refreshes. Not thread-safe: one refresh at a time
    (the backend runs them one after another)."""

    def __init__(self, path: Path, contacts: SchoolContacts = NO_SCHOOL_CONTACTS) -> None:
        self.path = path
        self._contacts = contacts
        self._files: dict[str, _File] = {}
        self._stale = False
        """Whether what is served changed since the last index was built: kept across a refresh
        that fails part-way, so a removal seen then is never lost."""

    def refresh(self) -> FileBackend | None:
        """Look at the folder again; a new index of what it now holds if anything served changed,
        else None. Raises OSError when the folder itself cannot be listed (the caller keeps serving
        what it has)."""
        now = time.time_ns()
        seen: dict[str, os.stat_result] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                # Links are listed, to be refused by name; anything else not a file is ignored.
                listed = entry.is_file(follow_symlinks=False) or entry.is_symlink()
                if _is_ctf_name(entry.name) and listed:
                    seen[entry.name] = entry.stat(follow_symlinks=False)
        for name in sorted(self._files.keys() - seen.keys()):
            removed = self._files.pop(name)
            self._stale = self._stale or removed.good is not None
            log_event(_logger, logging.INFO, "ctf_file_removed", file=name)
        for name, status in sorted(seen.items()):
            if self._read_if_changed(name, status, now):
                self._stale = True
        if not self._stale:
            return None
        index = self.index()
        self._stale = False
        return index

    def index(self) -> FileBackend:
        """Every pupil's newest record across the files last read well."""
        return FileBackend(_newest(self._good_files()))

    def status(self) -> tuple[CtfFileStatus, ...]:
        return tuple(
            CtfFileStatus(
                name=name,
                pupils=len(state.good.pupils) if state.good else 0,
                skipped=len(state.skipped),
                error=state.error,
            )
            for name, state in sorted(self._files.items())
        )

    def _good_files(self) -> list[tuple[str, TransferFile]]:
        return [(name, s.good) for name, s in self._files.items() if s.good is not None]

    def _read_if_changed(self, name: str, status: os.stat_result, now: int) -> bool:
        """Read the file if it may have changed; whether what it serves changed."""
        fingerprint = (status.st_mtime_ns, status.st_size, status.st_ino)
        settled = now - status.st_mtime_ns > _SETTLE_NS
        state = self._files.get(name)
        if state is not None and state.fingerprint == fingerprint and state.settled:
            return False
        if state is None:
            state = self._files[name] = _File(fingerprint, settled)
        state.fingerprint, state.settled = fingerprint, settled
        try:
            read = self._read(name, now)
        except FileNotFoundError:  # removed since listed: the next refresh sees it gone
            state.settled = False
            return False
        except Exception as error:  # one file, however bad or whatever bug, stops no other
            reason = _reason(error)
            if reason != state.error:
                log_event(
                    _logger,
                    logging.ERROR,
                    "ctf_file_rejected",
                    file=name,
                    reason=reason,
                    serving_previous=state.good is not None,
                )
            state.error = reason
            return False
        if read.skipped != state.skipped or state.error is not None or read != state.good:
            log_event(
                _logger,
                logging.WARNING if read.skipped else logging.INFO,
                "ctf_file_read",
                file=name,
                pupils=len(read.pupils),
                skipped="; ".join(read.skipped) or 0,
            )
        state.error, state.skipped = None, read.skipped
        if read == state.good:
            return False
        state.good = read
        return True

    def _read(self, name: str, now: int) -> TransferFile:
        """The file read as a CTF, refusing (CtfFileError) a link, anything but a regular file, a
        file over `MAX_FILE_BYTES` and a header more than `FUTURE_SKEW` ahead of `now` (ns)."""
        try:
            # No following a link swapped in since listing; no waiting on a FIFO.
            fd = os.open(self.path / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise CtfFileError("a symbolic link: only files in the folder are read") from None
            raise
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CtfFileError("not a regular file")
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CtfFileError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        read = read_ctf(data, self._contacts)
        if read.created.timestamp() > now / 1e9 + FUTURE_SKEW.total_seconds():
            raise CtfFileError("the Header DateTime is more than an hour ahead of this clock")
        return read


def crash_site(error: BaseException) -> str:
    """Where an unexpected exception was raised, as "file:line in function": what a log may say
    of it, since its message can quote a pupil's data."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"


def _reason(error: Exception) -> str:
    """Why a file was not read, in words that quote nothing from it."""
    if isinstance(error, CtfFileError):
        return str(error)
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return f"unexpected {type(error).__name__} at {crash_site(error)}"


def _is_ctf_name(name: str) -> bool:
    return name.lower().endswith(".xml") and not name.startswith(".")


def _newest(files: list[tuple[str, TransferFile]]) -> list[ConnectorRecord]:
    """One record per pupil: the newest file's, oldest files read first so newer ones overwrite.

    A pupil's `FormerUPN` retires the record an older file holds under it only when that record
    is the same child by its own details (`_same_pupil`): a former UPN keyed wrong must never make
    another child's record vanish. A pupil listed in the same file is never retired by it - the
    school sent both as on its roll - so the answer never depends on the order of the pupils."""
    chosen: dict[str, TransferPupil] = {}
    for _, read in sorted(files, key=lambda item: (item[1].created, item[0])):
        listed = {pupil.record.identifiers.upn for pupil in read.pupils}
        for pupil in read.pupils:
            upn = pupil.record.identifiers.upn
            assert upn is not None  # the reader skips pupils without one
            chosen.pop(upn, None)  # re-inserted last, so the answer order follows recency
            former = pupil.former_upn
            if former is not None and former not in listed:
                older = chosen.get(former)
                if older is not None and _same_pupil(older.record, pupil.record):
                    del chosen[former]
            chosen[upn] = pupil
    return [_without_claimed(pupil.record, chosen) for pupil in chosen.values()]


def _without_claimed(record: ConnectorRecord, chosen: dict[str, TransferPupil]) -> ConnectorRecord:
    """`record` without a former UPN that another record served is held under: that record was
    kept because it is not plainly this child (or the same roll lists both), so the UPN names it,
    and a lookup by it must not link this record too - the gateway would join two children in one
    answer (the one asked for shown with the other's name and school)."""
    formers = record.identifiers.former_upns or ()
    kept = tuple(upn for upn in formers if upn not in chosen)
    if kept == formers:
        return record
    identifiers = record.identifiers.model_copy(update={"former_upns": kept or None})
    return record.model_copy(update={"identifiers": identifiers})


def _same_pupil(older: ConnectorRecord, newer: ConnectorRecord) -> bool:
    """Whether `newer`, naming `older`'s UPN as its former one, is plainly the same child: both
    named, a given (or preferred) name and a family (or former) name in common, and no
    contradiction in date of birth or sex. Anything less keeps both records: merging the wrong
    child is worse than serving one child twice, which the gateway reports as ambiguous."""
    if older.name is None or newer.name is None:
        return False
    if None not in (older.date_of_birth, newer.date_of_birth) and (
        older.date_of_birth != newer.date_of_birth
    ):
        return False
    known = {Sex.MALE, Sex.FEMALE}
    if older.sex in known and newer.sex in known and older.sex != newer.sex:
        return False
    return bool(_given(older.name) & _given(newer.name)) and bool(
        _family(older.name) & _family(newer.name)
    )


def _given(name: PersonName) -> set[str]:
    forenames = name.given.casefold().split()
    return {name.given.casefold(), *forenames[:1], *(n.casefold() for n in name.known_as)}


def _family(name: PersonName) -> set[str]:
    return {name.family.casefold(), *(n.casefold() for n in name.former_family)}
