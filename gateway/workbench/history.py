"""Earlier versions of the policy, from git, so a change can be compared with what it replaces.

`childlookup policy diff HEAD~1 policies` is how a reviewer reads a policy commit. A name that is an
existing path is a directory; anything else is a git revision, whose copy of the policy directory
is written to a temporary directory (`git show REV:path` per file) and removed afterwards. Nothing
in the working tree or the index is touched.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.policy import PolicyError


@contextmanager
def policy_version(spec: str, policy_dir: Path) -> Iterator[Path]:
    """The policy directory `spec` names: itself if it exists, else `policy_dir` at revision
    `spec` of the git repository `policy_dir` is in."""
    path = Path(spec)
    if path.exists():
        if not path.is_dir():
            raise PolicyError(f"{spec} is a file; give a policy directory or a git revision.")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="childlookup-policy-") as temporary:
        _materialise(spec, policy_dir, Path(temporary))
        yield Path(temporary)


def _materialise(revision: str, policy_dir: Path, into: Path) -> None:
    git = shutil.which("git")
    if git is None:
        raise PolicyError(f"{revision} is not a directory, and git is not installed to read it.")
    directory = policy_dir.resolve()
    not_found = f"{revision} is neither a directory nor a git revision"
    root = Path(_git(git, directory, not_found, "rev-parse", "--show-toplevel").decode().strip())
    relative = directory.relative_to(root).as_posix()
    # `--` after the revision stops a revision that looks like an option from being one.
    listing = _git(
        git, root, not_found, "ls-tree", "-r", "-z", "--name-only", revision, "--", relative
    )
    names = [name for name in listing.decode().split("\0") if name]
    if not names:
        raise PolicyError(f"Revision {revision} has no {relative}/ directory.")
    for name in names:
        target = into / Path(name).relative_to(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_git(git, root, not_found, "show", f"{revision}:{name}"))


def _git(git: str, cwd: Path, failure: str, *args: str) -> bytes:
    """git's output; PolicyError saying `failure` and git's own last word if it fails."""
    try:
        # Arguments are passed as a list, never through a shell, so a revision cannot inject one.
        done = subprocess.run(  # noqa: S603
            [git, *args], cwd=cwd, capture_output=True, check=False, timeout=30
        )
    except subprocess.TimeoutExpired:
        raise PolicyError(f"git {args[0]} took longer than 30 s.") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise PolicyError(f"{failure} ({said[-1] if said else f'git {args[0]} failed'}).")
    return done.stdout
