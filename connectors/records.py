"""A connector backend over a JSON Lines file, for the reference agencies and benchmarks.

Everything is validated and indexed when the file is loaded, so a bad file stops the connector at
start-up - where an operator sees it - rather than failing one lookup at a time, where it would look
to practitioners like a source with no record.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from connectors.backend import summarise_validation_error
from connectors.minimisation import minimise
from connectors.protocol import ConnectorRecord, FieldId, Identifiers, LookupRequest
from connectors.search import CandidateIndex

_IDENTIFIER_KINDS: Final = ("nhs_number", "upn", "local_id")
"""The identifiers a request can carry, and so the kinds records are indexed under. Not every
field of `Identifiers`: a record's `former_upns` are what it says of the child, indexed as UPNs
(`_index_keys`), never a kind a request asks by."""


class RecordFileError(ValueError):
    """A records file that cannot be served; the message names the line at fault."""


class FileBackend:
    """Records held in memory, indexed by every identifier they carry (NHS number, UPN - former
    UPNs too - and local id) and by demographics for candidate search.

    A lookup costs a few dictionary reads, and a demographic search a fraction of a millisecond,
    whatever the number of records, so the reference connectors measure the gateway rather than
    themselves.
    """

    def __init__(self, records: Sequence[ConnectorRecord]) -> None:
        """Index `records`; their order is the order lookups return them in.

        Raises ValueError when two records share a record_id, since the gateway treats a record_id
        as naming one record and would otherwise merge or drop one of them.
        """
        self._records = tuple(records)
        self._index: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        first_position: dict[str, int] = {}
        for position, record in enumerate(self._records):
            earlier = first_position.setdefault(record.record_id, position)
            if earlier != position:
                raise ValueError(
                    f"record {position + 1} repeats the record_id of record {earlier + 1}"
                )
            for key in _index_keys(record.identifiers):
                self._index[key].append(position)
        self._candidates = CandidateIndex(self._records)

    @classmethod
    def from_jsonl(cls, path: Path, *, fields: Collection[FieldId] | None = None) -> FileBackend:
        """Load one `ConnectorRecord` JSON object per line; blank lines are not allowed, so record
        n is line n in any error. With `fields`, each record keeps only those (as `minimise`
        leaves it) from the start, so no lookup can answer with more, nor pay for removing it.

        Raises RecordFileError naming the file and line of the first bad record; the message says
        what was wrong but never quotes the record, which is a child's data.
        """
        with out_of_collector_reach():
            records = read_records(path)
            if fields is not None:
                records = [minimise(record, fields) for record in records]
            try:
                return cls(records)
            except ValueError as error:
                raise RecordFileError(f"{path}: {error}") from None

    def identifiers(self) -> tuple[Identifiers, ...]:
        """The identifiers of every record held, in file order: what the agency tells the locator
        it holds (connectors.locator.LocatorPublisher.sync)."""
        return tuple(record.identifiers for record in self._records)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        """Records sharing any identifier with the request, in file order; then, when the request
        carries demographics, the candidates `CandidateIndex.search` finds for them. Each record
        once, at its first place: a record matched by identifier is not repeated as a candidate.
        """
        positions = {
            position
            for key in _index_keys(request.identifiers)
            for position in self._index.get(key, ())
        }
        matched = [self._records[position] for position in sorted(positions)]
        if request.demographics is None:
            return matched
        seen = {record.record_id for record in matched}
        candidates = self._candidates.search(request.demographics)
        return matched + [record for record in candidates if record.record_id not in seen]


def read_records(path: Path) -> list[ConnectorRecord]:
    """Every `ConnectorRecord` in a JSON Lines file, one per line, in order; raises
    RecordFileError naming the file and line of the first bad one, never quoting it."""
    records: list[ConnectorRecord] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                records.append(ConnectorRecord.model_validate_json(line))
            except ValidationError as error:
                reason = summarise_validation_error(error)
                raise RecordFileError(
                    f"{path}:{number}: not a connector record: {reason}"
                ) from None
    return records


@contextmanager
def out_of_collector_reach() -> Iterator[None]:
    """Load with the cyclic garbage collector paused, then freeze what was loaded.

    Every record is a tree of GC-tracked objects that lives as long as the connector. While loading,
    the collector would re-walk all records loaded so far, again and again (100k records: 4.6 s
    instead of 1.4 s); once serving, every full collection would walk them all, a 0.55 s pause in
    the middle of lookups whose deadlines are a few hundred milliseconds. `gc.freeze()` moves all
    objects alive now into the permanent generation, which the collector never walks.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


def _index_keys(identifiers: Identifiers) -> Iterator[tuple[str, str]]:
    """(kind, value) for each identifier present; the kind keeps an NHS number from ever matching
    a local id that happens to have the same characters. A record's former UPNs are keyed as UPNs,
    so a lookup by one finds the record under its new UPN, as the protocol asks (a request never
    carries any: connectors.protocol.LookupRequest refuses it)."""
    for kind in _IDENTIFIER_KINDS:
        value = getattr(identifiers, kind)
        if value is not None:
            yield kind, value
    for former in identifiers.former_upns or ():
        yield "upn", former
