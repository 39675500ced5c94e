"""The root fields' planned argument conversion (resolvers.arguments) gives what strawberry's own
gives, and fields it cannot plan keep strawberry's resolver."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.extensions import FieldExtension
from strawberry.relay import GlobalID
from strawberry.schema.schema_converter import get_arguments
from strawberry.types.field import StrawberryField

from gateway.types import Purpose
from resolvers.arguments import plan_root_resolvers, planned_arguments
from resolvers.schema import build_schema

SCHEMA = build_schema()
QUERY = SCHEMA.get_type_by_name("Query")
DEMOGRAPHICS = {
    "givenName": "Ada",
    "familyName": "Lovelace",
    "dateOfBirth": "2019-04-13",
    "postcode": None,
    "knownAs": ["Addy", "A"],
    "carerNames": [],
}
GIVEN: dict[str, list[dict[str, Any]]] = {
    "child": [
        {"purpose": Purpose.SAFEGUARDING_ENQUIRY, "identify": {"nhsNumber": "943 476 5919"}},
        {"purpose": Purpose.DIRECT_CARE, "identify": {"upn": "A123"}, "justification": None},
        {"purpose": Purpose.SAFEGUARDING_ENQUIRY, "identify": {"demographics": DEMOGRAPHICS}},
        {"purpose": Purpose.EMERGENCY_OVERRIDE, "nhsNumber": "1", "justification": "ED, 2am"},
        {"purpose": Purpose.SAFEGUARDING_ENQUIRY, "demographics": DEMOGRAPHICS, "upn": None},
        {"purpose": Purpose.SAFEGUARDING_ENQUIRY},
    ],
    "audit_trail": [
        {"nhsNumber": "9434765919"},
        {"upn": "A123", "since": datetime(2026, 11, 29, tzinfo=UTC)},
        {"nhsNumber": None, "upn": None, "since": None},
    ],
    "access_history": [{"nhsNumber": "9434765919", "limit": 25}, {"upn": "A123"}],
    "user_audit_trail": [{"subject": "dev:x", "since": datetime(2026, 11, 1, tzinfo=UTC)}],
    "override_alerts": [{}, {"since": datetime(2026, 11, 1, tzinfo=UTC)}],
    "limit_alerts": [{}, {"since": None}],
}


def _field(schema: strawberry.Schema, name: str) -> StrawberryField:
    query = schema.get_type_by_name("Query")
    return next(field for field in query.fields if field.python_name == name)


def _strawberrys(schema: strawberry.Schema, field: StrawberryField, given: dict[str, Any]) -> Any:
    _, kwargs = get_arguments(
        field=field,
        source=None,
        info=None,  # type: ignore[arg-type]
        kwargs=dict(given),
        config=schema.config,
        scalar_registry=schema.schema_converter.scalar_registry,
    )
    kwargs.pop("info", None)
    return kwargs


def _planned(schema: strawberry.Schema, field: StrawberryField) -> Any:
    return planned_arguments(field, schema.config, schema.schema_converter.scalar_registry)


def test_every_root_field_of_the_gateway_is_planned():
    assert sorted(plan_root_resolvers(SCHEMA)) == sorted(
        SCHEMA.config.name_converter.from_field(field) for field in QUERY.fields
    )


@pytest.mark.parametrize(("name", "given"), [(n, g) for n, gs in GIVEN.items() for g in gs])
def test_the_plan_converts_as_strawberry_does(name: str, given: dict[str, Any]):
    field = _field(SCHEMA, name)
    planned = _planned(SCHEMA, field)(given)
    assert planned == _strawberrys(SCHEMA, field, given)
    assert [type(value) for value in planned.values()] == [
        type(value) for value in _strawberrys(SCHEMA, field, given).values()
    ]


def test_a_list_argument_is_a_fresh_list_each_time():
    """graphql-core hands every request that omits a list the same default object."""
    demographics = dict(DEMOGRAPHICS)
    field = _field(SCHEMA, "child")
    given = {"purpose": Purpose.DIRECT_CARE, "demographics": demographics}
    converted = _planned(SCHEMA, field)(given)
    assert converted["demographics"].known_as == demographics["knownAs"]
    assert converted["demographics"].known_as is not demographics["knownAs"]


# --- fields a plan does not cover keep strawberry's resolver ---------------------------------


class _Upper(FieldExtension):
    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return (await next_(source, info, **kwargs)).upper()


@strawberry.input
class _Built:
    value: str


@strawberry.input
class _Shape:
    sides: int
    tags: list[str] | None = None
    inner: list[_Built] | None = None


@strawberry.input
class _Nested:
    name: str
    within: list[_Nested] | None = None


@strawberry.type
class _Query:
    @strawberry.field
    async def described(self, info: strawberry.Info, shape: _Shape, times: int = 1) -> str:
        tags = ",".join(shape.tags or [])
        inner = ",".join(built.value for built in shape.inner or [])
        return f"{info.context['who']}:{shape.sides * times}:{tags}:{inner}"

    @strawberry.field(extensions=[_Upper()])
    async def shouted(self, word: str) -> str:
        return word

    @strawberry.field
    async def parented(self, parent: strawberry.Parent[Any], word: str) -> str:
        return f"{parent['name']}:{word}"

    @strawberry.field
    async def by_id(self, id: GlobalID) -> str:
        return id.node_id

    @strawberry.field
    async def nested(self, tree: _Nested) -> str:
        return tree.name + "".join(f"({inner.name})" for inner in tree.within or [])

    @strawberry.field
    def plain(self, word: str) -> str:
        return word

    @strawberry.field
    async def maybe(self, word: strawberry.Maybe[str] = None) -> str:
        return "given" if word else "omitted"


def test_fields_outside_the_plan_keep_strawberrys_resolver_and_all_still_answer():
    schema = strawberry.Schema(query=_Query)
    assert plan_root_resolvers(schema) == ["described", "parented"]
    result = asyncio.run(
        schema.execute(
            '{ described(shape: {sides: 3, tags: ["a", "b"], inner: [{value: "x"}]}, times: 2)'
            ' parented(word: "w") shouted(word: "hi") byId(id: "VXNlcjox") plain(word: "p")'
            ' maybe nested(tree: {name: "a", within: [{name: "b"}]}) }',
            context_value={"who": "me"},
            root_value={"name": "root"},
        )
    )
    assert result.errors is None
    assert result.data == {
        "described": "me:6:a,b:x",
        "parented": "root:w",
        "shouted": "HI",
        "byId": "1",
        "plain": "p",
        "maybe": "omitted",
        "nested": "a(b)",
    }
