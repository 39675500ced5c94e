// GraphQL Mesh Compose: the three agency REST backends (backend.mjs) as one supergraph for Hive
// Gateway. Each agency is a JSON Schema subgraph with one operation, GET /children/{nhsNumber},
// answering the agency's record (200) or NoRecord (404, a union member rather than an error, as
// our gateway's NO_RECORD is a source status rather than an error). `Query.child(nhsNumber)`
// (additionalTypeDefs here, its resolver in gateway.mjs) gives one entry point whose three agency
// fields are resolved in parallel, each from its own subgraph.
//
// Backend addresses are read from the environment when a request is made, not at composition:
// PEER_HEALTH_URL, PEER_EDUCATION_URL, PEER_SOCIAL_CARE_URL (e.g. http://127.0.0.1:8201).
//
//   npx mesh-compose -c mesh.config.mjs -o supergraph.graphql

import { defineConfig } from "@graphql-mesh/compose-cli";
import { loadJSONSchemaSubgraph } from "@omnigraph/json-schema";

const AGENCIES = [
  // [subgraph name, type prefix, field on Child, environment variable with the backend URL]
  ["health", "Health", "health", "PEER_HEALTH_URL"],
  ["education", "Education", "education", "PEER_EDUCATION_URL"],
  ["social_care", "SocialCare", "socialCare", "PEER_SOCIAL_CARE_URL"],
];

const string = { type: "string" };
const nullableString = { type: ["string", "null"] };

/** The connector record format (connectors/protocol.py ConnectorRecord), type names prefixed per
 * agency so the composed subgraphs share no type. */
function recordSchema(prefix) {
  const contact = {
    title: `${prefix}Contact`,
    type: "object",
    properties: { name: string, role: nullableString, phone: nullableString, email: nullableString },
  };
  return {
    title: `${prefix}Record`,
    type: "object",
    required: ["record_id"],
    properties: {
      record_id: string,
      identifiers: {
        title: `${prefix}Identifiers`,
        type: "object",
        properties: { nhs_number: nullableString, upn: nullableString, local_id: nullableString },
      },
      name: {
        title: `${prefix}PersonName`,
        type: "object",
        properties: { given: string, family: string, former_family: { type: "array", items: string } },
      },
      date_of_birth: nullableString,
      sex: nullableString,
      address: {
        title: `${prefix}Address`,
        type: "object",
        properties: { lines: { type: "array", items: string }, postcode: string },
      },
      school: {
        title: `${prefix}School`,
        type: "object",
        properties: { urn: string, name: string, phone: nullableString },
      },
      gp_practice: {
        title: `${prefix}GpPractice`,
        type: "object",
        properties: { ods_code: string, name: string, phone: nullableString },
      },
      carers: {
        type: "array",
        items: {
          title: `${prefix}Carer`,
          type: "object",
          properties: {
            name: string,
            relationship: string,
            parental_responsibility: { type: "boolean" },
            phone: nullableString,
          },
        },
      },
      involvements: {
        type: "array",
        items: {
          title: `${prefix}Involvement`,
          type: "object",
          properties: {
            service: nullableString,
            organisation: nullableString,
            practitioner: contact,
            lead: { type: "boolean" },
            since: nullableString,
            until: nullableString,
            sensitive: { type: "boolean" },
            broker: { ...contact, title: `${prefix}Broker` },
          },
        },
      },
      indicators: {
        title: `${prefix}Indicators`,
        type: "object",
        properties: {
          child_protection_plan: { type: "boolean" },
          looked_after: { type: "boolean" },
          child_in_need: { type: "boolean" },
          early_help: { type: "boolean" },
        },
      },
      flags: {
        title: `${prefix}Flags`,
        type: "object",
        properties: { restricted: { type: "boolean" }, shielded: { type: "boolean" } },
      },
      as_of: string,
    },
  };
}

function noRecordSchema(prefix) {
  return {
    title: `${prefix}NoRecord`,
    type: "object",
    properties: { status: string },
  };
}

export const composeConfig = defineConfig({
  subgraphs: AGENCIES.map(([name, prefix, , variable]) => ({
    sourceHandler: loadJSONSchemaSubgraph(name, {
      endpoint: `{env.${variable}}`,
      operations: [
        {
          type: "Query",
          field: `${prefix[0].toLowerCase()}${prefix.slice(1)}Child`,
          path: "/children/{args.nhsNumber}",
          method: "GET",
          argTypeMap: { nhsNumber: { type: "string" } },
          requiredArgs: ["nhsNumber"],
          responseByStatusCode: {
            200: { responseSchema: recordSchema(prefix) },
            404: { responseSchema: noRecordSchema(prefix) },
          },
        },
      ],
    }),
  })),
  additionalTypeDefs: /* GraphQL */ `
    """One lookup of one child across the three agencies, each asked in parallel."""
    type Child {
      nhsNumber: String!
      ${AGENCIES.map(
        ([name, prefix, field]) => `${field}: ${prefix[0].toLowerCase()}${prefix.slice(1)}Child_response
          @resolveTo(
            sourceName: "${name}"
            sourceTypeName: "Query"
            sourceFieldName: "${prefix[0].toLowerCase()}${prefix.slice(1)}Child"
            requiredSelectionSet: "{ nhsNumber }"
            sourceArgs: { nhsNumber: "{root.nhsNumber}" }
          )`,
      ).join("\n      ")}
    }
    extend type Query {
      child(nhsNumber: String!): Child!
    }
  `,
});
