"""What a policy change does: who gains or loses which field, and which lookups become refused.

A reviewer of a Rego or data.json change cannot read the consequences off the text: a field group
edit reaches every grant that names it, a reordered `else` changes a reason code. So both versions
are evaluated over every role x purpose x child situation (shielded, restricted, shield status
unknown, sensitive involvement) through `explain`, and only the differences are reported. Each
change names the situations it occurs in, merged into the fewest conditions ("not shielded, not
restricted") so one grant change reads as one line, not sixteen.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import anyio

from gateway.policy import (
    DenialCode,
    MemoisedPolicyEngine,
    PolicyEngine,
    PolicyError,
    RegoPolicyEngine,
    load_bundle,
)
from gateway.workbench.explain import (
    Catalogue,
    Explanation,
    FieldOutcome,
    Scenario,
    Situation,
    explain,
)
from gateway.workbench.history import policy_version

SITUATIONS: Final = tuple(Situation(*flags) for flags in itertools.product((False, True), repeat=5))
_DENIALS: Final = frozenset(code.value for code in DenialCode)
RELEASED: Final = "released"
# How each Situation flag reads in a condition, when true and when false.
_FLAG_WORDS: Final = {
    "shielded": ("shielded", "not shielded"),
    "restricted": ("restricted", "not restricted"),
    "shield_status_unknown": ("shield status unknown", "shield status known"),
    "sensitive": ("sensitive involvement", "no sensitive involvement"),
    "restriction_status_unknown": ("restriction status unknown", "restriction status known"),
}
# A situation as a tuple of flags; None in a merged condition means "either".
_Term = tuple[bool | None, ...]


@dataclass(frozen=True)
class PolicyVersion:
    """One side of the comparison: how the user named it, and the engine that evaluates it."""

    label: str
    engine: PolicyEngine
    catalogue: Catalogue


@dataclass(frozen=True)
class RefusalChange:
    role: str
    purpose: str
    justified: bool | None
    """Whether the practitioner gave a justification; None when it changes alike either way."""
    before: str | None
    """The denial code, or None when the lookup was permitted."""
    after: str | None


@dataclass(frozen=True)
class FieldChange:
    role: str
    purpose: str
    field: str
    before: str
    """`released`, or the code the field was withheld with."""
    after: str
    when: tuple[str, ...]
    """The situations in which it changes, as merged conditions ("always" if in every one)."""

    @property
    def kind(self) -> str:
        if self.after == RELEASED:
            return "gained"
        if self.before == RELEASED:
            return "lost"
        return "reason changed"


@dataclass(frozen=True)
class NotificationChange:
    """The owners told of a permitted lookup changed: the reasons the holder of a record holding
    every indicator is told for, before and after (empty: no one is told)."""

    role: str
    purpose: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    when: tuple[str, ...]


@dataclass(frozen=True)
class SourcesChange:
    """The sources a permitted lookup asks changed (see explain's synthetic sources)."""

    role: str
    purpose: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class PolicyDiff:
    old: PolicyVersion
    new: PolicyVersion
    refusals: tuple[RefusalChange, ...]
    fields: tuple[FieldChange, ...]
    scenarios: int
    """How many role x purpose x situation combinations were compared."""
    notifications: tuple[NotificationChange, ...] = ()
    """Owner notifications (an obligation, as CP-IS tells the local authority) that change for a
    lookup permitted on both sides; a refused lookup is reported once, under refusals."""
    sources: tuple[SourcesChange, ...] = ()
    """Sources a lookup permitted on both sides asks, changed: a shielding or restriction
    authority no longer asked changes no field in explain, but leaves the gateway unable to
    check shielding or restriction."""

    @property
    def empty(self) -> bool:
        return not self.refusals and not self.fields and not self.notifications and not self.sources

    def counts(self) -> dict[str, int]:
        counted = {"gained": 0, "lost": 0, "reason changed": 0}
        for change in self.fields:
            counted[change.kind] += 1
        return {
            "refusals": len(self.refusals),
            **counted,
            "notifications": len(self.notifications),
            "sources": len(self.sources),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "old": {"label": self.old.label, "revision": self.old.engine.revision},
            "new": {"label": self.new.label, "revision": self.new.engine.revision},
            "scenarios": self.scenarios,
            "counts": self.counts(),
            "refusals": [
                {
                    "role": change.role,
                    "purpose": change.purpose,
                    "justified": change.justified,
                    "before": change.before,
                    "after": change.after,
                }
                for change in self.refusals
            ],
            "fields": [
                {
                    "role": change.role,
                    "purpose": change.purpose,
                    "field": change.field,
                    "change": change.kind,
                    "before": change.before,
                    "after": change.after,
                    "when": list(change.when),
                }
                for change in self.fields
            ],
            "notifications": [
                {
                    "role": change.role,
                    "purpose": change.purpose,
                    "before": list(change.before),
                    "after": list(change.after),
                    "when": list(change.when),
                }
                for change in self.notifications
            ],
            "sources": [
                {
                    "role": change.role,
                    "purpose": change.purpose,
                    "before": list(change.before),
                    "after": list(change.after),
                }
                for change in self.sources
            ],
        }


async def diff_policies(old: PolicyVersion, new: PolicyVersion) -> PolicyDiff:
    """Evaluate both versions over every role, purpose and situation either catalogue knows."""
    roles = _union(old.catalogue.roles, new.catalogue.roles)
    purposes = _union(old.catalogue.purposes, new.catalogue.purposes)
    # A field catalogued on one side only is still asked about on both, so dropping a field from
    # the catalogue shows up as every role losing it.
    catalogue = Catalogue(
        fields={**old.catalogue.fields, **new.catalogue.fields}, roles=roles, purposes=purposes
    )
    refusals: list[RefusalChange] = []
    asked: list[SourcesChange] = []
    changed: dict[tuple[str, str, str, str, str], list[Situation]] = defaultdict(list)
    told: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[Situation]] = defaultdict(
        list
    )
    for role, purpose in itertools.product(roles, purposes):
        refusals += await _refusal_changes(old, new, catalogue, role, purpose)
        asked += await _sources_changes(old, new, catalogue, role, purpose)
        for situation in SITUATIONS:
            scenario = Scenario(role, purpose, situation)
            before = await explain(old.engine, catalogue, scenario)
            after = await explain(new.engine, catalogue, scenario)
            for was, now in _changed_fields(before, after):
                key = (role, purpose, was.field.value, _verdict(was), _verdict(now))
                changed[key].append(situation)
            if before.denial is None and after.denial is None and before.notified != after.notified:
                told[(role, purpose, before.notified, after.notified)].append(situation)
    # Grouped by role and purpose (insertion order), then in catalogue field order.
    position = {field.value: index for index, field in enumerate(catalogue.fields)}
    field_changes = tuple(
        FieldChange(*key, when=_conditions(situations))
        for key, situations in sorted(
            changed.items(),
            key=lambda item: (
                roles.index(item[0][0]),
                purposes.index(item[0][1]),
                position[item[0][2]],
                item[0][3:],
            ),
        )
    )
    notification_changes = tuple(
        NotificationChange(*key, when=_conditions(situations)) for key, situations in told.items()
    )
    return PolicyDiff(
        old,
        new,
        tuple(refusals),
        field_changes,
        scenarios=len(roles) * len(purposes) * len(SITUATIONS),
        notifications=notification_changes,
        sources=tuple(asked),
    )


async def _sources_changes(
    old: PolicyVersion, new: PolicyVersion, catalogue: Catalogue, role: str, purpose: str
) -> list[SourcesChange]:
    """Sources asked by a lookup permitted on both sides (with a justification), changed."""
    scenario = Scenario(role, purpose)
    before = await explain(old.engine, catalogue, scenario)
    after = await explain(new.engine, catalogue, scenario)
    if before.denial is None and after.denial is None and before.asked != after.asked:
        return [SourcesChange(role, purpose, before.asked, after.asked)]
    return []


async def _refusal_changes(
    old: PolicyVersion, new: PolicyVersion, catalogue: Catalogue, role: str, purpose: str
) -> list[RefusalChange]:
    """Lookups refused on one side and not the other, or for another reason, with and without a
    justification; one change when both ways change alike."""
    changes = []
    for justified in (True, False):
        scenario = Scenario(role, purpose, justified=justified)
        before = await explain(old.engine, catalogue, scenario)
        after = await explain(new.engine, catalogue, scenario)
        if before.denial != after.denial:
            changes.append(RefusalChange(role, purpose, justified, before.denial, after.denial))
    if len(changes) == 2 and (changes[0].before, changes[0].after) == (
        changes[1].before,
        changes[1].after,
    ):
        return [RefusalChange(role, purpose, None, changes[0].before, changes[0].after)]
    return changes


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def _verdict(outcome: FieldOutcome) -> str:
    return RELEASED if outcome.released else str(outcome.reason)


def _changed_fields(
    before: Explanation, after: Explanation
) -> Iterable[tuple[FieldOutcome, FieldOutcome]]:
    """Fields gained or lost, and fields withheld for another reason. A field withheld on either
    side because the whole lookup is refused is not "withheld for another reason": the refusal is
    reported once, as a lookup change, rather than once per field."""
    for was, now in zip(before.fields, after.fields, strict=True):
        gained_or_lost = was.released != now.released
        reason_changed = was.reason != now.reason and not {was.reason, now.reason} & _DENIALS
        if gained_or_lost or (not was.released and reason_changed):
            yield was, now


def _conditions(situations: list[Situation]) -> tuple[str, ...]:
    """The situations as few conditions as possible: terms that differ in one flag only are
    merged into one that does not mention it, until no two can be merged (at most one round
    per flag, as each round frees one flag)."""
    terms: set[_Term] = {
        tuple(getattr(situation, flag.name) for flag in fields(Situation))
        for situation in situations
    }
    for _ in fields(Situation):
        merged: set[_Term] = set()
        used: set[_Term] = set()
        for first, second in itertools.combinations(terms, 2):
            differ = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
            if len(differ) == 1 and None not in (first[differ[0]], second[differ[0]]):
                merged.add((*first[: differ[0]], None, *first[differ[0] + 1 :]))
                used |= {first, second}
        if not merged:
            break
        terms = (terms - used) | merged
    return tuple(sorted(_describe(term) for term in terms))


def _describe(term: _Term) -> str:
    words = [
        _FLAG_WORDS[flag.name][0 if value else 1]
        for flag, value in zip(fields(Situation), term, strict=True)
        if value is not None
    ]
    return ", ".join(words) if words else "always"


def render_text(diff: PolicyDiff) -> str:
    """What a reviewer reads in a terminal or a CI log: grouped by role and purpose."""
    lines = [_heading(diff)]
    if diff.empty:
        lines.append("no changes")
        return "\n".join(lines)
    if diff.refusals:
        lines += ["", "Lookups"]
        lines += [f"  {_refusal_sentence(change)}" for change in diff.refusals]
    if diff.fields:
        lines += [
            "",
            "Fields, justification given (+ gained, - lost, ~ withheld for another reason)",
        ]
        width = max(len(change.field) for change in diff.fields)
        for (role, purpose), group in _by_role_and_purpose(diff.fields):
            lines.append(f"  {role}, {purpose}")
            lines += [
                f"    {_SIGN[change.kind]} {change.field.ljust(width)}  {_field_sentence(change)}"
                f"  [{'; '.join(change.when)}]"
                for change in group
            ]
    if diff.sources:
        lines += ["", "Sources a permitted lookup asks"]
        lines += [f"  {c.role}, {c.purpose}: {_sources_sentence(c)}" for c in diff.sources]
    if diff.notifications:
        lines += ["", "Owners told of a permitted lookup (the record holds every indicator)"]
        lines += [
            f"  {c.role}, {c.purpose}: now {_reasons(c.after)}, was {_reasons(c.before)}"
            f"  [{'; '.join(c.when)}]"
            for c in diff.notifications
        ]
    lines += ["", _summary(diff)]
    return "\n".join(lines)


def render_markdown(diff: PolicyDiff) -> str:
    """For a pull-request comment: the same content as tables."""
    lines = [f"### {_heading(diff)}", ""]
    if diff.empty:
        lines.append("No changes.")
        return "\n".join(lines)
    if diff.refusals:
        lines += _table(
            ("role", "purpose", "justification", "before", "after"),
            (
                (
                    c.role,
                    c.purpose,
                    _JUSTIFICATION[c.justified],
                    c.before or "permitted",
                    c.after or "permitted",
                )
                for c in diff.refusals
            ),
        )
    if diff.fields:
        lines += _table(
            ("role", "purpose", "field", "change", "before", "after", "when"),
            (
                (c.role, c.purpose, f"`{c.field}`", c.kind, c.before, c.after, "; ".join(c.when))
                for c in diff.fields
            ),
        )
    if diff.sources:
        lines += _table(
            ("role", "purpose", "sources asked before", "sources asked after"),
            ((c.role, c.purpose, _names(c.before), _names(c.after)) for c in diff.sources),
        )
    if diff.notifications:
        lines += _table(
            ("role", "purpose", "owners told before", "owners told after", "when"),
            (
                (c.role, c.purpose, _reasons(c.before), _reasons(c.after), "; ".join(c.when))
                for c in diff.notifications
            ),
        )
    lines.append(_summary(diff))
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    """A markdown table's lines, and the blank line after it."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return [*lines, *(f"| {' | '.join(row)} |" for row in rows), ""]


_SIGN: Final = {"gained": "+", "lost": "-", "reason changed": "~"}
_JUSTIFICATION: Final = {True: "given", False: "none", None: "either"}


def _heading(diff: PolicyDiff) -> str:
    return (
        f"Policy diff {diff.old.label} (revision {diff.old.engine.revision}) -> "
        f"{diff.new.label} (revision {diff.new.engine.revision}), "
        f"{diff.scenarios} role x purpose x situation combinations"
    )


def _summary(diff: PolicyDiff) -> str:
    counts = diff.counts()
    summary = (
        f"{counts['refusals']} lookup changes; fields: {counts['gained']} gained, "
        f"{counts['lost']} lost, {counts['reason changed']} withheld for another reason"
    )
    if counts["sources"]:
        summary += f"; sources asked: {counts['sources']} changed"
    if counts["notifications"]:
        summary += f"; owner notifications: {counts['notifications']} changed"
    return summary


def _names(sources: tuple[str, ...]) -> str:
    return ", ".join(sources) if sources else "none"


def _sources_sentence(change: SourcesChange) -> str:
    stopped = [name for name in change.before if name not in change.after]
    started = [name for name in change.after if name not in change.before]
    parts = [f"stops asking {', '.join(stopped)}"] if stopped else []
    parts += [f"starts asking {', '.join(started)}"] if started else []
    return "; ".join(parts)


def _reasons(reasons: tuple[str, ...]) -> str:
    return ", ".join(reasons) if reasons else "no one"


def _refusal_sentence(change: RefusalChange) -> str:
    who = f"{change.role}, {change.purpose}"
    condition = {True: " with a justification", False: " without a justification", None: ""}[
        change.justified
    ]
    now = f"refused ({change.after})" if change.after else "permitted"
    was = f"refused ({change.before})" if change.before else "permitted"
    return f"{who}{condition}: now {now}, was {was}"


def _field_sentence(change: FieldChange) -> str:
    if change.kind == "gained":
        return f"now released (was withheld: {change.before})"
    if change.kind == "lost":
        return f"now withheld: {change.after}"
    return f"now withheld: {change.after} (was {change.before})"


def _by_role_and_purpose(
    changes: Iterable[FieldChange],
) -> Iterable[tuple[tuple[str, str], list[FieldChange]]]:
    grouped: dict[tuple[str, str], list[FieldChange]] = defaultdict(list)
    for change in changes:
        grouped[(change.role, change.purpose)].append(change)
    return grouped.items()


def diff_main(old: str, new: str, policy_dir: Path, output: str) -> int:
    """`childlookup policy diff`: exit 0 when nothing changes, 1 when something does (as diff(1)
    does, so CI can tell), 2 when either version cannot be read or evaluated."""
    try:
        with policy_version(old, policy_dir) as old_dir, policy_version(new, policy_dir) as new_dir:
            diff = anyio.run(diff_policies, _version(old, old_dir), _version(new, new_dir))
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    if output == "json":
        print(json.dumps(diff.as_json(), indent=2))
    else:
        print(render_markdown(diff) if output == "markdown" else render_text(diff))
    return 0 if diff.empty else 1


def _version(label: str, directory: Path) -> PolicyVersion:
    # Remembered answers: the lookup-level questions repeat across the sixteen situations.
    bundle = load_bundle(directory)
    engine = MemoisedPolicyEngine(RegoPolicyEngine(bundle))
    return PolicyVersion(label, engine, Catalogue.of(bundle))
