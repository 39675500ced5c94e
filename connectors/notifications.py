"""Owner notifications: the gateway telling an agency that one of its records was looked at.

As NHS CP-IS tells a local authority when a child on a protection plan or looked after is seen in
unscheduled care, the gateway sends the agency holding such a record a signed `Notification` at
`POST /v1/notifications`: who looked (name, role, organisation), for what purpose, when, why the
agency is being told, and the agency's own record id - never the NHS number or any other agency's
data. Delivery is at least once, so a receiver keeps each message id once and acknowledges a
redelivery without keeping it again.

This module holds the message format both sides share, the hook an agency implements to receive
notifications (`NotificationSink`), and the reference agencies' sink (`NotificationLog`); the HTTP
route is in `connectors.app`, the sending side in `gateway.audit.notify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from connectors.logs import log_event
from connectors.protocol import PROTOCOL_VERSION

NOTIFICATIONS_PATH: Final = "/v1/notifications"
RECENT_NOTIFICATIONS_PATH: Final = "/v1/notifications/recent"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotificationReason(StrEnum):
    """Why the agency is told of a lookup; the policy (data.json owner_notification) decides."""

    CHILD_PROTECTION_PLAN = "CHILD_PROTECTION_PLAN"
    LOOKED_AFTER = "LOOKED_AFTER"
    EMERGENCY_OVERRIDE = "EMERGENCY_OVERRIDE"


class Accessor(_Message):
    """The practitioner who looked, as the gateway authenticated them."""

    subject: str
    name: str
    role: str
    organisation: str


class AccessedRecord(_Message):
    """One of the agency's own records that the lookup reached, and why the agency is told."""

    record_id: str = Field(min_length=1, max_length=128)
    reasons: list[NotificationReason] = Field(min_length=1)


class Notification(_Message):
    """One lookup, told to one agency. `message_id` is the same on every delivery attempt."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    message_id: str = Field(min_length=1, max_length=64)
    audit_id: str = Field(min_length=1, max_length=64)
    """The gateway's audit record of the lookup: quote it to the gateway's auditors."""
    at: AwareDatetime
    """When the lookup was made."""
    accessor: Accessor
    purpose: str
    justification: str | None
    """The practitioner's own words for why they looked, when the purpose needed them."""
    records: list[AccessedRecord] = Field(min_length=1)


class NotificationReceipt(_Message):
    """The connector's acknowledgement; `duplicate` when the message id was already kept."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    message_id: str
    duplicate: bool


class NotificationSink(Protocol):
    """The agency's hook: where received notifications go (a case system, a queue, a log)."""

    async def keep(self, notification: Notification) -> bool:
        """Keep the notification, durably if the agency needs it to survive a restart. Return
        False, keeping nothing, when a notification with this message id was already kept (the
        gateway redelivers when it did not hear the first acknowledgement). Raise to refuse it
        for now: the gateway will try again later. Calls are never concurrent."""
        ...


@runtime_checkable
class RecentNotifications(Protocol):
    """A sink that can list what it kept: the connector then serves the local-only view of
    recent accesses at RECENT_NOTIFICATIONS_PATH."""

    def recent(self, limit: int) -> list[Notification]: ...


_logger = logging.getLogger("childlookup.connector")


class NotificationLog:
    """The reference agencies' sink: recent notifications in memory and, with a `path`, appended
    to a JSON Lines file that is read back at start-up, so a restarted connector still knows which
    message ids it has kept and still refuses to keep them twice."""

    def __init__(self, path: Path | None = None, *, recent: int = 1_000) -> None:
        self._path = path
        self._recent: deque[Notification] = deque(maxlen=recent)
        self._kept: set[str] = set()
        if path is not None and path.exists():
            for notification in _read_lines(path):
                self._remember(notification)

    async def keep(self, notification: Notification) -> bool:
        if notification.message_id in self._kept:
            return False
        if self._path is not None:
            await asyncio.to_thread(_append_line, self._path, notification.model_dump_json())
        self._remember(notification)
        return True

    def recent(self, limit: int) -> list[Notification]:
        """The most recent notifications kept, newest first."""
        return list(reversed(self._recent))[:limit]

    def _remember(self, notification: Notification) -> None:
        self._kept.add(notification.message_id)
        self._recent.append(notification)


def _read_lines(path: Path) -> list[Notification]:
    """The notifications a log file holds, one a line. Lines end at "\n" alone: a text field may
    hold U+2028 or U+0085, which JSON leaves as they are and `str.splitlines` would break a line
    at. A last line with no end is a write a crash cut short - never acknowledged, so the gateway
    sends it again - and is cut off the file. A line that is not a notification stops the
    connector: its message ids could no longer be known; the error names the line, never what is
    in it (notifications name practitioners)."""
    data = path.read_bytes()
    whole, _, torn = data.rpartition(b"\n")
    if torn:
        log_event(_logger, logging.WARNING, "notification_log_torn_line", file=path.name)
        with path.open("r+b") as file:
            file.truncate(len(data) - len(torn))
    notifications = []
    for number, line in enumerate(whole.split(b"\n") if whole else [], start=1):
        try:
            notifications.append(Notification.model_validate_json(line))
        except ValueError:
            raise ValueError(
                f"notification log {path}: line {number} is not a notification"
            ) from None
    return notifications


def _append_line(path: Path, line: str) -> None:
    """Append and sync, so a notification acknowledged to the gateway survives a crash. A write
    that fails part way (a full disk) is cut off again before the error is raised: the gateway
    sends the notification again, and its line must not follow half of this one, which no start
    could read back."""
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def received_notifications(
    sink: NotificationSink | None, *, verified: bool
) -> NotificationSink | None:
    """Where an agency's connector keeps the gateway's owner notifications: `sink` when given,
    else - when the gateway's requests are verified, which receiving notices needs - an in-memory
    `NotificationLog`, so the agency still lists its recent accesses."""
    if sink is None and verified:
        return NotificationLog()
    return sink
