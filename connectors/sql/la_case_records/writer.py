"""Writing `ConnectorRecord`s into the case records schema: the demo's database and the tests'.

The synthetic population's social care records become what a case system would hold about the
same children, so the demo can serve them through the SQL connector in place of the reference
file connector, and a test can check records -> SQL -> connector -> records for every field the
schema carries. What the schema cannot carry is said here rather than lost quietly:

- an indicator that is true becomes one open episode (CIN episode, child protection plan,
  looked-after episode, early help episode) started on the lead involvement's start date, or
  else the record's as-of date; its statutory codes are left empty, not invented;
- the PDS restricted flag, school, GP practice and sensitive-service details are not social care
  facts and are not written; an involvement's `sensitive` and `broker` neither;
- address lines beyond the fourth are joined onto the fourth; former UPNs beyond the first are
  not written (a child row holds one);
- a record's `identifiers.local_id` is taken to be its record id (the LA child id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from connectors.protocol import ConnectorRecord, Sex
from connectors.sql.la_case_records.schema import (
    allocations,
    carers,
    child_protection_plans,
    children,
    cin_episodes,
    early_help_episodes,
    looked_after_episodes,
    return_snapshots,
)

_GENDER: Final = {Sex.MALE: "1", Sex.FEMALE: "2", Sex.UNKNOWN: "0"}
_ADDRESS_LINES: Final = 4
_SEPARATOR: Final = ";"
_BATCH: Final = 500
_DEPENDENT: Final = (
    # A child written from its live record no longer rests on any return's snapshot.
    cin_episodes,
    child_protection_plans,
    looked_after_episodes,
    early_help_episodes,
    allocations,
    carers,
    return_snapshots,
)


async def insert_records(connection: AsyncConnection, records: Iterable[ConnectorRecord]) -> int:
    """Write `records` inside the caller's transaction, replacing any rows the schema already
    holds for the same LA child ids; returns how many were written."""
    written = 0
    for batch in _batches(records):
        ids = [record.record_id for record in batch]
        # Dependent rows first: SQLite enforces no foreign keys (so no cascade) unless asked.
        for table in (*_DEPENDENT, children):
            await connection.execute(delete(table).where(table.c.la_child_id.in_(ids)))
        rows: dict[str, list[dict[str, Any]]] = {}
        for record in batch:
            for table_name, row in record_rows(record):
                rows.setdefault(table_name, []).append(row)
        for table in (children, *_DEPENDENT):
            if rows.get(table.name):
                await connection.execute(insert(table), rows[table.name])
        written += len(batch)
    return written


def _batches(records: Iterable[ConnectorRecord]) -> Iterator[Sequence[ConnectorRecord]]:
    batch: list[ConnectorRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def record_rows(record: ConnectorRecord) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table name, row) for everything the schema holds of `record`, the child's row first:
    what `insert_records` writes, for a loader that writes empty tables in bulk itself."""
    child = record.record_id
    name, address = record.name, record.address
    held = [] if address is None else address.lines
    if len(held) > _ADDRESS_LINES:
        held = [*held[: _ADDRESS_LINES - 1], ", ".join(held[_ADDRESS_LINES - 1 :])]
    lines: list[str | None] = [*held]
    lines += [None] * (_ADDRESS_LINES - len(lines))
    yield (
        children.name,
        {
            "la_child_id": child,
            "nhs_number": record.identifiers.nhs_number,
            "upn": record.identifiers.upn,
            "former_upn": next(iter(record.identifiers.former_upns or ()), None),
            "given_name": None if name is None else name.given,
            "family_name": None if name is None else name.family,
            "former_family_names": None if name is None else _joined(name.former_family),
            "known_as": None if name is None else _joined(name.known_as),
            "birth_date": record.date_of_birth,
            "gender": None if record.sex is None else _GENDER[record.sex],
            **{f"address_line{n}": line for n, line in enumerate(lines, 1)},
            "postcode": None if address is None else address.postcode,
            "shielded": record.flags.shielded,
            "as_of": record.as_of.astimezone(UTC),
            "updated_at": datetime.now(UTC),
        },
    )
    start = _episode_start(record)
    indicators = record.indicators
    if indicators is not None:
        if indicators.child_in_need:
            yield cin_episodes.name, {"la_child_id": child, "referral_date": start}
        if indicators.child_protection_plan:
            yield child_protection_plans.name, {"la_child_id": child, "start_date": start}
        if indicators.looked_after:
            yield looked_after_episodes.name, {"la_child_id": child, "start_date": start}
        if indicators.early_help:
            yield early_help_episodes.name, {"la_child_id": child, "start_date": start}
    for position, involvement in enumerate(record.involvements or []):
        worker = involvement.practitioner
        yield (
            allocations.name,
            {
                "la_child_id": child,
                "position": position,
                "service": involvement.service or "",
                "team": involvement.organisation,
                "worker_name": None if worker is None else worker.name,
                "worker_role": None if worker is None else worker.role,
                "worker_phone": None if worker is None else worker.phone,
                "worker_email": None if worker is None else worker.email,
                "is_lead": involvement.lead,
                "start_date": involvement.since,
                "end_date": involvement.until,
            },
        )
    for position, carer in enumerate(record.carers or []):
        yield (
            carers.name,
            {
                "la_child_id": child,
                "position": position,
                "name": carer.name,
                "relationship": carer.relationship,
                "parental_responsibility": carer.parental_responsibility,
                "phone": carer.phone,
            },
        )


def _episode_start(record: ConnectorRecord) -> date:
    """When the record's open episodes began, as near as it says: its lead involvement's start,
    never after the record's as-of date."""
    as_of = record.as_of.astimezone(UTC).date()
    starts = [i.since for i in record.involvements or [] if i.lead and i.since is not None]
    return min([*starts, as_of])


def _joined(names: list[str]) -> str | None:
    return _SEPARATOR.join(names) if names else None
