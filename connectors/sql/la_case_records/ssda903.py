"""Reading an SSDA903 looked-after return (the DfE's CSV files: header and episodes).

The header file has one row per child (`CHILD`, `SEX`, `DOB`, `UPN`, ...), the episodes file one
row per episode of care (`CHILD`, `DECOM` start, `RNE` reason for new episode, `LS` legal status,
`PLACE` placement type, `DEC` end, `REC` reason ceased, `PL_POST` placement postcode, ...), dates
as dd/mm/yyyy. The files carry no reference date, so the importer is told it: the collection
year's end (31 March), which becomes the records' as-of date. Other 903 files (UASC, outcomes,
missing, reviews...) carry nothing a lookup uses and are not read.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from connectors.sql.la_case_records import returns
from connectors.sql.la_case_records.returns import ParsedReturn, Problems, ReturnChild

RETURN_NAME: Final = "ssda903"

HEADER_REQUIRED: Final = ("CHILD", "SEX", "DOB")
EPISODES_REQUIRED: Final = ("CHILD", "DECOM", "RNE", "LS", "PLACE", "DEC")

_Check = Callable[[str | None], tuple[str | None, str | None]]

# Episode columns read as codes, and the schema column each lands in.
_EPISODE_CODES: Final = {
    "RNE": "reason_new_episode",
    "LS": "legal_status",
    "CIN": "cin_category",
    "PLACE": "placement_type",
    "PLACE_PROVIDER": "placement_provider",
    "REC": "reason_episode_ceased",
    "REASON_PLACE_CHANGE": "reason_place_change",
    "HOME_POST": "home_postcode",
    "PL_POST": "placement_postcode",
    "URN": "school_urn",
}


def read_ssda903(header: Path, episodes: Path, reference_date: date) -> ParsedReturn:
    """Read and check both files.

    Raises ReturnFileError listing the problems found (up to ten, then how many more), each by
    file, line and column, never quoting a value.
    """
    problems = Problems(str(header))
    found: list[ReturnChild] = []
    seen: dict[str, int] = {}
    for line, row in _rows(header, HEADER_REQUIRED, problems):
        cells = _Row(problems, line, row)
        child_id = cells.checked("CHILD", returns.child_id)
        if child_id is None:
            continue
        if child_id in seen:
            problems.add(str(line), f"repeats the CHILD of line {seen[child_id]}")
            continue
        seen[child_id] = line
        found.append(
            ReturnChild(
                la_child_id=child_id,
                upn=cells.checked("UPN", returns.upn),
                birth_date=cells.date("DOB", required=True),
                gender=cells.checked("SEX", returns.gender),
            )
        )
    problems.raise_any()
    episode_problems = Problems(str(episodes))
    rows: list[dict[str, Any]] = []
    for line, row in _rows(episodes, EPISODES_REQUIRED, episode_problems):
        cells = _Row(episode_problems, line, row)
        child_id = cells.checked("CHILD", returns.child_id)
        if child_id is not None and child_id not in seen:
            episode_problems.add(str(line), "CHILD: not in the header file")
        start, end = cells.date("DECOM", required=True), cells.date("DEC")
        if start is not None and end is not None and end < start:
            episode_problems.add(str(line), "DEC: before DECOM")
        episode: dict[str, Any] = {"la_child_id": child_id, "start_date": start, "end_date": end}
        for column, name in _EPISODE_CODES.items():
            episode[name] = cells.checked(column, returns.code)
        rows.append(episode)
    episode_problems.raise_any()
    return ParsedReturn(
        name=RETURN_NAME,
        reference_date=reference_date,
        children=found,
        rows={"looked_after_episodes": rows},
    )


def _rows(
    path: Path, required: tuple[str, ...], problems: Problems
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) for each data row; a missing file or required column is one problem and no
    rows. A row with more or fewer cells than the header is a problem of its own."""
    try:
        file = path.open(encoding="utf-8-sig", newline="")
    except OSError as error:
        problems.add("0", f"cannot read the file: {error.strerror}")
        return
    with file:
        reader = csv.reader(file)
        try:
            names = [name.strip().upper() for name in next(reader)]
        except StopIteration:
            problems.add("1", "empty file: no header row")
            return
        except (csv.Error, UnicodeDecodeError):
            problems.add("1", "not a CSV file in UTF-8")
            return
        missing = [name for name in required if name not in names]
        if missing:
            problems.add("1", f"missing columns: {', '.join(missing)}")
            return
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError):
                problems.add(str(reader.line_num), "not readable as CSV in UTF-8")
                return
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(names):
                problems.add(
                    str(reader.line_num), f"{len(cells)} cells where the header has {len(names)}"
                )
                continue
            yield reader.line_num, dict(zip(names, cells, strict=True))


class _Row:
    """One CSV row's cells, checked by column; problems are noted by line and column."""

    def __init__(self, problems: Problems, line: int, row: dict[str, str]) -> None:
        self._problems = problems
        self._line = line
        self._row = row

    def checked(self, column: str, check: _Check) -> str | None:
        value, wrong = check(self._row.get(column))
        if wrong is not None:
            self._problems.add(str(self._line), f"{column}: {wrong}")
        return value

    def date(self, column: str, *, required: bool = False) -> date | None:
        text = (self._row.get(column) or "").strip()
        if not text:
            if required:
                self._problems.add(str(self._line), f"{column}: missing")
            return None
        try:
            return datetime.strptime(text, "%d/%m/%Y").date()
        except ValueError:
            self._problems.add(str(self._line), f"{column}: not a date (dd/mm/yyyy)")
            return None
