"""A national synthetic population: many authorities, practices and schools, children spread over
them, each agency's records, and the truth about who holds a record about whom.

Unlike the single-area population, the truth here names each child's details: a national lookup
benchmark must ask by demographics as a practitioner would, and measure against the agencies that
really hold a record. It is benchmark input only and is never served.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, ConfigDict

from connectors.national import NationalAgency
from connectors.protocol import Sex
from connectors.synthetic.identifiers import IdentifierIssuer
from connectors.synthetic.national.children import NationalChild, place_children
from connectors.synthetic.national.country import build_country
from connectors.synthetic.national.records import HeldRecord, RecordWriter
from connectors.synthetic.noise import NoiseProfile
from connectors.synthetic.population import DEFAULT_TODAY, cyclic_gc_paused


class ChildTruth(BaseModel):
    """One line of `truth.jsonl`: a child, the agencies holding a record about them (identity
    sources excluded), whether they moved, and their true details to look them up by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    child: str
    nhs_number: str
    upn: str | None
    holders: tuple[str, ...]
    moved_authority: bool
    moved_school: bool
    given: str
    family: str
    date_of_birth: date
    sex: Sex
    postcode: str


@dataclass(frozen=True)
class NationalPopulation:
    """The agencies, the postcode district -> authority map, each records file's lines (by
    identity source or agency kind), and the truth per child."""

    seed: int
    today: date
    agencies: tuple[NationalAgency, ...]
    postcode_districts: Mapping[str, str]
    records: Mapping[str, tuple[HeldRecord, ...]]
    truth: tuple[ChildTruth, ...]

    def median_holders(self) -> float:
        return statistics.median(len(row.holders) for row in self.truth) if self.truth else 0.0


def generate_national(
    seed: int,
    children: int,
    today: date | None = None,
    *,
    local_authorities: int = 153,
    practices: int = 500,
    schools: int = 2000,
) -> NationalPopulation:
    """Generate `children` children over a synthetic England of the given shape.

    All randomness comes from one `random.Random(seed)` and `today` defaults to DEFAULT_TODAY, so
    the same arguments give the same population. Records are built for children in a shuffled
    order, so neither a record's position nor its id hints at the child.
    """
    if children < 0:
        raise ValueError("children must not be negative")
    today = today or DEFAULT_TODAY
    rng = random.Random(seed)
    with cyclic_gc_paused():
        country = build_country(rng, children, local_authorities, practices, schools)
        placed = place_children(rng, IdentifierIssuer(rng), country, children, today)
        writer = RecordWriter(rng, today, NoiseProfile())
        holders = {child.kid.child_id: writer.add(child) for child in rng.sample(placed, children)}
        return NationalPopulation(
            seed=seed,
            today=today,
            agencies=country.agencies(),
            postcode_districts=dict(sorted(country.postcode_districts.items())),
            records={
                kind: tuple(sorted(lines, key=lambda held: held.agency))
                for kind, lines in writer.records.items()
            },
            truth=tuple(_truth(child, holders[child.kid.child_id]) for child in placed),
        )


def _truth(child: NationalChild, holders: tuple[str, ...]) -> ChildTruth:
    kid = child.kid
    return ChildTruth(
        child=kid.child_id,
        nhs_number=kid.nhs_number,
        upn=child.upn,
        holders=holders,
        moved_authority=child.moved is not None,
        moved_school=child.former_school is not None,
        given=kid.given,
        family=kid.family,
        date_of_birth=kid.born,
        sex=kid.sex,
        postcode=kid.household.address.postcode,
    )
