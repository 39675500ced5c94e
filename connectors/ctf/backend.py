"""The education connector's backend: lookups over a folder of CTFs that is watched for changes.

The folder is polled: every `interval_s` its files are `stat`ed (a few microseconds each) and only
new or changed ones are read, in a worker thread so lookups go on meanwhile. When anything served
changed, a whole new index is built beside the old one and swapped in with one assignment: a lookup
sees the folder as it was before the change or after it, never half of each. Polling needs no
file-notification library, works the same on network shares (where inotify sees nothing) and costs
nothing noticeable at one look every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from connectors.ctf.folder import CtfFileStatus, CtfFolder, crash_site
from connectors.ctf.schools import NO_SCHOOL_CONTACTS, SchoolContacts
from connectors.protocol import ConnectorRecord, LookupRequest
from connectors.records import FileBackend

DEFAULT_INTERVAL_S: Final = 5.0
"""How often the folder is looked at: a CTF lands a few seconds before it is served, which is
far quicker than schools send them (days after a pupil moves)."""

_logger = logging.getLogger("childlookup.connector.ctf")


class CtfFolderBackend:
    """A `ConnectorBackend` over a folder of CTFs, read once when made and again as it changes.

    Call `watching()` (an async context manager: the connector app's lifespan) to poll the folder
    while the connector serves; without it the folder is read only once.
    """

    def __init__(
        self,
        folder: Path,
        contacts: SchoolContacts = NO_SCHOOL_CONTACTS,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        """Read the folder now, so the first lookup is answered from it.

        Raises ValueError when `folder` is not a directory or `interval_s` is not positive: an
        operator's mistake to see at start-up. Bad files are logged and served around, not raised.
        """
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of CTF files")
        self._folder = CtfFolder(folder, contacts)
        self._interval_s = interval_s
        self._index: FileBackend = self._folder.refresh() or self._folder.index()

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        return await self._index.lookup(request)

    def status(self) -> tuple[CtfFileStatus, ...]:
        """Each file's standing after the latest refresh."""
        return self._folder.status()

    async def refresh(self) -> bool:
        """Look at the folder once now; whether what is served changed. A folder that cannot be
        listed (unmounted share, permissions) is logged and the current index kept."""
        try:
            fresh = await asyncio.to_thread(self._folder.refresh)
        except OSError as error:
            _logger.error(
                "ctf_folder_unreadable reason=%s",
                error.strerror,
                extra={"event": "ctf_folder_unreadable", "context": {"reason": error.strerror}},
            )
            return False
        if fresh is None:
            return False
        self._index = fresh
        return True

    @contextlib.asynccontextmanager
    async def watching(self, app: Any = None) -> AsyncIterator[None]:
        """Poll the folder until the context ends; shaped as a Starlette lifespan."""
        task = asyncio.create_task(self._poll(), name="ctf-folder-poll")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh()
            except Exception as error:  # a bug must not stop the polling for good
                # By type and place only: an exception's message can quote a pupil's data.
                at = crash_site(error)
                _logger.error(
                    "ctf_refresh_crashed error=%s at=%s",
                    type(error).__name__,
                    at,
                    extra={"event": "ctf_refresh_crashed", "context": {"at": at}},
                )
