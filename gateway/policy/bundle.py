"""A policy bundle as it sits on disk: Rego modules, one data document and a manifest.

The layout is OPA's, so the same directory can be served to a real OPA later: `*.rego` modules
anywhere below the root (tests beside them as `*_test.rego`), `data.json` at the root and a
`.manifest` naming the revision. The revision is what the audit trail records as "the policy that
decided", which is why a bundle without one is refused rather than given a made-up name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from gateway.policy.errors import PolicyError

MANIFEST_FILE: Final = ".manifest"
DATA_FILE: Final = "data.json"
TEST_MODULE_SUFFIX: Final = "_test.rego"

_PACKAGE: Final = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
# A rule head starts at column 0 with its name; bodies, comments and `} else` lines are indented
# or start with another character. Keywords that can open a line are not rule names.
_RULE_HEAD: Final = re.compile(r"[ \t]*(?:default\s+)?([A-Za-z_]\w*)\b")
_NOT_RULE_NAMES: Final = frozenset({"package", "import", "else", "default"})
_COMMENT: Final = re.compile(r"#[^\n]*")


class RuleRef(NamedTuple):
    """A rule found in a module: enough to query it as `data.<package>.<name>`."""

    module: str
    package: str
    name: str

    @property
    def ref(self) -> str:
        return f"data.{self.package}.{self.name}"

    @property
    def path(self) -> str:
        """The rule as rego-cpp names an entrypoint."""
        return f"{self.package.replace('.', '/')}/{self.name}"


@dataclass(frozen=True)
class PolicyBundle:
    """Everything needed to compile the policy, read once so that a decision never touches disk."""

    directory: Path
    revision: str
    modules: dict[str, str]
    data: dict[str, Any]

    @property
    def policy_modules(self) -> dict[str, str]:
        """The modules that decide; tests are left out so they never reach a running gateway."""
        return {
            path: source
            for path, source in self.modules.items()
            if not path.endswith(TEST_MODULE_SUFFIX)
        }

    def rules(self) -> tuple[RuleRef, ...]:
        """Every rule defined in the bundle, once each, in source order.

        Found by reading rule heads rather than asking rego-cpp, which has no API to list rules: it
        is what lets the test runner discover `test_*` rules and the engine check its entrypoints
        exist before the first lookup instead of failing closed on every one.
        """
        found: dict[RuleRef, None] = {}
        for path, source in self.modules.items():
            package = _PACKAGE.search(source)
            if package is None:
                continue
            for name in _rule_heads(source, package.end()):
                if name not in _NOT_RULE_NAMES:
                    found[RuleRef(path, package.group(1), name)] = None
        return tuple(found)


def _rule_heads(source: str, start: int) -> list[str]:
    """The names opening a line of `source` from `start` outside any brace, bracket, parenthesis,
    string or comment: its rule heads, as OPA reads them. A head may be indented - OPA parses it,
    and `opa test` runs an indented test, so one missed would let a failing test pass unseen -
    and a name opening a line inside a body, a string or a comment is none."""
    heads: list[str] = []
    depth = 0
    index = start
    line_start = True
    while index < len(source):
        char = source[index]
        if line_start and depth == 0 and (head := _RULE_HEAD.match(source, index)) is not None:
            heads.append(head.group(1))
        line_start = char == "\n"
        if char == "#":
            end = source.find("\n", index)
            index = len(source) if end < 0 else end
            continue
        if char == '"':
            index += 1
            while index < len(source) and source[index] not in '"\n':
                index += 2 if source[index] == "\\" else 1
        elif char == "`":
            end = source.find("`", index + 1)
            index = len(source) if end < 0 else end
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth = max(depth - 1, 0)
        index += 1
    return heads


def package_of(source: str) -> str | None:
    """The package a module declares, e.g. `childlookup.plan`; None if it declares none."""
    package = _PACKAGE.search(source)
    return None if package is None else package.group(1)


def load_bundle(directory: Path) -> PolicyBundle:
    """Read a bundle directory; anything incomplete is refused with a message saying what to fix.

    Files are named as they sit in the bundle (`data.json`), not by the directory: the reloader
    reads a snapshot in a temporary directory the policy officer has never seen.
    """
    if not directory.is_dir():
        raise PolicyError(f"Policy directory {directory} does not exist.")
    manifest = _read_json(directory, MANIFEST_FILE, "manifest")
    revision = manifest.get("revision")
    if not isinstance(revision, str) or not revision.strip():
        raise PolicyError(
            f"The manifest file {MANIFEST_FILE} must give the revision as a non-empty string."
        )
    modules = {
        name: _read_text(directory, name, "policy module") for name in module_names(directory)
    }
    _require_tests_apart(modules)
    return PolicyBundle(
        directory=directory,
        revision=revision,
        modules=modules,
        data=_read_json(directory, DATA_FILE, "policy data"),
    )


def _require_tests_apart(modules: dict[str, str]) -> None:
    """Refuse test modules that could change what the policy decides.

    Tests are compiled with the policy but never served (`PolicyBundle.policy_modules`), so a rule
    a test module defines inside a policy's package - or in a package above or below one, or in a
    package a policy module reads - would be there when the tests pass and missing when the
    gateway decides: a policy whose `is_shielded` had moved into a test file passed every test and
    then released a shielded child's address. Tests belong in packages of their own
    (`childlookup.release_test`), as the shipped ones are.
    """
    policy = {path: package_of(source) for path, source in modules.items()}
    policy_packages = {
        package: path
        for path, package in policy.items()
        if package is not None and not path.endswith(TEST_MODULE_SUFFIX)
    }
    for path, package in policy.items():
        if package is None or not path.endswith(TEST_MODULE_SUFFIX):
            continue
        for served, served_path in policy_packages.items():
            if _overlap(package, served):
                raise PolicyError(
                    f"The test module {path} declares package {package}, which overlaps the"
                    f" package {served} of the policy module {served_path}: the gateway serves"
                    " the policy without its tests, so rules a test module defines there would"
                    " be tested but never served. Put the tests in a package of their own, such"
                    f" as {served}_test."
                )
        parts = package.split(".")
        # The package's endings too (`import data.childlookup as c` then `c.release_test`), but
        # not one that is a policy package or overlaps one (`test.childlookup.release` ends with
        # `childlookup.release`): the policy naming its own packages is no reference to the tests.
        names = {package} | {
            ending
            for ending in (".".join(parts[index:]) for index in range(1, len(parts) - 1))
            if not any(_overlap(ending, served) for served in policy_packages)
        }
        for served_path, source in modules.items():
            if served_path.endswith(TEST_MODULE_SUFFIX):
                continue
            code = _COMMENT.sub("", source)
            if any(re.search(rf"(?<!\w){re.escape(name)}\b", code) for name in names):
                raise PolicyError(
                    f"The policy module {served_path} refers to the package {package} of the"
                    f" test module {path}: the gateway serves the policy without its tests, so"
                    " what it reads there would be undefined when it decides."
                )


def _overlap(first: str, second: str) -> bool:
    """One package is the other, or holds it."""
    return first == second or first.startswith(f"{second}.") or second.startswith(f"{first}.")


def module_names(directory: Path) -> list[str]:
    """The bundle's `*.rego` modules by relative path, sorted. Only regular files (or links to
    them) count: opening a FIFO named `x.rego` would wait for a writer for ever, and the live
    reloader must vet exactly the files the officer's own `policy test` read. A folder named
    `x.rego` is refused: skipped, the rules the officer put in it as `x.rego` would be missing
    with no word said."""
    found = list(directory.rglob("*.rego"))
    if folders := sorted(path.relative_to(directory).as_posix() for path in found if path.is_dir()):
        raise PolicyError(
            f"The policy directory holds a folder named like a policy module: {folders[0]}."
            " Only a file's name ends in .rego; rename the folder."
        )
    return sorted(path.relative_to(directory).as_posix() for path in found if path.is_file())


def _read_text(directory: Path, name: str, what: str) -> str:
    path = directory / name
    if path.exists() and not path.is_file():  # a FIFO would block the read for ever
        raise PolicyError(f"The {what} file {name} is not a regular file.")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"The {what} file {name} is missing.") from None
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"The {what} file {name} is not UTF-8 text (byte {error.start})."
        ) from None


def _read_json(directory: Path, name: str, what: str) -> dict[str, Any]:
    text = _read_text(directory, name, what)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(
            f"The {what} file {name} is not valid JSON (line {error.lineno}, column {error.colno}):"
            f" {error.msg}."
        ) from None
    except RecursionError:  # the decoder recurses once per nested array or object
        raise PolicyError(f"The {what} file {name} nests too deeply to be read.") from None
    if not isinstance(document, dict):
        raise PolicyError(f"The {what} file {name} must hold a JSON object.")
    return document
