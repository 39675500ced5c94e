"""A real gateway stack on loopback for end-to-end tests: reference connectors serving JSON Lines
files, and the gateway built exactly as `childlookup serve` builds it. Connector trust (signed
requests, signed answers) is off unless a test asks for it, as the demo turns it on."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp

from connectors.protocol import ConnectorRecord
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer
from connectors.trust import AnswerSigner, PublishedKeys, RequestVerifier, ensure_key_pair
from gateway.app import create_app
from gateway.components import build_components
from gateway.config import Settings, SourceConfig
from gateway.tls import server_context
from gateway.tokens import PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token

LOOKUP = """
query Lookup($nhs: String!, $purpose: Purpose!, $justification: String) {
  child(nhsNumber: $nhs, purpose: $purpose, justification: $justification) {
    outcome complete denial auditId requestId policyRevision
    child {
      nhsNumber { value provenance { source asOf } }
      name { given family provenance { source } }
      dateOfBirth { value } sex { value }
      address { lines postcode provenance { source } }
      school { urn name }
      gpPractice { odsCode name }
      carers { name relationship parentalResponsibility }
      involvements {
        service organisation practitioner { name role phone } lead sensitive
        broker { name phone } provenance { source }
      }
      indicators {
        childProtectionPlan { value provenance { source } }
        lookedAfter { value } childInNeed { value } earlyHelp { value }
      }
    }
    records { source method score }
    sources { source status latencyMs errorCode recordsMatched recordsUnmatched cached }
    withheld { field source reason }
  }
}
"""


def write_records(path: Path, records: Sequence[ConnectorRecord]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records))
    return path


@dataclass
class Stack:
    url: str
    state_dir: Path
    components: Any

    def token(self, role: str, org: str = "ORG1", name: str = "Test User") -> str:
        private = (self.state_dir / PRIVATE_KEY_FILE).read_bytes()
        return issue_dev_token(
            private,
            role=role,
            organisation=org,
            name=name,
            issuer=self.components.settings.issuer,
            audience=self.components.settings.audience,
        )

    def post(self, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.url}/graphql", json=body, headers=headers, timeout=10, **kwargs)

    def lookup(
        self,
        role: str,
        nhs: str,
        purpose: str = "SAFEGUARDING_ENQUIRY",
        justification: str | None = None,
    ) -> dict[str, Any]:
        variables = {"nhs": nhs, "purpose": purpose, "justification": justification}
        response = self.post({"query": LOOKUP, "variables": variables}, self.token(role))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def connector_key(tmp: Path, name: str) -> tuple[Path, Path]:
    """A connector's answer-signing key pair (private, public), created once under `tmp`."""
    private, public = tmp / f"connector-{name}-key.pem", tmp / f"connector-{name}-key.pub.pem"
    ensure_key_pair(private, public)
    return private, public


@contextlib.contextmanager
def running_gateway(
    tmp: Path,
    sources: Sequence[SourceConfig],
    sock: socket.socket | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """The gateway on loopback; on `sock` when given (bound earlier so connectors could be told
    its JWKS URL before it started)."""
    ensure_dev_keys(tmp)
    # Tests make many lookups as one user in seconds; limits are raised unless a test sets them.
    limits = {
        "lookups_per_user_per_minute": 100_000,
        "lookups_per_organisation_per_minute": 100_000,
        "distinct_children_per_user_per_day": 100_000,
    }
    config = Settings(state_dir=tmp, cache_ttl_s=0, **(limits | settings))
    components = build_components(config, list(sources))
    tls = None if config.server_tls is None else server_context(config.server_tls)
    with BackgroundServer(create_app(components), sock=sock, tls=tls) as gateway:
        yield Stack(gateway.url, tmp, components)
    components.audit.close()
    components.decision_log.close()


@contextlib.contextmanager
def serving(apps: dict[str, ASGIApp]) -> Iterator[dict[str, str]]:
    """Serve each app on its own loopback port; yields name -> base URL."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(BackgroundServer(app)).url for name, app in apps.items()}


def reference_apps(
    tmp: Path,
    records: dict[str, Sequence[ConnectorRecord]],
    latency_ms: dict[str, float] | None = None,
    *,
    gateway_jwks: str | None = None,
    signing_keys: dict[str, Path] | None = None,
) -> dict[str, ASGIApp]:
    """Reference connector apps over JSON Lines files written from `records`; with `gateway_jwks`
    they require requests signed by that gateway, and each one named in `signing_keys` signs its
    answers with that private key."""
    return {
        name: create_reference_app(
            name,
            write_records(tmp / f"{name}.jsonl", recs),
            (latency_ms or {}).get(name, 0.0),
            verifier=(
                RequestVerifier(PublishedKeys(gateway_jwks), issuer="childlookup-gateway")
                if gateway_jwks
                else None
            ),
            signer=(
                AnswerSigner.from_pem_file(signing_keys[name])
                if name in (signing_keys or {})
                else None
            ),
        )
        for name, recs in records.items()
    }
