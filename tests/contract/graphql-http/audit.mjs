// Runs every server audit of graphql-http (the GraphQL-over-HTTP reference implementation) against
// a gateway and prints the results as JSON: [{id, name, status, reason}], status "ok" or, when
// the audit failed, "error" (a MUST), "warn" (a SHOULD) or "notice" (a MAY).
//
//   node audit.mjs URL TOKEN
//
// Every request carries the bearer token, as a portal's would: the audits test the GraphQL-over-HTTP
// rules, not authentication.
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node audit.mjs URL TOKEN');
  process.exit(2);
}

function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetchWithToken })) {
  const result = await audit.fn();
  results.push({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.status === 'ok' ? null : result.reason,
  });
}
console.log(JSON.stringify(results, null, 2));
