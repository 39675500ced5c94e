"""The planned executor answers exactly as graphql-core does, and takes its fast path only where
that holds: the same operations run on one schema twice, once with each executor."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, NewType

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.executor import PlannedExecutor
from resolvers.schema import build_schema


@strawberry.enum
class Status(enum.Enum):
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"


@strawberry.type
class Contact:
    name: str
    phone: str | None
    since: dt.date | None


Code = NewType("Code", str)
CODE = strawberry.scalar(
    name="Code",
    serialize=lambda value: value or None,  # "" has no representation
    parse_value=str,
)


@strawberry.type
class Source:
    agency: str
    status: Status
    contacts: list[Contact]
    tags: list[str | None] | None
    code: Code | None = None


@strawberry.type
class Lookup:
    found: bool
    score: float
    sources: list[Source]
    first: Source | None


class Broken:
    """A source whose `agency` cannot be read."""

    status = Status.ANSWERED
    contacts: list[Contact] = []
    tags = None

    @property
    def agency(self) -> str:
        raise ValueError("cannot read")


def _source(agency: str, *, phone: str | None = "0100") -> Source:
    contact = Contact(name=f"{agency} lead", phone=phone, since=dt.date(2024, 5, 1))
    return Source(agency=agency, status=Status.ANSWERED, contacts=[contact], tags=["a", None])


ANSWERS: dict[str, Any] = {}


@strawberry.type
class Query:
    @strawberry.field
    async def lookup(self, case: str) -> Lookup:
        return ANSWERS[case]


class Counting:
    """Counts the fields graphql-core resolves one by one (its slow path)."""

    fields = 0

    def execute_field(self, *args: Any, **kwargs: Any) -> Any:
        type(self).fields += 1
        return super().execute_field(*args, **kwargs)


class CountingPlanned(Counting, PlannedExecutor):
    pass


class CountingCore(Counting, StrawberryGraphQLCoreExecutionContext):
    pass


def _schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    return (
        strawberry.Schema(
            query=Query, execution_context_class=CountingPlanned, scalar_overrides={Code: CODE}
        ),
        strawberry.Schema(
            query=Query, execution_context_class=CountingCore, scalar_overrides={Code: CODE}
        ),
    )


FULL = """
query Q($case: String!) { lookup(case: $case) {
  found score __typename
  all: sources { agency status tags ...People }
  first { agency status code contacts { name } }
} }
fragment People on Source { contacts { name phone since } ... on Source { kind: __typename } }
"""

CASES: dict[str, Lookup | Any] = {
    "regular": Lookup(
        found=True, score=0.5, sources=[_source("health"), _source("school")], first=None
    ),
    # A null where the schema forbids one: graphql-core's error, path and null propagation.
    "null in a non-null list item": Lookup(
        found=True,
        score=1.0,
        sources=[_source("health"), None],
        first=_source("x"),
    ),
    "null in a non-null leaf": Lookup(
        found=True,
        score=1.0,
        sources=[_source("health")],
        first=Source(
            agency=None,
            status=Status.ANSWERED,
            contacts=[],
            tags=None,
        ),
    ),
    "a value the scalar refuses": Lookup(
        found=True,
        score="high",
        sources=[],
        first=None,
    ),
    "a scalar with no representation": Lookup(
        found=True,
        score=1.0,
        sources=[],
        first=Source(agency="x", status=Status.ANSWERED, contacts=[], tags=None, code=Code("")),
    ),
    "a read that fails": Lookup(
        found=False,
        score=0.0,
        sources=[Broken()],
        first=None,
    ),
    "not a list": Lookup(
        found=False,
        score=0.0,
        sources=_source("health"),
        first=None,
    ),
    "an enum value outside the enum": Lookup(
        found=False,
        score=0.0,
        sources=[],
        first=Source(
            agency="x",
            status="unknown",
            contacts=[],
            tags=None,
        ),
    ),
}


async def _both(query: str, variables: dict[str, Any]) -> tuple[Any, Any]:
    planned, core = _schemas()
    ours = await planned.execute(query, variable_values=variables)
    theirs = await core.execute(query, variable_values=variables)
    return ours, theirs


def _shape(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    return result.data, [(e.message, e.path) for e in result.errors or []]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.anyio
async def test_each_answer_and_error_is_graphql_cores(case: str) -> None:
    ANSWERS[case] = CASES[case]
    ours, theirs = await _both(FULL, {"case": case})
    assert _shape(ours) == _shape(theirs)
    if case == "regular":
        assert ours.errors is None
        assert ours.data["lookup"]["all"][1]["contacts"][0]["since"] == "2024-05-01"
        assert ours.data["lookup"]["all"][0]["status"] == "ANSWERED"
        assert ours.data["lookup"]["all"][0]["kind"] == "Source"
    else:
        assert ours.errors, "each irregular case is an error in graphql-core too"


@pytest.mark.anyio
async def test_a_plain_selection_is_completed_without_graphql_cores_field_by_field_path() -> None:
    ANSWERS["regular"] = CASES["regular"]
    CountingPlanned.fields = CountingCore.fields = 0
    await _both(FULL, {"case": "regular"})
    assert CountingPlanned.fields == 1  # the root field, which has a resolver
    assert CountingCore.fields > 20


@pytest.mark.anyio
async def test_a_selection_with_directives_is_left_to_graphql_core() -> None:
    """@include and @skip depend on this request's variables: no plan may remember them."""
    ANSWERS["regular"] = CASES["regular"]
    query = """query Q($case: String!, $with: Boolean!) { lookup(case: $case) {
      found sources { agency contacts @include(if: $with) { name } } } }"""
    for flag in (True, False, True):
        CountingPlanned.fields = 0
        ours, theirs = await _both(query, {"case": "regular", "with": flag})
        assert _shape(ours) == _shape(theirs)
        assert ("contacts" in ours.data["lookup"]["sources"][0]) is flag
        assert CountingPlanned.fields > 1


@pytest.mark.anyio
async def test_the_lookup_schema_uses_the_planned_executor() -> None:
    assert build_schema().execution_context_class is PlannedExecutor
