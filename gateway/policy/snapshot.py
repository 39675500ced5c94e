"""The files that make up a policy bundle, read together so they can be compared and copied."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from gateway.policy.bundle import DATA_FILE, MANIFEST_FILE, module_names


def read_policy_files(directory: Path) -> dict[str, bytes]:
    """The bundle's files (modules, data, manifest) by relative path: the ones `load_bundle`
    reads, so that vetting a copy judges what the officer's own `policy test` judged."""
    wanted = [directory / name for name in (*module_names(directory), DATA_FILE, MANIFEST_FILE)]
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in wanted if path.is_file()
    }


def fingerprint(files: Mapping[str, bytes]) -> str:
    """A hash of exactly this content, independent of file order and timestamps."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()
