// GraphQL over HTTP to the gateway on this origin: POST only (nothing about a child in a URL),
// the operation texts exactly as registered in the portal's trusted-documents manifest.

import { requestSignal } from "./session.js";

let operations = null;

export async function loadOperations() {
  const response = await fetch("operations.json", { cache: "no-store" });
  const manifest = await response.json();
  operations = new Map(manifest.operations.map((op) => [op.name, op.body]));
}

// The answer as {status, data, errors}; a network failure is one error coded NETWORK. Null when
// the session that sent it has ended meanwhile: the caller shows nothing of it.
export async function graphql(token, operationName, variables) {
  const query = operations && operations.get(operationName);
  if (!query) throw new Error(`unknown operation ${operationName}`);
  const signal = requestSignal();
  let response;
  try {
    response = await fetch("/graphql", {
      signal,
      method: "POST",
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json",
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, operationName, variables }),
    });
  } catch {
    if (signal.aborted) return null;
    return { status: 0, data: null, errors: [{ extensions: { code: "NETWORK" } }] };
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { errors: [{ extensions: { code: "INTERNAL_ERROR" } }] };
  }
  if (signal.aborted) return null;
  return { status: response.status, data: body.data ?? null, errors: body.errors ?? [] };
}

// The variables naming the child a form holds: a UPN begins with its check letter, an NHS
// number is digits (spaced or not). The gateway checks either and says what is wrong.
export function namedChild(child) {
  return /^[A-Za-z]/.test(child) ? { upn: child } : { nhsNumber: child };
}
