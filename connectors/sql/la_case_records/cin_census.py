"""Reading a children in need census file (the DfE's CIN census XML).

The parts a lookup needs: each child's identifiers (`LAchildID`, `UPN`, `FormerUPN`,
`PersonBirthDate`, `Sex` or the older `GenderCurrent`), their CIN episodes (`CINreferralDate`,
`CINclosureDate` and codes), section 47 enquiries and child protection plans (`CPPstartDate`,
`CPPendDate`), and the collection's `ReferenceDate` - the snapshot's as-of date. Assessments,
CIN plan dates, characteristics and reviews are not read: no lookup field rests on them.

The file is read with expat into a small tree that remembers each element's line, so every
problem is reported by line and element path; a document type declaration is refused outright
(a census file has none, and entity tricks need one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from xml.parsers import expat

from connectors.sql.la_case_records import returns
from connectors.sql.la_case_records.returns import ParsedReturn, Problems, ReturnChild

RETURN_NAME = "cin_census"


@dataclass
class _Element:
    tag: str
    line: int
    children: list[_Element] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str) -> list[_Element]:
        return [child for child in self.children if child.tag == tag]

    def first(self, tag: str) -> _Element | None:
        found = self.all(tag)
        return found[0] if found else None

    def value(self, tag: str) -> str | None:
        found = self.first(tag)
        return None if found is None else found.text.strip() or None


class _DoctypeRefused(Exception):
    pass


def _parse(path: Path, problems: Problems) -> _Element | None:
    root = _Element("", 0)
    stack = [root]
    parser = expat.ParserCreate()

    def start(tag: str, attributes: dict[str, str]) -> None:
        element = _Element(tag.rpartition(":")[2], parser.CurrentLineNumber)
        stack[-1].children.append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def characters(data: str) -> None:
        stack[-1].text += data

    def doctype(*args: object) -> None:
        raise _DoctypeRefused

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = doctype
    try:
        with path.open("rb") as file:
            parser.ParseFile(file)
    except OSError as error:
        problems.add("0", f"cannot read the file: {error.strerror}")
        return None
    except expat.ExpatError as error:
        problems.add(str(error.lineno), f"not well-formed XML: {expat.ErrorString(error.code)}")
        return None
    except _DoctypeRefused:
        problems.add(str(parser.CurrentLineNumber), "a document type declaration is not allowed")
        return None
    except (LookupError, ValueError):
        # An encoding the XML declaration names that Python does not know, or that expat cannot
        # read (multi-byte, not a text encoding): the codec's own message may quote the file.
        problems.add(str(parser.CurrentLineNumber), "not readable XML: an unsupported encoding")
        return None
    return root.first("Message")


@dataclass
class _Reader:
    """Checks one element's values, noting each problem by line and element path."""

    problems: Problems
    path: str
    element: _Element

    def at(self, element: _Element, step: str) -> _Reader:
        return _Reader(self.problems, f"{self.path}/{step}", element)

    def note(self, tag: str, what: str) -> None:
        """A problem with the child element `tag` (at the parent's line when it is missing)."""
        found = self.element.first(tag)
        line = self.element.line if found is None else found.line
        self.problems.add(str(line), f"{self.path}/{tag}: {what}")

    def date(self, tag: str, *, required: bool = False) -> date | None:
        text = self.element.value(tag)
        if text is None:
            if required:
                self.note(tag, "missing")
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.note(tag, "not a date (YYYY-MM-DD)")
            return None

    def checked(
        self, tag: str, check: Callable[[str | None], tuple[str | None, str | None]]
    ) -> str | None:
        value, wrong = check(self.element.value(tag))
        if wrong is not None:
            self.note(tag, wrong)
        return value

    def flag(self, tag: str) -> bool | None:
        text = self.element.value(tag)
        if text is None:
            return None
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        self.note(tag, "not true or false")
        return None


def read_cin_census(path: Path) -> ParsedReturn:
    """Read and check a whole census file.

    Raises ReturnFileError listing the problems found (up to ten, then how many more), each by
    line and element path, never quoting a value.
    """
    problems = Problems(str(path))
    message = _parse(path, problems)
    if message is None and not problems.found:
        problems.add("1", "not a CIN census file: no Message element")
    problems.raise_any()
    assert message is not None
    reference = _reference_date(message, problems)
    rows: dict[str, list[dict[str, Any]]] = {
        "cin_episodes": [],
        "child_protection_plans": [],
        "section47_enquiries": [],
    }
    found: list[ReturnChild] = []
    seen: dict[str, int] = {}
    container = message.first("Children")
    for number, element in enumerate([] if container is None else container.all("Child"), 1):
        reader = _Reader(problems, f"Children/Child[{number}]", element)
        child = _child(reader, element)
        if child is None:
            continue
        if child.la_child_id in seen:
            earlier = seen[child.la_child_id]
            problems.add(
                str(element.line), f"{reader.path}: repeats the LA child id of Child[{earlier}]"
            )
            continue
        seen[child.la_child_id] = number
        found.append(child)
        for episode_number, details in enumerate(element.all("CINdetails"), 1):
            _episode(reader.at(details, f"CINdetails[{episode_number}]"), child.la_child_id, rows)
    problems.raise_any()
    assert reference is not None
    return ParsedReturn(name=RETURN_NAME, reference_date=reference, children=found, rows=rows)


def _reference_date(message: _Element, problems: Problems) -> date | None:
    header = message.first("Header")
    details = None if header is None else header.first("CollectionDetails")
    if details is None:
        problems.add(str(message.line), "Header/CollectionDetails: missing")
        return None
    reader = _Reader(problems, "Header/CollectionDetails", details)
    collection = details.value("Collection")
    if collection is not None and collection.upper() != "CIN":
        problems.add(str(details.line), "Header/CollectionDetails/Collection: not CIN")
    return reader.date("ReferenceDate", required=True)


def _child(reader: _Reader, element: _Element) -> ReturnChild | None:
    identifiers = element.first("ChildIdentifiers")
    if identifiers is None:
        reader.problems.add(str(element.line), f"{reader.path}/ChildIdentifiers: missing")
        return None
    ids = reader.at(identifiers, "ChildIdentifiers")
    la_child_id = ids.checked("LAchildID", returns.child_id)
    sex_tag = "Sex" if identifiers.first("Sex") is not None else "GenderCurrent"
    child = ReturnChild(
        la_child_id=la_child_id or "",
        upn=ids.checked("UPN", returns.upn),
        former_upn=ids.checked("FormerUPN", returns.upn),
        birth_date=ids.date("PersonBirthDate"),
        gender=ids.checked(sex_tag, returns.gender),
    )
    return child if la_child_id is not None else None


def _episode(reader: _Reader, child: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    details = reader.element
    rows["cin_episodes"].append(
        {
            "la_child_id": child,
            "referral_date": reader.date("CINreferralDate", required=True),
            "referral_source": reader.checked("ReferralSource", returns.code),
            "primary_need_code": reader.checked("PrimaryNeedCode", returns.code),
            "closure_date": reader.date("CINclosureDate"),
            "reason_for_closure": reader.checked("ReasonForClosure", returns.code),
        }
    )
    for number, enquiry in enumerate(details.all("Section47"), 1):
        s47 = reader.at(enquiry, f"Section47[{number}]")
        rows["section47_enquiries"].append(
            {
                "la_child_id": child,
                "actual_start_date": s47.date("S47ActualStartDate", required=True),
                "initial_cpc_target": s47.date("InitialCPCtarget"),
                "date_of_initial_cpc": s47.date("DateOfInitialCPC"),
                "icpc_not_required": s47.flag("ICPCnotRequired"),
            }
        )
    for number, plan in enumerate(details.all("ChildProtectionPlans"), 1):
        cpp = reader.at(plan, f"ChildProtectionPlans[{number}]")
        start, end = cpp.date("CPPstartDate", required=True), cpp.date("CPPendDate")
        if start is not None and end is not None and end < start:
            cpp.problems.add(str(plan.line), f"{cpp.path}: CPPendDate is before CPPstartDate")
        rows["child_protection_plans"].append(
            {
                "la_child_id": child,
                "start_date": start,
                "end_date": end,
                "initial_category_of_abuse": cpp.checked("InitialCategoryOfAbuse", returns.code),
                "latest_category_of_abuse": cpp.checked("LatestCategoryOfAbuse", returns.code),
            }
        )
