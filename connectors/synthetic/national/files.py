"""A national population on disk, in the layout the national stack and benchmark read:

    OUT/national.json           seed, children, today, agencies, postcode districts
    OUT/records/<kind>.jsonl    {"agency": name, "record": ConnectorRecord}, grouped by agency
    OUT/truth.jsonl             one ChildTruth per child

Files are written whole, in a fixed order, so the same population always gives the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict

from connectors.national import AGENCY_KINDS, NationalAgency
from connectors.protocol import ConnectorRecord
from connectors.synthetic.files import write_lines
from connectors.synthetic.national.population import ChildTruth, NationalPopulation
from connectors.synthetic.national.records import RECORD_FILES, HeldRecord
from connectors.synthetic.population import cyclic_gc_paused

MANIFEST_FILE: Final = "national.json"
RECORDS_DIR: Final = "records"
TRUTH_FILE: Final = "truth.jsonl"


class NationalManifest(BaseModel):
    """`national.json`: what the national stack needs to configure its agencies and routes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    children: int
    today: date
    agencies: tuple[NationalAgency, ...]
    postcode_districts: dict[str, str]


@dataclass(frozen=True)
class NationalSummary:
    children: int
    agencies: Mapping[str, int]
    records: Mapping[str, int]
    moved_authority: int
    moved_school: int
    median_holders: float

    def __str__(self) -> str:
        def counts(by_kind: Mapping[str, int]) -> str:
            return ", ".join(f"{kind} {count:,}" for kind, count in by_kind.items())

        return (
            f"children {self.children:,}\n"
            f"agencies: {counts(self.agencies)}\n"
            f"records: {counts(self.records)}\n"
            f"moved authority {self.moved_authority:,}, moved school {self.moved_school:,}\n"
            f"median holders per child {self.median_holders:g}"
        )


def write_national(population: NationalPopulation, out: Path) -> NationalSummary:
    """Write the population into `out` (created if needed) and summarise it."""
    with cyclic_gc_paused():
        return _write(population, out)


def _write(population: NationalPopulation, out: Path) -> NationalSummary:
    (out / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    # The manifest is what makes the files a population (load_national reads it first): gone
    # while they are written and put back last, a write that fails part way leaves none.
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    manifest = NationalManifest(
        seed=population.seed,
        children=len(population.truth),
        today=population.today,
        agencies=population.agencies,
        postcode_districts=dict(population.postcode_districts),
    )
    for kind in RECORD_FILES:
        write_lines(
            out / RECORDS_DIR / f"{kind}.jsonl",
            # Agency names match ^[a-z][a-z0-9_]*$: nothing in them needs escaping.
            (
                f'{{"agency":"{held.agency}","record":{held.record.model_dump_json()}}}'
                for held in population.records[kind]
            ),
        )
    write_lines(out / TRUTH_FILE, (row.model_dump_json() for row in population.truth))
    write_lines(out / MANIFEST_FILE, [manifest.model_dump_json(indent=1)])
    kinds = Counter(agency.kind for agency in population.agencies)
    return NationalSummary(
        children=len(population.truth),
        agencies={kind: kinds[kind] for kind in AGENCY_KINDS},
        records={kind: len(population.records[kind]) for kind in RECORD_FILES},
        moved_authority=sum(row.moved_authority for row in population.truth),
        moved_school=sum(row.moved_school for row in population.truth),
        median_holders=population.median_holders(),
    )


def load_national(out: Path) -> NationalManifest:
    return NationalManifest.model_validate_json((out / MANIFEST_FILE).read_bytes())


def load_national_records(out: Path, kind: str) -> list[HeldRecord]:
    """The lines of `records/<kind>.jsonl` (an identity source or an agency kind)."""
    held = []
    with (out / RECORDS_DIR / f"{kind}.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            held.append(HeldRecord(row["agency"], ConnectorRecord.model_validate(row["record"])))
    return held


def load_national_truth(out: Path) -> list[ChildTruth]:
    with (out / TRUTH_FILE).open(encoding="utf-8") as lines:
        return [ChildTruth.model_validate_json(line) for line in lines]
