// Hive Gateway configuration for the peer run: serve the composed supergraph (mesh.config.mjs) with
// `Query.child(nhsNumber)` resolved here; its three agency fields are @resolveTo'd to the agency
// subgraphs and so run in parallel. Nothing else is configured: no response cache, no auth, no
// rate limits - the peer is a bare federation gateway.

import { defineConfig } from "@graphql-hive/gateway";

export const gatewayConfig = defineConfig({
  additionalResolvers: {
    Query: {
      child: (_root, { nhsNumber }) => ({ nhsNumber }),
    },
  },
});
