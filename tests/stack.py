"""Real servers on loopback for end-to-end tests: reference connectors serving JSON Lines files, the
gateway built exactly as `childlookup serve` builds it, agencies receiving owner notifications,
and OPA serving the policy bundle. Connector trust (signed requests, signed answers) is off unless
a test asks for it, as the demo turns it on."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from connectors.app import create_connector_app
from connectors.protocol import ConnectorRecord, LookupRequest
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer
from connectors.trust import (
    AnswerSigner,
    PublishedKeys,
    RequestVerifier,
    StaticKey,
    ensure_key_pair,
)
from gateway.app import create_app
from gateway.components import build_components
from gateway.config import Settings, SourceConfig
from gateway.demo import reference_source
from gateway.policy import load_bundle
from gateway.signing import RequestSigner
from gateway.tls import server_context
from gateway.tokens import PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token
from gateway.workbench import write_bundle_archive

T = TypeVar("T")

GATEWAY_ISSUER = "childlookup-gateway"
"""Who signs the gateway's requests to connectors (its default `gateway_id`)."""

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

    def signed_token(self, **claims: Any) -> str:
        """A token signed with the gateway's dev key holding `claims` over a valid social
        worker's: for tests of what the edge makes of odd claims."""
        now = int(time.time())
        body = {
            "iss": self.components.settings.issuer,
            "aud": self.components.settings.audience,
            "sub": "idp-user-1",
            "name": "Pat Practitioner",
            "role": "social_worker",
            "org": "ORG1",
            "iat": now,
            "exp": now + 600,
        } | claims
        private = (self.state_dir / PRIVATE_KEY_FILE).read_bytes()
        return jwt.encode(body, private, algorithm="ES256")

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
        # 429: a usage limit refused the lookup (resolvers.view); the body has the same shape.
        assert response.status_code in (200, 429), response.text
        return response.json()  # type: ignore[no-any-return]

    def lookup_by_upn(self, role: str, upn: str, purpose: str = "DIRECT_CARE") -> dict[str, Any]:
        """A lookup by UPN alone (`identify`), answering its outcome and audit id."""
        query = (
            "query($upn: String!, $purpose: Purpose!) {"
            " child(identify: {upn: $upn}, purpose: $purpose) { outcome auditId } }"
        )
        variables = {"upn": upn, "purpose": purpose}
        response = self.post({"query": query, "variables": variables}, self.token(role))
        assert response.status_code in (200, 429), response.text
        return response.json()  # type: ignore[no-any-return]

    def audited(self, audit_id: str) -> dict[str, Any]:
        """The audit record the gateway wrote under `audit_id`."""
        return next(r for r in self.components.audit.records() if r["audit_id"] == audit_id)


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
    its JWKS URL before it started). `postcode_districts` and `witnesses` among `settings` are the
    sources file's (gateway.config.SourcesFile)."""
    ensure_dev_keys(tmp)
    # Tests make many lookups as one user in seconds; limits are raised unless a test sets them.
    limits = {
        "lookups_per_user_per_minute": 100_000,
        "lookups_per_organisation_per_minute": 100_000,
        "distinct_children_per_user_per_day": 100_000,
    }
    districts = settings.pop("postcode_districts", None)
    witnesses = settings.pop("witnesses", ())
    # The answer cache is off unless a test turns it on (`cache_ttl_s`): lookups see the
    # connectors' records as the test has just written them.
    config = Settings(state_dir=tmp, **({"cache_ttl_s": 0} | limits | settings))
    components = build_components(
        config, list(sources), postcode_districts=districts, witnesses=witnesses
    )
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
                RequestVerifier(PublishedKeys(gateway_jwks), issuer=GATEWAY_ISSUER)
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


@contextlib.contextmanager
def reference_connectors(
    tmp: Path,
    records: dict[str, Sequence[ConnectorRecord]],
    latency_ms: dict[str, float] | None = None,
    organisations: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[list[SourceConfig]]:
    """Reference connectors serving `records` (agency -> its records); yields the gateway's source
    entry for each, acted for by `organisations` (agency -> organisation codes), for tests that
    start several gateways over the same agencies."""
    acting = organisations or {}
    with serving(reference_apps(tmp, records, latency_ms)) as urls:
        yield [
            reference_source(name, url, organisations=acting.get(name, ()))
            for name, url in urls.items()
        ]


@contextlib.contextmanager
def reference_stack(
    tmp: Path,
    records: dict[str, Sequence[ConnectorRecord]],
    *,
    latency_ms: dict[str, float] | None = None,
    organisations: Mapping[str, Sequence[str]] | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """Reference connectors serving `records` (agency -> its records), acted for by
    `organisations`, and a gateway, set up with `settings`, asking each of them."""
    with (
        reference_connectors(tmp, records, latency_ms, organisations) as sources,
        running_gateway(tmp, sources, **settings) as gateway,
    ):
        yield gateway


FAST_NOTIFICATIONS: dict[str, Any] = {
    "notification_retry_base_s": 0.05,
    "notification_retry_max_s": 0.2,
    "notification_poll_s": 0.05,
    "notification_timeout_ms": 1_000,
}
"""Owner notifications' retry timings short enough for a test to watch several attempts."""


def eventually(check: Callable[[], T], timeout_s: float = 15.0) -> T:
    """Poll until `check` returns something truthy, and return it; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
    return value


# --- agencies receiving owner notifications ------------------------------------------------------

GATEWAY_KEY = ec.generate_private_key(ec.SECP256R1())
"""A gateway request-signing key for tests that sign notifications themselves."""
GATEWAY_SIGNER = RequestSigner(GATEWAY_KEY, issuer=GATEWAY_ISSUER)


class NoRecords:
    """A connector's record store holding no one: for connectors that only receive."""

    async def lookup(self, request: LookupRequest) -> list[Any]:
        return []


def gateway_verifier(key: ec.EllipticCurvePublicKey) -> RequestVerifier:
    """What an agency checks the gateway's signed requests with, given the gateway's public key."""
    return RequestVerifier(StaticKey(key), issuer=GATEWAY_ISSUER)


@contextlib.contextmanager
def notification_receiver(sink: Any, signer: AnswerSigner | None = None) -> Iterator[httpx.Client]:
    """The social care connector keeping notifications signed by GATEWAY_KEY in `sink`, signing
    its receipts with `signer` when given; yields a client for it."""
    app = create_connector_app(
        NoRecords(),
        source="social_care",
        verifier=gateway_verifier(GATEWAY_KEY.public_key()),
        signer=signer,
        notifications=sink,
    )
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


# --- a policy server -----------------------------------------------------------------------------


class RealOpa:
    """A policy bundle tarball loaded into an embedded OPA (opa-golib-python-bindings, installed by
    `./dev test`) the way `opa run -b` would load it."""

    def __init__(self, archive: Path) -> None:
        from opa_bindings import OpaEngine

        self.engine = OpaEngine()
        with tarfile.open(archive) as tar:
            files = {
                member.name.lstrip("/"): tar.extractfile(member).read().decode()
                for member in tar.getmembers()
            }
        self.manifest = json.loads(files.pop(".manifest"))
        self.engine.add_data(json.loads(files.pop("data.json")))
        for path, source in files.items():
            self.engine.add_policy(path, source)
        self.modules = files

    @property
    def revision(self) -> str:
        return str(self.manifest["revision"])

    def document(self, path: str, input_document: Any = None) -> Any:
        """`data.<path>` (slashes or dots); raises opa_bindings.OpaUndefinedError if undefined."""
        return self.engine.eval_document(path.replace("/", "."), input_document)


def build_archive(directory: Path, out: Path) -> Path:
    """The bundle tarball `childlookup policy bundle` writes for the policy in `directory`."""
    write_bundle_archive(load_bundle(directory), out)
    return out


@dataclass
class Behaviour:
    """How the test server misbehaves; the default is a healthy OPA."""

    delay_s: float = 0.0
    status: int = 200
    undefined: bool = False
    provenance: bool = True
    result: Any = None
    """An answer to give instead of OPA's."""
    redirect_to: str | None = None
    """A server to send every request on to (307), instead of answering."""
    revision: str | None = None
    """A bundle revision to give instead of the bundle's."""
    bundles: dict[str, Any] | None = None
    """Provenance's bundles to give instead of the one bundle and its revision."""
    padding: int = 0
    """Bytes of whitespace to add to each answer."""
    gzip: bool = False
    """Answer gzip-encoded, whatever was asked for."""


def opa_rest_app(opa: RealOpa, behaviour: Behaviour) -> Starlette:
    """OPA's Data API over `opa`: POST (with input) and GET (without) of /v1/data/<path>."""
    from opa_bindings import OpaUndefinedError

    async def data(request: Request) -> Response:
        body = await request.json() if request.method == "POST" else {}
        await asyncio.sleep(behaviour.delay_s)
        if behaviour.redirect_to is not None:
            target = f"{behaviour.redirect_to}{request.url.path}?{request.url.query}"
            return Response(status_code=307, headers={"location": target})
        if behaviour.status != 200:
            return PlainTextResponse("internal error", status_code=behaviour.status)
        answer: dict[str, Any] = {}
        if behaviour.result is not None:
            answer["result"] = behaviour.result
        elif not behaviour.undefined:
            with contextlib.suppress(OpaUndefinedError):
                answer["result"] = opa.document(request.path_params["path"], body.get("input"))
        if behaviour.provenance and request.query_params.get("provenance") == "true":
            answer["provenance"] = {
                "version": "1.20.2",
                "bundles": behaviour.bundles
                or {"childlookup": {"revision": behaviour.revision or opa.revision}},
            }
        content = json.dumps(answer).encode() + b" " * behaviour.padding
        headers = {"content-type": "application/json"}
        if behaviour.gzip:
            content, headers["content-encoding"] = gzip.compress(content), "gzip"
        return Response(content, headers=headers)

    return Starlette(routes=[Route("/v1/data/{path:path}", data, methods=["GET", "POST"])])
