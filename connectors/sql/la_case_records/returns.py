"""Statutory returns as snapshots: what a parsed return holds, and how it lands in the schema.

The children in need census and the SSDA903 return are annual snapshots an authority already
produces from its case system. Loading one gives a connector indicators for an authority whose
case system it cannot read live - as of the return's reference date, which every record it
touches then carries as `as_of`, so a practitioner sees how old "on a plan" is.

Rules, chosen so that re-importing is always safe:
- A child is found by LA child id. One the schema does not have yet is created from the return's
  identifiers (no name or address: returns carry none; the authority's own system fills them).
  One it has keeps what the authority's system wrote: the return fills only empty identifier
  columns, since the case system may have corrected them since the snapshot was taken.
- For each child a return carries, that return's tables (`RETURN_TABLES`) are replaced by what
  the return says, so importing one file twice leaves the same rows as importing it once, and a
  later year's return replaces an earlier one's episodes for the children it carries.
- A child's `as_of` is the oldest reference date among the returns whose rows it holds
  (`return_snapshots`): indicators from last year's SSDA903 beside this year's census are only
  as fresh as last year's.
- Everything happens in one transaction, after the whole file has been read and checked: a
  malformed file changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.sql.la_case_records.schema import (
    GENDER_CODES,
    LA_CHILD_ID,
    RETURN_TABLES,
    children,
    return_snapshots,
    statutory_imports,
)

_CHUNK: Final = 500
"""Children per IN list: well under every database's bound-parameter limit."""

MAX_REPORTED: Final = 10
"""Problems listed at most in one error; a file with more is reported as having that many more."""


class ReturnFileError(ValueError):
    """A return file that cannot be imported. The message names the file and, per problem, the
    line or element and what is wrong - never a value from the file, which is a child's data."""


@dataclass
class Problems:
    """Problems found while reading one file, reported together so one attempt shows them all."""

    file: str
    found: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.found.append(f"{self.file}:{where}: {what}")

    def raise_any(self) -> None:
        if not self.found:
            return
        shown = self.found[:MAX_REPORTED]
        more = len(self.found) - len(shown)
        tail = [f"and {more} more problems"] if more else []
        raise ReturnFileError("\n".join([*shown, *tail]))


@dataclass(frozen=True, slots=True)
class ReturnChild:
    """A child as a return identifies them."""

    la_child_id: str
    upn: str | None = None
    former_upn: str | None = None
    birth_date: date | None = None
    gender: str | None = None


@dataclass(frozen=True)
class ParsedReturn:
    """A whole return, read and checked: its children, and the rows of each of its tables."""

    name: str
    reference_date: date
    children: Sequence[ReturnChild]
    rows: dict[str, list[dict[str, Any]]]
    """Rows per table name in `RETURN_TABLES[name]`, each with its `la_child_id`."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did, for the operator: counts only."""

    return_name: str
    reference_date: date
    children: int
    created: int
    rows: dict[str, int]


async def store_return(
    connection: AsyncConnection, parsed: ParsedReturn, digest: str
) -> ImportSummary:
    """Apply `parsed` inside the caller's transaction (see the module's rules)."""
    as_of = _midnight(parsed.reference_date)
    now = datetime.now(UTC)
    ids = [child.la_child_id for child in parsed.children]
    existing: dict[str, Any] = {}
    for chunk in _chunks(ids):
        query = select(children).where(children.c.la_child_id.in_(chunk))
        existing.update({row.la_child_id: row for row in await connection.execute(query)})
    older = await _older_snapshots(connection, ids, parsed.name)
    new = [child for child in parsed.children if child.la_child_id not in existing]
    if new:
        await connection.execute(
            insert(children),
            [
                {**_identity(child), "shielded": False, "as_of": as_of, "updated_at": now}
                for child in new
            ],
        )
    for child in parsed.children:
        row = existing.get(child.la_child_id)
        if row is None:
            continue
        filled = {
            column: value
            for column, value in _identity(child).items()
            if value is not None and getattr(row, column) is None
        }
        oldest = older.get(child.la_child_id)
        child_as_of = as_of if oldest is None else min(as_of, _midnight(oldest))
        await connection.execute(
            update(children)
            .where(children.c.la_child_id == child.la_child_id)
            .values(**filled, as_of=child_as_of, updated_at=now)
        )
    for chunk in _chunks(ids):
        await connection.execute(
            delete(return_snapshots).where(
                return_snapshots.c.la_child_id.in_(chunk),
                return_snapshots.c.return_name == parsed.name,
            )
        )
    if ids:
        await connection.execute(
            insert(return_snapshots),
            [
                {
                    "la_child_id": i,
                    "return_name": parsed.name,
                    "reference_date": parsed.reference_date,
                }
                for i in ids
            ],
        )
    tables: tuple[Table, ...] = RETURN_TABLES[parsed.name]
    for table in tables:
        for chunk in _chunks(ids):
            await connection.execute(delete(table).where(table.c.la_child_id.in_(chunk)))
        rows = parsed.rows.get(table.name, [])
        if rows:
            await connection.execute(insert(table), rows)
    await connection.execute(
        insert(statutory_imports).values(
            return_name=parsed.name,
            reference_date=parsed.reference_date,
            file_sha256=digest,
            children=len(ids),
            imported_at=now,
        )
    )
    return ImportSummary(
        return_name=parsed.name,
        reference_date=parsed.reference_date,
        children=len(ids),
        created=len(new),
        rows={table.name: len(parsed.rows.get(table.name, [])) for table in tables},
    )


def _midnight(day: date) -> datetime:
    """A reference date as the `as_of` records carry."""
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


async def _older_snapshots(
    connection: AsyncConnection, ids: Sequence[str], name: str
) -> dict[str, date]:
    """Per child in `ids`, the oldest reference date of the other returns whose rows it holds."""
    found: dict[str, date] = {}
    for chunk in _chunks(ids):
        query = (
            select(return_snapshots.c.la_child_id, func.min(return_snapshots.c.reference_date))
            .where(
                return_snapshots.c.la_child_id.in_(chunk), return_snapshots.c.return_name != name
            )
            .group_by(return_snapshots.c.la_child_id)
        )
        found.update({row[0]: row[1] for row in await connection.execute(query)})
    return found


def _identity(child: ReturnChild) -> dict[str, Any]:
    return {
        "la_child_id": child.la_child_id,
        "upn": child.upn,
        "former_upn": child.former_upn,
        "birth_date": child.birth_date,
        "gender": child.gender,
    }


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


_UPN_LENGTH: Final = 13
_MAX_CODE: Final = 8


def child_id(value: str | None) -> tuple[str | None, str | None]:
    """(LA child id, None) or (None, what is wrong with it)."""
    if value is None or not value.strip():
        return None, "missing LA child id"
    value = value.strip()
    if len(value) > LA_CHILD_ID:
        return None, f"LA child id longer than {LA_CHILD_ID} characters"
    return value, None


def upn(value: str | None) -> tuple[str | None, str | None]:
    """(UPN or None when absent, None) or (None, what is wrong): 13 letters and digits, the
    permanent or the temporary form."""
    if value is None or not value.strip():
        return None, None
    value = value.strip().upper()
    if len(value) != _UPN_LENGTH or not value.isascii() or not value.isalnum():
        return None, "not a UPN (13 letters and digits)"
    return value, None


def gender(value: str | None) -> tuple[str | None, str | None]:
    if value is None or not value.strip():
        return None, None
    value = value.strip()
    if value not in GENDER_CODES:
        return None, f"not a sex code ({', '.join(GENDER_CODES)})"
    return value, None


def code(value: str | None) -> tuple[str | None, str | None]:
    """A return's short code (reason, legal status, placement type...), kept as given."""
    if value is None or not value.strip():
        return None, None
    value = value.strip()
    if len(value) > _MAX_CODE:
        return None, f"longer than {_MAX_CODE} characters"
    return value, None
