// One agency's REST backend for the peer run of bench/compare.py: the records of one reference
// connector's JSON Lines file (connectors/records.py format), served as
//
//   GET /children/{nhsNumber}  -> 200 the agency's record about that child, or 404 {"status": "NO_RECORD"}
//   GET /healthz               -> 200 {"status": "ok"}
//
// with the same added latency per lookup as `childlookup connector serve --latency-ms` (a timer
// before answering, found or not) and the same minimisation as the reference connector answering
// our gateway: only the fields in --fields, a sensitive involvement without its provider unless
// sensitive_service_details is among them, every other key present as null. No auth, no signing,
// no logging per request: the peer is a plain backend on purpose.
//
//   node backend.mjs --agency health --records health.jsonl --port 8201 [--latency-ms 20]
//                    [--fields name,date_of_birth,...] [--host 127.0.0.1]

import { createReadStream } from "node:fs";
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const PLAIN_FIELDS = ["name", "date_of_birth", "sex", "address", "school", "gp_practice", "carers"];
const INDICATOR_FIELDS = ["child_protection_plan", "looked_after", "child_in_need", "early_help"];
const RECORD_KEYS = [
  "record_id", "identifiers", "name", "date_of_birth", "sex", "address", "school", "gp_practice",
  "carers", "involvements", "indicators", "flags", "as_of",
];

const { values: options } = parseArgs({
  options: {
    agency: { type: "string" },
    records: { type: "string" },
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    "latency-ms": { type: "string", default: "0" },
    fields: { type: "string", default: [...PLAIN_FIELDS, "involvements", ...INDICATOR_FIELDS].join(",") },
  },
});
for (const required of ["agency", "records", "port"]) {
  if (!options[required]) {
    console.error(`backend.mjs: --${required} is required`);
    process.exit(2);
  }
}
const latencyMs = Number(options["latency-ms"]);
if (!(latencyMs >= 0)) {
  console.error(`backend.mjs: --latency-ms must be a number >= 0, got ${options["latency-ms"]}`);
  process.exit(2);
}
const fields = new Set(options.fields.split(",").map((f) => f.trim()).filter(Boolean));

/** The record as our connector would answer it for `fields` (connectors/minimisation.py). */
function minimise(record) {
  const kept = Object.fromEntries(RECORD_KEYS.map((key) => [key, null]));
  for (const key of ["record_id", "identifiers", "flags", "as_of"]) kept[key] = record[key];
  for (const key of PLAIN_FIELDS) if (fields.has(key)) kept[key] = record[key] ?? null;
  if (fields.has("involvements") && record.involvements != null) {
    const showProvider = fields.has("sensitive_service_details");
    kept.involvements = record.involvements.map((inv) =>
      showProvider || !inv.sensitive
        ? inv
        : {
            service: null, organisation: null, practitioner: null, lead: inv.lead,
            since: inv.since, until: inv.until, sensitive: true, broker: inv.broker,
          },
    );
  }
  if (record.indicators != null) {
    const requested = INDICATOR_FIELDS.filter((f) => fields.has(f));
    kept.indicators = requested.length
      ? Object.fromEntries(INDICATOR_FIELDS.map((f) => [f, requested.includes(f) ? record.indicators[f] : null]))
      : null;
  }
  return kept;
}

async function load(path) {
  const byNhs = new Map();
  let count = 0;
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    const record = JSON.parse(line);
    count += 1;
    const nhs = record.identifiers?.nhs_number;
    if (nhs && !byNhs.has(nhs)) byNhs.set(nhs, minimise(record));
  }
  return { byNhs, count };
}

const { byNhs, count } = await load(options.records);
const PREFIX = "/children/";
const NO_RECORD = JSON.stringify({ status: "NO_RECORD" });

function send(response, status, body) {
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  response.end(body);
}

const server = createServer((request, response) => {
  const url = request.url ?? "";
  if (request.method === "GET" && url.startsWith(PREFIX)) {
    const nhs = decodeURIComponent(url.slice(PREFIX.length).split("?")[0]);
    const answer = () => {
      const record = byNhs.get(nhs);
      if (record === undefined) send(response, 404, NO_RECORD);
      else send(response, 200, JSON.stringify(record));
    };
    if (latencyMs > 0) setTimeout(answer, latencyMs);
    else answer();
    return;
  }
  if (request.method === "GET" && url === "/healthz") {
    send(response, 200, JSON.stringify({ status: "ok", source: options.agency, records: count }));
    return;
  }
  send(response, 404, JSON.stringify({ status: "NOT_A_ROUTE" }));
});
server.keepAliveTimeout = 60_000;
server.listen(Number(options.port), options.host, () => {
  console.error(
    `peer backend ${options.agency}: ${count} records (${byNhs.size} by NHS number) on ` +
      `http://${options.host}:${options.port}, latency ${latencyMs} ms`,
  );
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
