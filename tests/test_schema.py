import re
from datetime import UTC, date, datetime

import pytest
from graphql import GraphQLEnumType, GraphQLError, GraphQLObjectType, specified_scalar_types

from connectors.notifications import NotificationReason
from gateway.audit import (
    ACCESS_HISTORY_VIEWED,
    ALERTS_VIEWED,
    AUDIT_REVIEW,
    HIDDEN,
    OPERATIONS,
    OWNER_REVIEW,
    PASSED_ON,
    UNDELIVERED_VIEWED,
    USER_TRAIL_VIEWED,
)
from gateway.policy import DenialCode, WithholdingReason
from gateway.types import LookupOutcome, Purpose
from resolvers.schema import MAX_TOKENS, SCHEMA_FILE, build_schema, export_sdl
from resolvers.types import DATE_SPEC, DATE_TIME_SPEC, SCALARS


def test_published_schema_matches_the_code():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == export_sdl(), (
        "schema.graphql has drifted: run `childlookup schema --write` and review the diff"
    )


def test_every_type_field_and_argument_is_described_for_graphiql():
    schema = build_schema()._schema
    undocumented = []
    for name, gql_type in schema.type_map.items():
        if name.startswith("__") or not isinstance(gql_type, GraphQLObjectType | GraphQLEnumType):
            continue
        if not gql_type.description:
            undocumented.append(name)
        if isinstance(gql_type, GraphQLObjectType):
            for field_name, field in gql_type.fields.items():
                if not field.description:
                    undocumented.append(f"{name}.{field_name}")
                undocumented += [
                    f"{name}.{field_name}({arg})"
                    for arg, a in field.args.items()
                    if not a.description
                ]
    assert undocumented == []


def test_there_is_no_list_or_search_all_query():
    query = build_schema()._schema.query_type
    assert set(query.fields) == {
        "child",
        "auditTrail",
        "accessHistory",
        "userAuditTrail",
        "overrideAlerts",
        "limitAlerts",
        "undeliveredNotifications",
    }
    assert "List" not in str(query.fields["child"].type)
    # Every root field that reaches a child is about one named child: the audit trail by NHS
    # number or UPN and the owner's access history likewise, a lookup by exactly one of NHS
    # number, UPN or demographics (checked at run time, see IDENTIFY_ONE_WAY), and demographics
    # that could link one child if all agreed (checked at run time, see INSUFFICIENT_DETAILS) -
    # details of the child, never a wildcard, range or list to search by. The auditors' lists (one
    # user's trail, the override and limit alerts, the undelivered notifications) carry no child's
    # identity or data.
    for feed in ("userAuditTrail", "overrideAlerts", "limitAlerts", "undeliveredNotifications"):
        assert not query.fields[feed].args.keys() - {"since", "after", "subject"}
        assert str(query.fields[feed].type) in (
            "[AuditEntry!]!",
            "[OverrideAlert!]!",
            "[LimitAlert!]!",
            "[UndeliveredNotification!]!",
        )
    for entry in ("AuditEntry", "OverrideAlert", "LimitAlert", "UndeliveredNotification"):
        fields = set(build_schema()._schema.type_map[entry].fields)
        assert not fields & {"child", "nhsNumber", "upn", "dateOfBirth", "address"}
    for by_child, others in (("auditTrail", {"since", "after"}), ("accessHistory", {"limit"})):
        args = query.fields[by_child].args
        assert set(args) == {"nhsNumber", "upn", *others}  # one of the two: IDENTIFY_ONE_WAY
        assert {str(args[name].type) for name in ("nhsNumber", "upn")} == {"String"}
    child_args = query.fields["child"].args
    assert {"nhsNumber", "upn", "demographics"} <= set(child_args)
    demographics = build_schema()._schema.type_map["DemographicsInput"]
    assert set(demographics.fields) == {
        "givenName",
        "familyName",
        "dateOfBirth",
        "postcode",
        "sex",
        "formerFamilyName",
        "knownAs",
        "addressLines",
        "carerNames",
    }


INTROSPECT = """
query {
  date: __type(name: "Date") { specifiedByURL }
  dateTime: __type(name: "DateTime") { specifiedByURL }
  identity: __type(name: "ChildIdentity") { isOneOf inputFields { name type { kind name } } }
  query: __type(name: "Query") {
    fields { name args(includeDeprecated: true) {
      name isDeprecated deprecationReason type { kind name }
    } }
  }
}
"""


def _introspected():
    result = build_schema().execute_sync(INTROSPECT)
    assert result.errors is None
    return result.data


def test_date_scalars_name_their_specification_for_codegen():
    data = _introspected()
    assert data["date"]["specifiedByURL"] == DATE_SPEC
    assert data["dateTime"]["specifiedByURL"] == DATE_TIME_SPEC


def test_a_time_is_always_answered_with_an_offset():
    serialize = SCALARS[datetime].serialize
    assert serialize(datetime(2026, 3, 14, 9, 30)) == "2026-03-14T09:30:00+00:00"
    assert serialize(datetime(2026, 3, 14, 9, 30, tzinfo=UTC)) == "2026-03-14T09:30:00+00:00"


@pytest.mark.parametrize(
    ("scalar", "text", "value"),
    [
        (date, "2024-10-04", date(2024, 10, 4)),
        (date, "20241004", None),
        (date, "2024-W40-5", None),
        (date, "2024-10-04T00:00:00Z", None),
        (date, "\u0662\u0660\u0662\u0664-10-04", None),
        (datetime, "2026-03-14T09:30:00Z", datetime(2026, 3, 14, 9, 30, tzinfo=UTC)),
        (datetime, "2026-03-14t09:30:00.5z", datetime(2026, 3, 14, 9, 30, 0, 500000, tzinfo=UTC)),
        (datetime, "2026-03-14T09:30:00", datetime(2026, 3, 14, 9, 30, tzinfo=UTC)),
        (datetime, "2026-03-14", None),
        (datetime, "2026-03-14 09:30:00Z", None),
        (datetime, "2026-03-14T09:30:00,5Z", None),
        (datetime, "2026-03-14T09:30:00Z\x00", None),
    ],
)
def test_dates_and_times_are_read_as_rfc_3339_writes_them_and_nothing_else(scalar, text, value):
    """The schema promises YYYY-MM-DD and RFC 3339 date-times; Python alone reads more (basic
    and week dates, a date for a date-time, trailing characters)."""
    parse = SCALARS[scalar].parse_value
    if value is None:
        with pytest.raises(GraphQLError):
            parse(text)
    else:
        assert parse(text) == value


def test_the_child_is_identified_by_a_oneof_input_beside_deprecated_nullable_arguments():
    data = _introspected()
    assert data["identity"]["isOneOf"] is True
    assert {f["name"]: f["type"]["kind"] for f in data["identity"]["inputFields"]} == {
        "nhsNumber": "SCALAR",
        "upn": "SCALAR",
        "demographics": "INPUT_OBJECT",
    }
    child = next(f for f in data["query"]["fields"] if f["name"] == "child")
    args = {a["name"]: a for a in child["args"]}
    assert args["identify"]["type"] == {"kind": "INPUT_OBJECT", "name": "ChildIdentity"}
    assert not args["identify"]["isDeprecated"]
    for old in ("nhsNumber", "upn", "demographics"):
        assert args[old]["isDeprecated"], old
        assert "identify" in args[old]["deprecationReason"]
        assert args[old]["type"]["kind"] != "NON_NULL", "a deprecated argument must be optional"


def test_every_enum_value_is_described():
    schema = build_schema()._schema
    undescribed = [
        f"{name}.{value}"
        for name, gql_type in schema.type_map.items()
        if isinstance(gql_type, GraphQLEnumType) and not name.startswith("__")
        for value, definition in gql_type.values.items()
        if not definition.description
    ]
    assert undescribed == []


def test_descriptions_name_only_fields_the_schema_has():
    schema = build_schema()._schema
    names: set[str] = set()
    described: list[tuple[str, str]] = []
    for type_name, gql_type in schema.type_map.items():
        if type_name.startswith("__") or type_name in specified_scalar_types:
            continue
        described.append((type_name, gql_type.description or ""))
        for field_name, field in getattr(gql_type, "fields", {}).items():
            names.add(field_name)
            names.update(getattr(field, "args", {}))
            described.append((f"{type_name}.{field_name}", field.description or ""))
        if isinstance(gql_type, GraphQLEnumType):
            described += [
                (f"{type_name}.{v}", d.description or "") for v, d in gql_type.values.items()
            ]
    unknown = [
        (where, ref)
        for where, text in described
        for ref in re.findall(r"`([A-Za-z.]+)`", text)
        if not set(ref.split(".")) <= names
    ]
    assert unknown == []


def _enum_values(name: str) -> set[str]:
    gql_type = build_schema()._schema.type_map[name]
    assert isinstance(gql_type, GraphQLEnumType)
    return set(gql_type.values)


def test_the_new_enums_hold_every_code_the_gateway_gives():
    assert _enum_values("WithholdingReason") == {r.value for r in WithholdingReason}
    assert _enum_values("DenialCode") == {d.value for d in DenialCode}
    # UNKNOWN: a code a newer gateway sharing the log recorded (resolvers.types._UNKNOWN_CODE).
    assert _enum_values("AuditPurpose") == {p.value for p in Purpose} | {
        AUDIT_REVIEW,
        OWNER_REVIEW,
        OPERATIONS,
        "UNKNOWN",
    }
    # SourceFailure: tests/test_errors.py, with the README's list of source codes.
    assert _enum_values("AuditOutcome") == {o.value for o in LookupOutcome} | {
        HIDDEN,
        "REFUSED",
        "ERROR",
        "AUDIT_TRAIL_VIEWED",
        ACCESS_HISTORY_VIEWED,
        USER_TRAIL_VIEWED,
        ALERTS_VIEWED,
        UNDELIVERED_VIEWED,
        PASSED_ON,
        "UNKNOWN",
    }
    assert _enum_values("NotificationReason") == {r.value for r in NotificationReason}


def test_each_deprecated_field_names_a_replacement_of_the_same_values():
    schema = build_schema()._schema
    replacements = {}
    for type_name, gql_type in schema.type_map.items():
        if isinstance(gql_type, GraphQLObjectType) and not type_name.startswith("__"):
            for field_name, field in gql_type.fields.items():
                if field.deprecation_reason:
                    replacement = field.deprecation_reason.split(":")[0].removeprefix("Use ")
                    assert replacement in gql_type.fields, (type_name, field_name)
                    replacements[f"{type_name}.{field_name}"] = replacement
    assert replacements == {
        "AuditEntry.purpose": "purposeCode",
        "AuditEntry.outcome": "outcomeCode",
        "ChildLookup.denial": "denialCode",
        "SourceReport.errorCode": "failureCode",
        "WithheldField.reason": "reasonCode",
    }


async def _errors(schema, query):
    result = await schema.execute(query)
    assert result.data is None
    return [error.message for error in result.errors or []]


@pytest.mark.anyio
async def test_each_limit_refuses_every_time_an_operation_is_sent():
    """Operations are parsed and validated once, then remembered: the second sending of a refused
    operation is refused alike, and a valid one is never mistaken for it."""
    schema = build_schema(explorable=False)
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }"
    tokens = "{ " + " ".join("__typename" for _ in range(MAX_TOKENS)) + " }"
    introspection = "{ __schema { types { name } } }"
    for query in (aliases, tokens, introspection):
        first = await _errors(schema, query)
        assert first
        assert await _errors(schema, query) == first
    assert (await schema.execute("{ __typename }")).data == {"__typename": "Query"}


@pytest.mark.anyio
async def test_a_schema_remembers_its_own_validation_not_another_schemas():
    introspection = "{ __schema { queryType { name } } }"
    assert await _errors(build_schema(explorable=False), introspection)
    explorable = await build_schema(explorable=True).execute(introspection)
    assert explorable.data == {"__schema": {"queryType": {"name": "Query"}}}
