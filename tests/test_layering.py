"""Which package may import which: the import graph, read from the source, keeps the house's shape.

- Agencies install the connector SDK without the gateway: `connectors` imports neither `gateway`
  nor `resolvers`, nor the locator service (`locator`).
- The locator is a service of its own beside the gateway: `locator` imports the SDK, never
  `gateway` or `resolvers`.
- Packages with a public surface (`gateway.audit`, `gateway.policy`, `gateway.linkage`,
  `gateway.workbench`) are used through it: no module outside reaches into their submodules.
- The policy officers' workbench is not part of the running gateway: only the CLI imports it.
- GraphQL code (`resolvers`) is mounted at the HTTP edge only: by the app and the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from gateway.config import REPO_ROOT

PACKAGES_WITH_A_SURFACE = (
    "gateway.audit",
    "gateway.policy",
    "gateway.linkage",
    "gateway.workbench",
)


def _modules(*roots: str) -> Iterator[tuple[str, Path]]:
    for root in roots:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            yield ".".join(p for p in parts if p != "__init__"), path


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in the file names, however deep in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


ALL = list(_modules("gateway", "resolvers", "connectors", "bench", "locator"))


def _violations(modules, forbidden) -> dict[str, set[str]]:
    """Per module, the imports `forbidden(module, name)` rules out."""
    found = {
        module: {name for name in _imports(path) if forbidden(module, name)}
        for module, path in modules
    }
    return {module: names for module, names in found.items() if names}


def test_the_source_tree_was_found():
    assert {"gateway.pipeline", "gateway.audit", "connectors.protocol", "locator.store"} <= {
        m for m, _ in ALL
    }


def test_the_connector_sdk_does_not_import_the_gateway():
    sdk = [m for m in ALL if _within(m[0], "connectors")]
    assert (
        _violations(
            sdk,
            lambda module, name: any(_within(name, p) for p in ("gateway", "resolvers", "locator")),
        )
        == {}
    )


def test_the_locator_does_not_import_the_gateway():
    service = [m for m in ALL if _within(m[0], "locator")]
    assert (
        _violations(
            service, lambda module, name: _within(name, "gateway") or _within(name, "resolvers")
        )
        == {}
    )


def test_packages_are_used_through_their_public_surface():
    def reaches_in(module: str, name: str) -> bool:
        return any(
            name.startswith(package + ".") and not _within(module, package)
            for package in PACKAGES_WITH_A_SURFACE
        )

    assert _violations(ALL, reaches_in) == {}


def test_only_the_cli_uses_the_workbench():
    users = [m for m in ALL if not _within(m[0], "gateway.workbench") and m[0] != "gateway.cli"]
    assert _violations(users, lambda module, name: _within(name, "gateway.workbench")) == {}


def test_graphql_code_is_mounted_only_at_the_http_edge():
    inner = [
        m for m in ALL if _within(m[0], "gateway") and m[0] not in {"gateway.app", "gateway.cli"}
    ]
    assert _violations(inner, lambda module, name: _within(name, "resolvers")) == {}
