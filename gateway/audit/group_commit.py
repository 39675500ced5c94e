"""Group commit: records appended at the same time share one transaction.

A durable commit costs a disk flush (SQLite) or a round trip and a WAL flush (PostgreSQL). Under
load, lookups finishing together would queue for one commit each; instead, whatever is waiting
when a commit starts goes into the next one, so durability costs one flush per batch, not per
lookup, and every caller still returns only once its own record is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from gateway.audit.outbox import OutboxMessage
from gateway.audit.types import AuditRecord

Write = Callable[[list[AuditRecord], list[OutboxMessage]], Awaitable[None]]
"""Commits a batch of records and the notifications they oblige in one transaction, or raises
(AuditUnavailable when the store could not commit) and commits none of it."""


class GroupCommit:
    """Batches concurrent appends into one `write` at a time, on the event loop that calls it."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._pending: list[tuple[AuditRecord, Sequence[OutboxMessage], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, record: AuditRecord, notifications: Sequence[OutboxMessage]) -> None:
        """Return once the batch holding this record is committed; raise what its write raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, notifications, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write(
                    [record for record, _, _ in batch],
                    [message for _, messages, _ in batch for message in messages],
                )
            except Exception as error:
                # Whatever went wrong, every record in the batch failed: each caller hears so,
                # none waits for ever.
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)
