"""Routed agencies shown by their kind while the caller does not see where the child is.

In national routing an agency is asked because of where the child is: the practice they are
registered with, the school on roll, the authority of their home, or one the locator names
(gateway.routing). Its name - which carries an ODS code, a school's URN or an authority's code -
says that as plainly as the field it holds would. So unless the caller sees where the child is
(`_location_shown`), each agency asked only when routed is shown by its kind (`gp_practice`,
`school`, `social_care`): in the sources, the records, the withheld fields and the provenance of
what is released. A shielded child's practice, school and authority are then named nowhere in the
answer - even when no record holds her address, school or GP practice, so that nothing of them was
withheld: the authority that shields her is where she is.

An agency that is a sensitive service itself (`SourceConfig.sensitive`: a sexual health clinic, a
CAMHS trust), asked always or routed to, says by its name that the child uses it - as its
provider's name in an involvement would, which only a caller shown sensitive service details
sees. So unless the caller is shown the lookup's details (`_details_shown`), it is shown as
`SENSITIVE_SERVICE` in the same places, whatever else it would be shown as. Several such agencies
asked are several entries of that name, as several routed agencies of one kind are.

The audit keeps the agencies' names: this is the caller's view only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from connectors.protocol import FieldId
from gateway.config import SENSITIVE_SERVICE
from gateway.decide import SHIELD_REASONS
from gateway.types import (
    Ambiguity,
    LookupResult,
    Plan,
    Release,
    SourceAnswer,
)

WHERE: frozenset[FieldId] = frozenset({FieldId.ADDRESS, FieldId.SCHOOL, FieldId.GP_PRACTICE})
"""What a caller must see of the child for routed agencies' names to tell them nothing more."""


def shown_names(
    plan: Plan,
    release: Release,
    answers: Sequence[SourceAnswer],
    sensitive: Collection[str] = frozenset(),
) -> dict[str, str]:
    """Per agency asked that the caller is not shown by its own name, the name it is shown by: a
    sensitive one (of `sensitive`) `SENSITIVE_SERVICE`, unless the caller is shown sensitive
    service details (`_details_shown`); a routed one its kind, unless the caller sees where the
    child is (`_location_shown`). Empty when nothing is renamed."""
    names: dict[str, str] = {}
    if not _location_shown(plan, release):
        names = {
            answer.source: plan.planned_as(answer.source)
            for answer in answers
            if plan.planned_as(answer.source) != answer.source
        }
    if not _details_shown(release):
        names |= neutral_names(a.source for a in answers if a.source in sensitive)
    return names


def neutral_names(sensitive: Iterable[str]) -> dict[str, str]:
    """Each of the `sensitive` sources shown as `SENSITIVE_SERVICE`: to a caller shown no
    sensitive service details, as one refused the lookup is."""
    return dict.fromkeys(sensitive, SENSITIVE_SERVICE)


def _details_shown(release: Release) -> bool:
    """Whether the caller is shown the lookup's sensitive service details: released from some
    record and withheld from none. Withheld anywhere - not granted, or for a shield - a
    sensitive agency's name would say what they hide; released nowhere, it would be all the
    caller is shown of them."""
    details = FieldId.SENSITIVE_SERVICE_DETAILS
    return any(details in r.fields for r in release.records) and not any(
        w.field is details for w in release.withheld
    )


def _location_shown(plan: Plan, release: Release) -> bool:
    """Whether the caller sees where the child is: `WHERE` granted, none of it withheld, nothing
    withheld for a shield or restriction - and, for a child flagged shielded, restricted or of
    unknown status, some of it released. What was withheld cannot say that alone: a record
    holding none of `WHERE` (a restricted PDS record arrives without address and GP) has none
    withheld. A restriction, or doubt about one, is never lifted (policies/release.rego); a
    shield is lifted only by a break-glass grant, which the release then shows by releasing the
    child's location - released nowhere, it is not shown, lifted or not."""
    if not plan.fields >= WHERE:
        return False
    if any(w.field in WHERE or w.reason in SHIELD_REASONS for w in release.withheld):
        return False
    flags = release.flags
    if flags.restricted or not flags.restriction_status_known:
        return False
    if flags.shielded or not flags.shield_status_known:
        return any(r.fields & WHERE for r in release.records)
    return True


def renamed_release(release: Release, names: Mapping[str, str]) -> Release:
    """`release` with its records' sources as the caller is shown them (for the merge, whose
    provenance names them)."""
    if not names:
        return release
    records = tuple(
        replace(r, matched=replace(r.matched, source=names.get(r.matched.source, r.matched.source)))
        for r in release.records
    )
    return replace(release, records=records)


def renamed_result(result: LookupResult, names: Mapping[str, str]) -> LookupResult:
    """`result` with every agency as the caller is shown it."""
    if not names:
        return result

    def shown(source: str) -> str:
        return names.get(source, source)

    def counts(by_source: Mapping[str, int] | None) -> dict[str, int] | None:
        if by_source is None:
            return None
        total: dict[str, int] = {}
        for source, count in by_source.items():
            total[shown(source)] = total.get(shown(source), 0) + count
        return total

    ambiguity = result.ambiguity
    return replace(
        result,
        answers=tuple(replace(a, source=shown(a.source)) for a in result.answers),
        matched=tuple(replace(m, source=shown(m.source)) for m in result.matched),
        unmatched=counts(result.unmatched),
        possible=counts(result.possible),
        withheld=tuple(replace(w, source=shown(w.source)) for w in result.withheld),
        ambiguity=None
        if ambiguity is None
        else Ambiguity(
            ambiguity.reason,
            tuple(replace(r, source=shown(r.source)) for r in ambiguity.records),
        ),
    )
