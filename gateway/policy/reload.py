"""Live policy reload: a changed policy directory replaces the live policy only once it has been
compiled and has passed its own tests, and it replaces it whole, between requests.

The tests run on a snapshot of the directory, in a child process watched for time and memory
(gateway.policy.vetting): a policy officer's mistake must cost a log line, not the gateway. Only
after the child process passes is the snapshot compiled here. The swap is one attribute
assignment, and a lookup reads the policy once when it starts, so no request ever sees half of one
version and half of another. A rejected version is not retried until the directory changes again;
the last good version keeps serving - until the process restarts, when a production gateway runs
the directory's tests again before it serves (gateway.policy.vetting.tested_version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.config import DEFAULT_POLICY_VET_MAX_BYTES
from gateway.policy.engine import PolicyEngine
from gateway.policy.errors import PolicyError
from gateway.policy.loading import load_engine
from gateway.policy.snapshot import fingerprint, read_policy_files
from gateway.policy.vetting import vet

_log = logging.getLogger("childlookup.policy")


class PolicyReloader:
    """Polls a policy directory and installs each new version that compiles and passes its tests."""

    def __init__(
        self,
        directory: Path,
        install: Callable[[PolicyEngine], None],
        *,
        interval_s: float,
        vet_max_bytes: int = DEFAULT_POLICY_VET_MAX_BYTES,
        serving: str | None = None,
    ) -> None:
        """`serving`: the fingerprint of the version the gateway compiled at start-up
        (`MemoisedPolicyEngine.content`); without it, the directory as it is now."""
        self._directory = directory
        self._install = install
        self._interval = interval_s
        self._vet_max_bytes = vet_max_bytes
        # What is serving: the version compiled at start-up, which a deploy may have replaced
        # since; a change that landed in between is a change, vetted at the first check.
        self._seen = serving
        if self._seen is None:
            with contextlib.suppress(OSError):  # read again, and vetted, at the first check
                self._seen = fingerprint(read_policy_files(directory))

    async def watch(self) -> None:
        """Check for changes every interval until cancelled. Nothing a check meets ends the
        watching: a watcher that died would leave every later change unapplied, unannounced."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception as exc:
                _unread(self._directory, exc)

    async def check(self) -> bool | None:
        """None when nothing changed, or the directory could not be read whole this time (a file
        renamed or deleted while it was read, as editors, rsync and git do; one not readable):
        it is read again at the next check. True when a new version went live; False when
        rejected."""
        try:
            files = await asyncio.to_thread(read_policy_files, self._directory)
        except OSError as exc:
            _unread(self._directory, exc)
            return None
        version = fingerprint(files)
        if version == self._seen:
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="childlookup-policy-") as tmp:
                snapshot = Path(tmp)
                await asyncio.to_thread(_write_files, snapshot, files)
                problem = await vet(snapshot, self._vet_max_bytes)
                if problem is None:
                    try:
                        engine = await asyncio.to_thread(load_engine, snapshot)
                    except PolicyError as exc:
                        problem = str(exc)
        except OSError as exc:  # no room for the snapshot, say: not the version's fault
            _unread(self._directory, exc)
            return None
        self._seen = version  # judged: not judged again until the directory changes
        if problem is not None:
            # The officer edited the watched directory; the snapshot's path means nothing to them.
            problem = problem.replace(str(snapshot), str(self._directory))
            _log.error(
                "policy change rejected; the previous version keeps serving",
                extra={"event": "policy_rejected", "context": {"reason": problem}},
            )
            return False
        self._install(engine)
        _log.info(
            "policy change is live",
            extra={"event": "policy_reloaded", "context": {"revision": engine.revision}},
        )
        return True


def _unread(directory: Path, error: BaseException) -> None:
    _log.warning(
        "policy directory not read; the previous version keeps serving, and it is read again",
        extra={
            "event": "policy_reload_failed",
            "context": {"directory": str(directory), "error": type(error).__name__},
        },
    )


def _write_files(directory: Path, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
