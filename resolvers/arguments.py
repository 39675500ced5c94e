"""The root fields' arguments converted by a plan made once per field.

strawberry converts a resolver's arguments on every call: for each argument it asks the name
converter for its GraphQL name, resolves its type annotation and dispatches on that type, and does
the same again for each field of an input object. For `child`'s six arguments, of which a lookup
gives two, that was ~60 us a call in a loop and ~0.2 ms of a gateway's CPU a lookup one at a time
(docs/benchmarks.md) - a fifth of what the GraphQL layer costs before the resolver. The conversion
depends on the field alone, so here it is planned when the schema is built: read these names,
build these inputs, pass these values through.

The plan does what `strawberry.types.arguments.convert_argument` does for the types it covers:
scalars and enums as given, lists, and input objects built with the fields given (and None for
those without a default). A root field keeps strawberry's own resolver when anything about it is
outside that: a field extension or permission, an exception handler, a resolver that is not a
coroutine, or an argument whose type is a `Maybe`, lazy, generic, a `GlobalID`, or an input that
builds itself (`from_input`). tests/test_arguments.py compares both conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

import strawberry
from graphql import GraphQLResolveInfo
from strawberry.relay import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.unset import UNSET

_Convert = Callable[[Any], Any]
_Registry = Mapping[object, Any]


def plan_root_resolvers(schema: strawberry.Schema) -> list[str]:
    """Give each root query field that can be planned a resolver converting its arguments by its
    plan; returns the GraphQL names of the fields that got one."""
    converter = schema.schema_converter
    root = schema._schema.query_type
    planned: list[str] = []
    for name, graphql_field in ({} if root is None else root.fields).items():
        field = graphql_field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if not isinstance(field, StrawberryField):
            continue
        resolver = _planned_resolver(field, converter.config, converter.scalar_registry)
        if resolver is not None and not converter._get_field_exception_handlers(field):
            graphql_field.resolve = resolver
            planned.append(name)
    return planned


def planned_arguments(
    field: StrawberryField, config: StrawberryConfig, scalars: _Registry
) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
    """The field's arguments as graphql-core gives them, converted as strawberry would; None when
    any argument's type is outside what a plan covers."""
    plan = []
    for argument in field.arguments:
        convert = _plan(argument.type, config, scalars)
        if convert is None or not argument.python_name:
            return None
        plan.append((config.name_converter.from_argument(argument), argument.python_name, convert))
    steps = tuple(plan)

    def arguments(given: Mapping[str, Any]) -> dict[str, Any]:
        return {python: convert(given[name]) for name, python, convert in steps if name in given}

    return arguments


def _planned_resolver(
    field: StrawberryField, config: StrawberryConfig, scalars: _Registry
) -> Callable[..., Any] | None:
    resolver = field.base_resolver
    if resolver is None or field.extensions or not resolver.is_async:
        return None
    arguments = planned_arguments(field, config, scalars)
    if arguments is None:
        return None
    # What strawberry's `get_arguments` adds: the source as `self`, or as the parameter asking
    # for the parent or root, and the Info to the parameter asking for it.
    with_self = resolver.self_parameter is not None
    source_names = tuple(
        parameter.name
        for parameter in (resolver.parent_parameter, resolver.root_parameter)
        if parameter is not None
    )
    info_name = None if resolver.info_parameter is None else resolver.info_parameter.name
    info_class = config.info_class

    async def resolve(source: Any, info: GraphQLResolveInfo[Any], **given: Any) -> Any:
        kwargs = arguments(given)
        for name in source_names:
            kwargs[name] = source
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        return await (resolver(source, **kwargs) if with_self else resolver(**kwargs))

    return resolve


def _plan(
    type_: Any, config: StrawberryConfig, scalars: _Registry, within: frozenset[Any] = frozenset()
) -> _Convert | None:
    """How `convert_argument` converts a value of `type_`, or None if that is not planned here;
    `within` are the input types being planned around it (an input holding itself is not)."""
    if isinstance(type_, StrawberryMaybe):
        return None
    if isinstance(type_, StrawberryOptional):
        # convert_argument unwraps the optional, then passes None and UNSET through as any
        # type's converter here does.
        return _plan(type_.of_type, config, scalars, within)
    if isinstance(type_, StrawberryList):
        return _list(type_.of_type, config, scalars, within)
    if _is_leaf(type_, scalars):
        return _as_given
    if has_object_definition(type_) and type_ not in within:
        return _input(type_, config, scalars, within | {type_})
    return None


def _is_leaf(type_: Any, scalars: _Registry) -> bool:
    if type_ is GlobalID:
        return False
    return (
        is_scalar(type_, scalars)
        or isinstance(type_, StrawberryEnumDefinition)
        or has_enum_definition(type_)
    )


def _as_given(value: Any) -> Any:
    return value


def _list(
    item_type: Any, config: StrawberryConfig, scalars: _Registry, within: frozenset[Any]
) -> _Convert | None:
    leaf = isinstance(item_type, StrawberryOptional) and _is_leaf(item_type.of_type, scalars)
    if leaf or _is_leaf(item_type, scalars):

        def copied(value: Any) -> Any:
            # A fresh list, as strawberry gives: graphql-core gives the same default list to
            # every request that omits the value.
            return value if value is None or value is UNSET else list(value)

        return copied
    convert_item = _plan(item_type, config, scalars, within)
    if convert_item is None:
        return None

    def converted(value: Any) -> Any:
        if value is None or value is UNSET:
            return value
        return [convert_item(item) for item in value]

    return converted


def _input(
    cls: Any, config: StrawberryConfig, scalars: _Registry, within: frozenset[Any]
) -> _Convert | None:
    definition = cls.__strawberry_definition__
    if (
        not definition.is_input
        or definition.from_input is not None
        or definition.is_graphql_generic
        or definition.type_params
    ):
        return None
    unset = tuple(
        field.python_name
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    )
    plan = []
    for field in definition.fields:
        convert = _plan(field.resolve_type(type_definition=definition), config, scalars, within)
        if convert is None:
            return None
        plan.append((config.name_converter.from_field(field), field.python_name, convert))
    steps = tuple(plan)

    def built(value: Any) -> Any:
        if value is None or value is UNSET:
            return value
        kwargs: dict[str, Any] = dict.fromkeys(unset)
        for name, python, convert in steps:
            if name in value:
                kwargs[python] = convert(value[name])
        return cls(**kwargs)

    return built
