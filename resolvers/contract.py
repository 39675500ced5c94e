"""Change control for the published contract: how the schema differs from the last released one.

`docs/schema-released.graphql` is the schema as portals last received it. graphql-core tells a
breaking change (a client's valid operation may stop working: a field or enum value removed, a
type changed, a required argument added, an input made `@oneOf` - this one found here, as
graphql-core does not look) from a dangerous one (it keeps working but may behave
differently: an enum value or optional argument added). A breaking change is allowed only when
`docs/schema-breaking-changes.toml` declares it, with the reason a reviewer accepted; anything
else is changed through deprecation first (README, "Changing the contract").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from graphql import (
    GraphQLInputObjectType,
    GraphQLSchema,
    build_schema,
    find_breaking_changes,
    find_dangerous_changes,
)

DOCS: Final = Path(__file__).resolve().parent.parent / "docs"
RELEASED_FILE: Final = DOCS / "schema-released.graphql"
DECLARED_FILE: Final = DOCS / "schema-breaking-changes.toml"


@dataclass(frozen=True)
class Change:
    """One difference from the released schema, as graphql-core names and describes it."""

    kind: str
    description: str


@dataclass(frozen=True)
class Declared:
    """A breaking change a reviewer accepted, and why."""

    description: str
    reason: str


@dataclass(frozen=True)
class ContractChanges:
    breaking: tuple[Change, ...]
    dangerous: tuple[Change, ...]
    declared: tuple[Declared, ...]

    @property
    def undeclared(self) -> tuple[Change, ...]:
        """Breaking changes no declaration accepts: each fails the check."""
        accepted = {d.description for d in self.declared}
        return tuple(c for c in self.breaking if c.description not in accepted)

    @property
    def stale(self) -> tuple[Declared, ...]:
        """Declarations of breaking changes that no longer happen: remove them, so the file says
        only what a release really breaks."""
        happening = {c.description for c in self.breaking}
        return tuple(d for d in self.declared if d.description not in happening)

    @property
    def ok(self) -> bool:
        return not self.undeclared and not self.stale

    def report(self) -> str:
        """What a reviewer reads: each breaking change (declared or not) and each dangerous one."""
        reasons = {d.description: d.reason for d in self.declared}
        lines = [f"Compared with {RELEASED_FILE.relative_to(DOCS.parent)}:"]
        for change in self.breaking:
            reason = reasons.get(change.description)
            verdict = f"declared: {reason}" if reason else f"NOT DECLARED in {DECLARED_FILE.name}"
            lines.append(f"  breaking   {change.kind}: {change.description} ({verdict})")
        lines += [f"  stale      declared but not happening: {d.description}" for d in self.stale]
        lines += [f"  dangerous  {c.kind}: {c.description}" for c in self.dangerous]
        if len(lines) == 1:
            lines.append("  no breaking or dangerous changes.")
        return "\n".join(lines) + "\n"


def compare(
    released_sdl: str, current_sdl: str, declared: tuple[Declared, ...] = ()
) -> ContractChanges:
    released, current = build_schema(released_sdl), build_schema(current_sdl)
    return ContractChanges(
        breaking=tuple(
            Change(c.type.name, c.description) for c in find_breaking_changes(released, current)
        )
        + _inputs_made_one_of(released, current),
        dangerous=tuple(
            Change(c.type.name, c.description) for c in find_dangerous_changes(released, current)
        ),
        declared=declared,
    )


INPUT_BECAME_ONE_OF: Final = "INPUT_BECAME_ONE_OF"
"""The kind of a breaking change graphql-core does not report, named as it names its own."""


def _inputs_made_one_of(released: GraphQLSchema, current: GraphQLSchema) -> tuple[Change, ...]:
    """Inputs released as ordinary ones and now `@oneOf`: a client sending two of the fields (a
    demographic search by given and family name) is then refused GRAPHQL_VALIDATION_FAILED.
    graphql-core's find_breaking_changes does not look at `@oneOf`, so it is compared here."""
    changes = []
    for name, before in released.type_map.items():
        after = current.type_map.get(name)
        if (
            isinstance(before, GraphQLInputObjectType)
            and isinstance(after, GraphQLInputObjectType)
            and after.is_one_of
            and not before.is_one_of
        ):
            changes.append(Change(INPUT_BECAME_ONE_OF, f"{name} became a @oneOf input."))
    return tuple(changes)


def load_declared(text: str) -> tuple[Declared, ...]:
    """The `[[breaking]]` tables of the declarations file, each with a `change` (the description
    `childlookup schema --breaking` prints) and a non-empty `reason`."""
    entries = tomllib.loads(text).get("breaking", [])
    declared = []
    for entry in entries:
        change, reason = entry.get("change"), entry.get("reason")
        if not isinstance(change, str) or not change.strip():
            raise ValueError(f"{DECLARED_FILE.name}: a [[breaking]] entry has no `change`")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{DECLARED_FILE.name}: {change!r} gives no `reason`")
        declared.append(Declared(change.strip(), reason.strip()))
    return tuple(declared)


def changes_since_release(current_sdl: str) -> ContractChanges:
    """The current schema against the released one, with the reviewed declarations."""
    return compare(
        RELEASED_FILE.read_text(encoding="utf-8"),
        current_sdl,
        load_declared(DECLARED_FILE.read_text(encoding="utf-8")),
    )
