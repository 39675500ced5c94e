"""Live policy reload: a changed policy directory replaces the live policy only once it has been
compiled and has passed its own tests, and it replaces it whole, between requests.

Vetting runs `childlookup policy test` in a child process on a snapshot of the directory, because
rego-cpp can crash the whole process on some constructs: a policy officer's mistake must cost a
log line, not the gateway. The child is stopped, and the version rejected, once it has run too
long or holds too much memory: a test such as `count(numbers.range(1, 300000000)) > 0` makes
rego-cpp allocate ~330 MB/s until the host runs out. Its resident memory is watched from here
because no resource limit can bound it: snmalloc reserves far more address space (and writable
data) than any sensible limit when it starts, and aborts when refused.

Only after the child process passes is the snapshot compiled here. The swap is one attribute
assignment, and a lookup reads the policy once when it starts, so no request ever sees half of one
version and half of another. A rejected version is not retried until the directory changes again;
the last good version keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.config import DEFAULT_POLICY_VET_MAX_BYTES
from gateway.policy.engine import PolicyEngine
from gateway.policy.errors import PolicyError
from gateway.policy.loading import load_engine
from gateway.policy.snapshot import fingerprint, read_policy_files

_log = logging.getLogger("childlookup.policy")

VET_TIMEOUT_S = 120.0
_VET_POLL_S = 0.05
"""How often the child's memory is looked at: at rego-cpp's fastest growth, ~17 MB between looks."""
_MIB = 1024 * 1024


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
                problem = await _vet(snapshot, self._vet_max_bytes)
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


async def _vet(snapshot: Path, max_bytes: int) -> str | None:
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
    finished = asyncio.ensure_future(process.communicate())
    try:
        overrun = await _watch(process.pid, finished, max_bytes)
    finally:
        if not finished.done():  # an overrun, or the gateway stopping: no child left unwatched
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                process.kill()
    if overrun is not None:
        await finished
        return overrun
    output, _ = finished.result()
    if process.returncode == 0:
        return None
    if process.returncode is not None and process.returncode < 0:
        return f"the policy crashed the evaluator (signal {-process.returncode})"
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"policy tests failed (exit {process.returncode})"


async def _watch(
    pid: int, finished: asyncio.Future[tuple[bytes, bytes]], max_bytes: int
) -> str | None:
    """Wait for the child to finish; if it first runs too long or holds more than `max_bytes`
    resident, why it must be stopped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VET_TIMEOUT_S
    while not finished.done():
        if _resident_bytes(pid) > max_bytes:
            return f"policy tests used more than {max_bytes // _MIB} MiB of memory"
        if loop.time() >= deadline:
            return f"policy tests did not finish within {VET_TIMEOUT_S:.0f} s"
        await asyncio.wait({finished}, timeout=_VET_POLL_S)
    return None


def _resident_bytes(pid: int) -> int:
    """The process's resident memory, from Linux's /proc; 0 where that cannot be read (another
    system, or the process already gone), which leaves only the time bound."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0
