"""Vetting: a policy is used only once its own tests pass, run in a child process.

The live reloader vets each change (gateway.policy.reload); a production gateway vets the policy
directory before it serves, and `childlookup policy bundle` before it writes a bundle for OPA: a
version the reloader rejected, still in the directory, must not go live at the next restart,
deploy, crash recovery or bundle build either.

The tests run as `childlookup policy test` in a child process because rego-cpp can crash the
whole process on some constructs. The child is stopped, and the version rejected, once it has run
too long or holds too much memory: a test such as `count(numbers.range(1, 300000000)) > 0` makes
rego-cpp allocate ~330 MB/s until the host runs out. Its resident memory is watched from here
because no resource limit can bound it: snmalloc reserves far more address space (and writable
data) than any sensible limit when it starts, and aborts when refused.

A pass is remembered by the content's fingerprint (gateway.policy.snapshot) for the life of the
process, never on disk: the tests of the shipped policy take ~15 s, and the same content passes
the same tests. `serve --workers`' parent hands its passes to the workers it starts
(`hand_down_passes`), so they do not run them again; a worker that finds other content (one
restarted after a deploy) runs them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from gateway.policy.bundle import load_bundle
from gateway.policy.errors import PolicyError
from gateway.policy.snapshot import fingerprint, read_policy_files
from gateway.policy.testing import TEST_PREFIX, policy_tests

VET_TIMEOUT_S = 120.0
_VET_POLL_S = 0.05
"""How often the child's memory is looked at: at rego-cpp's fastest growth, ~17 MB between looks."""
_MIB = 1024 * 1024
PASSES_ENV: Final = "_CHILDLOOKUP_POLICY_TESTS_PASSED"
"""The fingerprints whose tests passed in `serve --workers`' parent, for its workers (not a
setting: no CHILDLOOKUP_ prefix)."""

_passed: set[str] = set()
"""The fingerprints whose tests passed in this process."""


def tested_version(directory: Path, max_bytes: int) -> str:
    """The fingerprint of the policy in `directory`, once every one of its tests has passed (run
    as `vet` runs them, unless this content passed before); PolicyError saying why not, or that
    it has no tests: zero tests prove nothing."""
    version = fingerprint(read_policy_files(directory))
    if _has_passed(version):
        return version
    if not policy_tests(load_bundle(directory)):
        raise PolicyError(f"it has no tests (rules named {TEST_PREFIX}*)")
    # On a thread of its own: whoever builds the gateway may have an event loop running on this
    # one (a test's, or a browser driver's), where asyncio.run refuses to start another.
    with ThreadPoolExecutor(max_workers=1) as apart:
        problem = apart.submit(asyncio.run, vet(directory, max_bytes)).result()
    if problem is not None:
        raise PolicyError(f"its own tests must all pass before it is used: {problem}")
    if fingerprint(read_policy_files(directory)) != version:
        raise PolicyError("it changed while its tests ran; try again once it is in place")
    _passed.add(version)
    return version


def hand_down_passes() -> None:
    """Let the processes started from now on (`serve --workers`' workers) take this process's
    passes as their own."""
    os.environ[PASSES_ENV] = " ".join(sorted(_passed))


def _has_passed(version: str) -> bool:
    return version in _passed or version in os.environ.get(PASSES_ENV, "").split()


async def vet(directory: Path, max_bytes: int) -> str | None:
    """Run the policy tests in `directory` in a child process; None if they all pass, else why
    not, in one line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "policy",
        "test",
        str(directory),
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
