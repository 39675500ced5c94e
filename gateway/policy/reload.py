"""Live policy reload: a changed policy directory replaces the live policy only once it has been
compiled and has passed its own tests, and it replaces it whole, between requests.

Vetting runs `childlookup policy test` in a child process on a snapshot of the directory, because
rego-cpp can crash the whole process on some constructs: a policy officer's mistake must cost a
log line, not the gateway. Only after the child process passes is the snapshot compiled here. The
swap is one attribute assignment, and a lookup reads the policy once when it starts, so no request
ever sees half of one version and half of another. A rejected version is not retried until the
directory changes again; the last good version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.policy.engine import PolicyEngine
from gateway.policy.errors import PolicyError
from gateway.policy.loading import load_engine
from gateway.policy.snapshot import fingerprint, read_policy_files

_log = logging.getLogger("childlookup.policy")

VET_TIMEOUT_S = 120.0


class PolicyReloader:
    """Polls a policy directory and installs each new version that compiles and passes its tests."""

    def __init__(
        self,
        directory: Path,
        install: Callable[[PolicyEngine], None],
        *,
        interval_s: float,
    ) -> None:
        self._directory = directory
        self._install = install
        self._interval = interval_s
        try:
            self._seen: str | None = fingerprint(read_policy_files(directory))
        except OSError:
            self._seen = None  # read again, and vetted, at the first check

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
                problem = await _vet(snapshot)
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


async def _vet(snapshot: Path) -> str | None:
    """Run the snapshot's policy tests in a child process; None if they all pass."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "policy",
        "test",
        str(snapshot),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), VET_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return f"policy tests did not finish within {VET_TIMEOUT_S:.0f} s"
    if process.returncode == 0:
        return None
    if process.returncode is not None and process.returncode < 0:
        return f"the policy crashed the evaluator (signal {-process.returncode})"
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"policy tests failed (exit {process.returncode})"
