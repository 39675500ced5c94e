"""Node projects the contract tests run real JavaScript tools from (tests/contract/*/).

`node_project(directory)` installs a project's locked dependencies once (`npm ci`, or
`npm install` without a package-lock.json) and returns the directory. Without Node or npm, or when
the install fails (no registry, say), the test is skipped with one line saying why - unless
`CHILDLOOKUP_TEST_NODE=required` (`.ci/run` sets it), where that fails the test instead.

Installs are shared by every test process (pytest -n): a lock file serialises them, and a stamp of
the lock file's hash in node_modules says the install is current, so a second process neither
repeats it nor deletes node_modules under a script the first one is running.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

_STAMP = ".childlookup-installed"
_installed: set[Path] = set()


def _unavailable(message: str) -> None:
    if os.environ.get("CHILDLOOKUP_TEST_NODE") == "required":
        pytest.fail(f"{message}, and CI requires it", pytrace=False)
    pytest.skip(f"{message}: install Node.js 20+ and npm to run this test")


def node_project(directory: Path) -> Path:
    """`directory` with its dependencies installed; skips (or fails, when required) otherwise."""
    directory = directory.resolve()
    if directory in _installed:
        return directory
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("node and npm are not on PATH")
    lock = directory / "package-lock.json"
    wanted = hashlib.sha256((lock if lock.exists() else directory / "package.json").read_bytes())
    stamp = directory / "node_modules" / _STAMP
    with open(directory / ".install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != wanted.hexdigest():
            command = ["npm", "ci" if lock.exists() else "install", "--no-audit", "--no-fund"]
            result = subprocess.run(
                command, cwd=directory, capture_output=True, text=True, timeout=600
            )
            if result.returncode != 0:
                lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
                _unavailable(f"`{' '.join(command[:2])}` failed in {directory.name}: {lines[-1]}")
            stamp.write_text(wanted.hexdigest())
    _installed.add(directory)
    return directory
