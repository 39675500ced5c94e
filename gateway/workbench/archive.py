"""The bundle as an OPA bundle tarball, for OPA servers to load (`opa run --server -b FILE`).

Layout as `opa build` writes it: `/.manifest`, `/data.json` and each policy module at its path in
the bundle, in a gzipped tar. Test modules are left out, as the in-process engine leaves them out:
in a server they would be queryable under `data.childlookup.*_test`, and a `GET` of the whole
`data.childlookup` document would run every one of them.

OPA refuses to activate a bundle that writes outside the roots its manifest claims, and says so
only in its own log; that check is made here, so a bad bundle fails at build time instead.

The archive is reproducible: members sorted, times and owners zeroed, so the same policy always
gives the same bytes and a reviewer can compare checksums.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from gateway.config import DEFAULT_POLICY_VET_MAX_BYTES
from gateway.policy import (
    DATA_FILE,
    MANIFEST_FILE,
    PolicyBundle,
    PolicyError,
    RegoPolicyEngine,
    fingerprint,
    load_bundle,
    package_of,
    read_policy_files,
    tested_version,
)


def write_bundle_archive(bundle: PolicyBundle, out: Path) -> tuple[str, ...]:
    """Write the bundle's manifest, data and policy modules to `out`; return the member names."""
    members = {
        MANIFEST_FILE: (bundle.directory / MANIFEST_FILE).read_bytes(),
        DATA_FILE: (bundle.directory / DATA_FILE).read_bytes(),
        **{path: source.encode() for path, source in bundle.policy_modules.items()},
    }
    _require_within_roots(bundle, members[MANIFEST_FILE])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(f"/{name}")
            info.size = len(members[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(members[name]))
    write_whole(out, gzip.compress(buffer.getvalue(), mtime=0))
    return tuple(f"/{name}" for name in sorted(members))


def write_whole(path: Path, data: bytes) -> None:
    """Put `data` at `path` whole or not at all: written beside it, then renamed over it. Written
    in place, a write that fails part way (a full disk) leaves a truncated file - over the one
    there before, if there was one: a bundle OPA refuses, a manifest that drops operations.
    Raises OSError naming `path`."""
    staged: str | None = None
    try:
        fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(staged, 0o644)  # as write_bytes would make it (mkstemp's is owner-only)
        os.replace(staged, path)
    except OSError as exc:  # named by the file asked for, not the staged one
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    finally:
        if staged is not None:  # gone once renamed; else a part-written leftover
            Path(staged).unlink(missing_ok=True)


def _require_within_roots(bundle: PolicyBundle, manifest: bytes) -> None:
    roots = json.loads(manifest).get("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise PolicyError(f"{bundle.directory / MANIFEST_FILE}: roots must be a list of strings.")
    outside = [f"data.{key}" for key in bundle.data if not _under(key, roots)]
    for path, source in bundle.policy_modules.items():
        package = package_of(source)
        if package is not None and not _under(package.replace(".", "/"), roots):
            outside.append(f"package {package} ({path})")
    if outside:
        raise PolicyError(
            f"The manifest's roots {roots} do not cover {', '.join(outside)}; OPA would refuse"
            " to activate this bundle."
        )


def _under(path: str, roots: list[str]) -> bool:
    return any(root == "" or path == root or path.startswith(f"{root}/") for root in roots)


def bundle_main(directory: Path, out: Path) -> int:
    """`childlookup policy bundle`: compile the policy and run its own tests first, as a production
    gateway does before it serves one, so a bundle that would fail in OPA (syntax, missing
    entrypoint) or that its tests reject (or that has none) is never written; 2 if it is not."""
    try:
        version = fingerprint(read_policy_files(directory))
        bundle = load_bundle(directory)
        RegoPolicyEngine(bundle)
        _require_within_roots(bundle, (directory / MANIFEST_FILE).read_bytes())  # before the tests
        try:
            tested = tested_version(directory, DEFAULT_POLICY_VET_MAX_BYTES)
        except PolicyError as error:
            raise PolicyError(f"{directory}: {error}; nothing written") from None
        if tested != version:
            raise PolicyError(f"{directory} changed while its tests ran; nothing written")
        members = write_bundle_archive(bundle, out)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"wrote {out}: revision {bundle.revision}, {len(members)} files")
    for member in members:
        print(f"  {member}")
    return 0
