"""The children a demo introduces: one of each kind of lookup worth showing.

Picks are made from the agencies' records, the way a practitioner would meet the children, and
the ground truth only tells which records are the same child. No pick is restricted, and only the
shielded pick is shielded, so that each lookup shows one behaviour rather than several at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from connectors.protocol import ConnectorRecord
from connectors.synthetic.population import Population

# With DEFAULT_SEED, every population of this many children or more has one child of each kind
# (every size up to 5,000 checked; the largest that fails is 276). With other seeds, 500 children
# fail about three times in ten thousand (2 of 7,000 seeds tried), when no shielded or no
# protection-plan child happens to have the NHS number in its social care record.
SHOWCASE_MIN_CHILDREN: Final = 500

SHOWCASE_KINDS: Final = (
    "shielded",
    "child_protection_plan",
    "sensitive_service",
    "education_linked",
    "ordinary",
)


def showcase(population: Population) -> dict[str, str]:
    """NHS numbers of five different children, keyed by what each one demonstrates.

    - shielded: shielded, and the social care record carries the NHS number, so the lookup by NHS
      number reaches the shield;
    - child_protection_plan: on a protection plan, with the NHS number in the social care record;
    - sensitive_service: has a sensitive health involvement (brokered contact);
    - education_linked: the education record carries the NHS number;
    - ordinary: no social care record and no sensitive involvement.

    Raises ValueError when the population lacks one of them; see SHOWCASE_MIN_CHILDREN for a size
    that always works with DEFAULT_SEED.
    """
    truth = population.truth

    def children(source: str, records: Iterable[ConnectorRecord]) -> list[str]:
        return [truth[source, record.record_id] for record in records]

    nhs_numbers = {
        truth["health", record.record_id]: nhs
        for record in population.health
        if (nhs := record.identifiers.nhs_number) is not None
    }
    restricted = set(children("health", (r for r in population.health if r.flags.restricted)))
    shielded = set(children("social_care", (r for r in population.social_care if r.flags.shielded)))
    known = set(children("social_care", population.social_care))
    sensitive = children("health", filter(_has_sensitive, population.health))
    with_sensitive = set(sensitive)
    linked_social_care = [r for r in population.social_care if r.identifiers.nhs_number]

    candidates = {
        "shielded": children("social_care", (r for r in linked_social_care if r.flags.shielded)),
        "child_protection_plan": children(
            "social_care",
            (r for r in linked_social_care if r.indicators and r.indicators.child_protection_plan),
        ),
        "sensitive_service": sensitive,
        "education_linked": children(
            "education", (r for r in population.education if r.identifiers.nhs_number)
        ),
        "ordinary": [
            child
            for child in children("health", population.health)
            if child not in known and child not in with_sensitive
        ],
    }
    chosen: dict[str, str] = {}
    for kind in SHOWCASE_KINDS:
        may_be_shielded = kind == "shielded"
        pick = next(
            (
                child
                for child in candidates[kind]
                if child not in restricted
                and child not in chosen.values()
                and (may_be_shielded or child not in shielded)
            ),
            None,
        )
        if pick is None:
            raise ValueError(
                f"the population has no child to show as {kind!r}; generate at least "
                f"{SHOWCASE_MIN_CHILDREN} children"
            )
        chosen[kind] = pick
    return {kind: nhs_numbers[child] for kind, child in chosen.items()}


def _has_sensitive(record: ConnectorRecord) -> bool:
    return any(involvement.sensitive for involvement in record.involvements or ())
