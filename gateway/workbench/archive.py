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
import sys
import tarfile
from pathlib import Path

from gateway.policy import (
    DATA_FILE,
    MANIFEST_FILE,
    PolicyBundle,
    PolicyError,
    RegoPolicyEngine,
    load_bundle,
    package_of,
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
    out.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return tuple(f"/{name}" for name in sorted(members))


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
    """`childlookup policy bundle`: compile the policy first, so a bundle that would fail in OPA
    (syntax, missing entrypoint) is never written; 2 if it does not."""
    try:
        bundle = load_bundle(directory)
        RegoPolicyEngine(bundle)
        members = write_bundle_archive(bundle, out)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"wrote {out}: revision {bundle.revision}, {len(members)} files")
    for member in members:
        print(f"  {member}")
    return 0
