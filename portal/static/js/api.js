// GraphQL over HTTP to the gateway on this origin: POST only (nothing about a child in a URL),
// the operation texts exactly as registered in the portal's trusted-documents manifest.

let operations = null;

export async function loadOperations() {
  const response = await fetch("operations.json", { cache: "no-store" });
  const manifest = await response.json();
  operations = new Map(manifest.operations.map((op) => [op.name, op.body]));
}

// The answer as {status, data, errors}; a network failure is one error coded NETWORK.
export async function graphql(token, operationName, variables) {
  const query = operations && operations.get(operationName);
  if (!query) throw new Error(`unknown operation ${operationName}`);
  let response;
  try {
    response = await fetch("/graphql", {
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
    return { status: 0, data: null, errors: [{ extensions: { code: "NETWORK" } }] };
  }
  let body;
  try {
    body = await response.json();
  } catch {
    body = { errors: [{ extensions: { code: "INTERNAL_ERROR" } }] };
  }
  return { status: response.status, data: body.data ?? null, errors: body.errors ?? [] };
}

// The variables naming the child a form holds: a UPN begins with its check letter, an NHS
// number is digits (spaced or not). The gateway checks either and says what is wrong.
export function namedChild(child) {
  return /^[A-Za-z]/.test(child) ? { upn: child } : { nhsNumber: child };
}
