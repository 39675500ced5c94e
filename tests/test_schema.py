from graphql import GraphQLEnumType, GraphQLObjectType

from resolvers.schema import SCHEMA_FILE, build_schema, export_sdl


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
    assert set(query.fields) == {"child", "auditTrail"}
    assert "List" not in str(query.fields["child"].type)
    # Every root field is about one named child: the audit trail by NHS number, a lookup by exactly
    # one of NHS number, UPN or demographics (checked at run time, see IDENTIFY_ONE_WAY), and
    # demographics that could link one child if all agreed (checked at run time, see
    # INSUFFICIENT_DETAILS) - details of the child, never a wildcard, range or list to search by.
    assert str(query.fields["auditTrail"].args["nhsNumber"].type) == "String!"
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
