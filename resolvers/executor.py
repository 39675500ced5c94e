"""graphql-core's executor, with a fast path that completes the answer's plain objects.

Every field below the query's root is a plain attribute of a dataclass, yet graphql-core
completes each one through a resolve-info object, a path, strawberry's resolver wrapper and a
dispatch on its type: for a lookup's ~60 fields and ~110 values that was most of what the GraphQL
layer cost a request. Here a selection compiles once into a plan (read these attributes, coerce
these leaves, descend into these objects and lists), kept per type and selection of the parsed
operation, which portals send over and over.

The fast path only ever produces what graphql-core would: a selection it cannot read statically
(a directive, a field with a resolver or arguments, an abstract or `is_type_of` type) gets no
plan, and a value it does not expect (null where the schema forbids one, a value a scalar
refuses, an exception) abandons the object, which graphql-core then completes itself - with its
own errors, paths and null propagation. Reading an attribute twice is safe: basic fields have no
resolver.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    SelectionSetNode,
    Undefined,
    is_leaf_type,
)
from graphql.execution import MiddlewareManager
from graphql.execution.collect_fields import FieldDetailsList, FragmentDetails, collect_subfields
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

_Complete = Callable[[Any], Any]
_Plan = tuple[tuple[str, Callable[[Any], Any], _Complete], ...]

MAX_PLANS = 1_024
"""Plans remembered (one per object type and selection); all are dropped when full."""


class _Irregular(Exception):
    """A value the fast path does not complete: graphql-core completes the object instead."""


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, completing objects with a remembered plan where one applies."""

    _plans: dict[tuple[Any, ...], tuple[object, _Plan | None]] = {}

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        plan = (
            None
            if _resolves_through_middleware(self.middleware_manager)
            else self._plan(return_type, field_details_list)
        )
        if plan is not None:
            try:
                return _run(plan, result)
            except _Irregular:
                pass
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _plan(self, return_type: GraphQLObjectType, fields: FieldDetailsList) -> _Plan | None:
        # Keyed by the identity of the operation's field nodes, as graphql-core's own memo of
        # collected subfields is; the nodes are kept alive with the plan so no id is reused.
        nodes = tuple(details.node for details in fields)
        key = (return_type, *map(id, nodes))
        remembered = self._plans.get(key)
        if remembered is not None:
            return remembered[1]
        plan = self._compile(return_type, fields)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = (nodes, plan)
        return plan

    def _compile(self, return_type: GraphQLObjectType, fields: FieldDetailsList) -> _Plan | None:
        if return_type.is_type_of is not None or not _static(fields, self.fragments):
            return None
        grouped, defer_usages, _ = collect_subfields(
            self.schema,
            self.fragments,
            self.variable_values,
            self.operation,
            return_type,
            fields,
            self.hide_suggestions,
        )
        if defer_usages:
            return None
        type_name = return_type.name
        steps: list[tuple[str, Callable[[Any], Any], _Complete]] = []
        for response_name, sub_fields in grouped.items():
            field_name = sub_fields[0].node.name.value
            if field_name == "__typename":
                steps.append((response_name, lambda _source: type_name, _as_is))
                continue
            field_def = return_type.fields.get(field_name)
            if field_def is None or field_def.args or sub_fields[0].node.arguments:
                return None
            read = _basic_reader(field_def.resolve, field_def.extensions)
            complete = self._completer(field_def.type, sub_fields)
            if read is None or complete is None:
                return None
            steps.append((response_name, read, complete))
        return tuple(steps)

    def _completer(self, type_: GraphQLOutputType, fields: FieldDetailsList) -> _Complete | None:
        if isinstance(type_, GraphQLNonNull):
            inner = self._completer(type_.of_type, fields)
            return None if inner is None else _non_null(inner)
        if isinstance(type_, GraphQLList):
            item = self._completer(type_.of_type, fields)
            return None if item is None else _list_of(item)
        if is_leaf_type(type_):
            return _leaf(type_.coerce_output_value)
        if isinstance(type_, GraphQLObjectType):
            plan = self._plan(type_, fields)
            return None if plan is None else _object(plan)
        return None


def _resolves_through_middleware(manager: MiddlewareManager | None) -> bool:
    """strawberry hands every request a middleware manager, empty unless an extension wraps
    resolvers; one that does must see every field, so the fast path stands aside."""
    return manager is not None and bool(manager.middlewares)


def _static(fields: FieldDetailsList, fragments: dict[str, FragmentDetails]) -> bool:
    """True when the fields' selections have no directive (no @include, @skip or @defer whose
    outcome could depend on this request's variables) and no fragment variables."""
    return all(
        details.defer_usage is None
        and details.fragment_variable_values is None
        and (
            details.node.selection_set is None
            or _no_directives(details.node.selection_set, fragments)
        )
        for details in fields
    )


def _no_directives(selections: SelectionSetNode, fragments: dict[str, FragmentDetails]) -> bool:
    for selection in selections.selections:
        if selection.directives:
            return False
        if isinstance(selection, InlineFragmentNode):
            if not _no_directives(selection.selection_set, fragments):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None or fragment.definition.directives:
                return False
            if not _no_directives(fragment.definition.selection_set, fragments):
                return False
        else:
            assert isinstance(selection, FieldNode)
    return True


def _basic_reader(resolve: Any, extensions: dict[str, Any]) -> Callable[[Any], Any] | None:
    """The attribute read strawberry's resolver for a basic field does, or None for any other
    resolver."""
    field = extensions.get("strawberry-definition")
    if not getattr(resolve, "_is_default", False) or not isinstance(field, StrawberryField):
        return None
    if field.default_resolver is getattr:
        return attrgetter(field.python_name)
    default, name = field.default_resolver, field.python_name
    return lambda source: default(source, name)


def _run(plan: _Plan, source: Any) -> dict[str, Any]:
    try:
        return {name: complete(read(source)) for name, read, complete in plan}
    except _Irregular:
        raise
    except Exception as error:  # a failing read: graphql-core reports it, with its path
        raise _Irregular from error


def _as_is(value: Any) -> Any:
    return value


def _non_null(inner: _Complete) -> _Complete:
    def complete(value: Any) -> Any:
        if value is None:
            raise _Irregular
        return inner(value)

    return complete


def _list_of(item: _Complete) -> _Complete:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise _Irregular
        return [item(element) for element in value]

    return complete


def _leaf(coerce: Callable[[Any], Any]) -> _Complete:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Exception):
            raise _Irregular
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Irregular
        return coerced

    return complete


def _object(plan: _Plan) -> _Complete:
    def complete(value: Any) -> Any:
        if value is None:
            return None
        return _run(plan, value)

    return complete
