"""A population on disk: one JSON Lines file per agency, which the reference connectors serve, and
the ground truth beside them, which only benchmarks read.

The truth file holds record ids, child ids and, for a copy that differs from the health record,
the names of the faults it shows (`moved`, `known_as`), never a value. Writing the children's true
details to a file of their own would recreate, in miniature, the central copy this project exists
to avoid, and would let a matcher be tested against data no real deployment has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict

from connectors.synthetic.noise import Fault
from connectors.synthetic.population import SOURCES, Population

TRUTH_FILE: Final = "truth.jsonl"


@dataclass(frozen=True)
class PopulationSummary:
    """How many lines each written file holds (one record, or one truth row, per line)."""

    health: int
    education: int
    social_care: int
    truth: int


class _TruthRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    record_id: str
    child_id: str
    faults: tuple[Fault, ...] = ()


def write_population(population: Population, out: Path) -> PopulationSummary:
    """Write `<source>.jsonl` for each agency and `truth.jsonl` into `out`, creating it if needed.

    Files are written whole and in record order, so the same population always gives byte-identical
    files.
    """
    out.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        write_lines(
            out / f"{source}.jsonl",
            [record.model_dump_json() for record in population.records(source)],
        )
    write_lines(
        out / TRUTH_FILE,
        [
            _TruthRow(
                source=source,
                record_id=record_id,
                child_id=child_id,
                faults=population.faults.get((source, record_id), ()),
            ).model_dump_json(exclude_defaults=True)
            for (source, record_id), child_id in population.truth.items()
        ],
    )
    return PopulationSummary(
        health=len(population.health),
        education=len(population.education),
        social_care=len(population.social_care),
        truth=len(population.truth),
    )


def load_truth(path: Path) -> dict[tuple[str, str], str]:
    """Read a truth file back as (source, record_id) -> child id, the shape `Population.truth` has.

    Raises ValueError naming the line of a malformed or repeated row, since a benchmark scored
    against a damaged truth file would report a linkage quality nobody achieved.
    """
    return {key: row.child_id for key, row in _read_truth(path).items()}


def load_faults(path: Path) -> dict[tuple[str, str], tuple[Fault, ...]]:
    """Read a truth file's faults back as (source, record_id) -> faults, the shape
    `Population.faults` has: only copies that show a fault are keys."""
    return {key: row.faults for key, row in _read_truth(path).items() if row.faults}


def _read_truth(path: Path) -> dict[tuple[str, str], _TruthRow]:
    rows: dict[tuple[str, str], _TruthRow] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                row = _TruthRow.model_validate_json(line)
            except ValueError as error:
                raise ValueError(f"{path.name} line {number} is not a truth row") from error
            key = (row.source, row.record_id)
            if key in rows:
                raise ValueError(f"{path.name} line {number} repeats an earlier record")
            rows[key] = row
    return rows


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write each of `lines` and a newline to `path`, whole or not at all: written beside it,
    then renamed over it. Written in place, a write that failed part way (a full disk) left a
    truncated file that a connector or benchmark later read as the whole population. Raises
    OSError naming `path`, where the write's own error named no file."""
    staged = path.with_name(f".{path.name}.partial")
    try:
        with staged.open("w", encoding="utf-8") as file:
            file.writelines(f"{line}\n" for line in lines)
        staged.replace(path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
    finally:  # gone once renamed; else a part-written leftover
        staged.unlink(missing_ok=True)
