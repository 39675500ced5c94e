// Apollo Client's automatic persisted-query link against a real gateway, run by
// tests/test_persisted_queries_apollo.py: node round-trip.mjs URL TOKEN NHS
//
// Two page loads, each a new client: the first sends the hash alone, is told
// PERSISTED_QUERY_NOT_FOUND and sends the text with it; the second sends the hash alone and is
// answered. Then two refusals read as a portal reads them, from Apollo's own error object: a
// token the gateway does not accept (401) and a query the schema refuses (400).
// Prints {"runs": [{"outcome", "requests": [{"query", "hash", "status"}]}],
//         "refusals": {"unauthenticated": {"kind", "code"}, "invalid": {"kind", "code"}}} as JSON.
import { createHash } from "node:crypto";

import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, token, nhs] = process.argv.slice(2);

const LOOKUP = gql`
  query Lookup($nhs: String!, $purpose: Purpose!) {
    child(nhsNumber: $nhs, purpose: $purpose) {
      outcome
    }
  }
`;

async function pageLoad() {
  const requests = [];
  async function recordingFetch(input, init) {
    const body = JSON.parse(init.body);
    const response = await fetch(input, init);
    requests.push({
      query: typeof body.query === "string",
      hash: body.extensions?.persistedQuery?.sha256Hash ?? null,
      status: response.status,
    });
    return response;
  }
  const link = createPersistedQueryLink({
    sha256: (text) => createHash("sha256").update(text).digest("hex"),
  }).concat(
    new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch }),
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  const { data, error } = await client.query({
    query: LOOKUP,
    variables: { nhs, purpose: "DIRECT_CARE" },
    fetchPolicy: "network-only",
  });
  return { outcome: data?.child?.outcome ?? null, error: error?.message ?? null, requests };
}

const INVALID = gql`
  query Invalid($nhs: String!) {
    child(nhsNumber: $nhs, purpose: DIRECT_CARE) {
      noSuchField
    }
  }
`;

async function refusal(bearer, query) {
  const client = new ApolloClient({
    link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${bearer}` } }),
    cache: new InMemoryCache(),
  });
  let error;
  try {
    ({ error } = await client.query({ query, variables: { nhs, purpose: "DIRECT_CARE" } }));
  } catch (thrown) {
    error = thrown;
  }
  if (!CombinedGraphQLErrors.is(error)) {
    return { kind: error?.constructor?.name ?? null, code: null };
  }
  return { kind: "CombinedGraphQLErrors", code: error.errors[0]?.extensions?.code ?? null };
}

const runs = [await pageLoad(), await pageLoad()];
const refusals = {
  unauthenticated: await refusal("not-a-token", LOOKUP),
  invalid: await refusal(token, INVALID),
};
console.log(JSON.stringify({ runs, refusals }));
