"""The gateway's HTTP surface: POST /graphql (authenticated), GraphiQL in dev, /healthz, /readyz,
and /.well-known/jwks.json (the key connectors check the gateway's signed requests against).

Authentication runs here, at the edge, before GraphQL sees the request: a request without a verified
token gets 401 and never reaches a resolver. Oversized bodies are refused before they are parsed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from connectors.trust import JWKS_PATH
from gateway.audit import AuditStore, Pseudonymiser, audit_key, derive_key
from gateway.audit_trail import AuditTrail
from gateway.auth import ClaimNames, JwksKeys, StaticKey, TokenVerifier
from gateway.cache import AnswerCache
from gateway.config import Mode, Settings, SourceConfig
from gateway.decision_log import DecisionLog
from gateway.errors import ErrorCode, GatewayError
from gateway.fanout import FanOut
from gateway.limits import AccessLimits, LimitSettings
from gateway.linkage import LinkageModel
from gateway.notify import NotificationDispatcher, RetryPolicy
from gateway.outbox import Outbox
from gateway.pipeline import LookupPipeline
from gateway.policy import PolicyEngine, RemotePolicyEngine
from gateway.policy.loading import policy_engine_from_settings
from gateway.reload import PolicyReloader
from gateway.signing import AnswerVerifier, RequestSigner, answer_verifiers
from gateway.tls import connector_client_context
from gateway.trusted_documents import TrustedDocuments, load_registry
from resolvers.query import RequestContext
from resolvers.schema import build_schema, format_error

_log = logging.getLogger("childlookup.gateway")


@dataclass(frozen=True)
class Components:
    """The long-lived parts of a gateway, built once from settings."""

    settings: Settings
    sources: tuple[SourceConfig, ...]
    policy: PolicyEngine
    audit: AuditStore
    verifier: TokenVerifier
    pseudonymiser: Pseudonymiser
    decision_log: DecisionLog
    request_signer: RequestSigner
    answer_verifiers: Mapping[str, AnswerVerifier]
    linkage: LinkageModel
    connector_tls: ssl.SSLContext


def build_components(settings: Settings, sources: list[SourceConfig]) -> Components:
    """Load policy, open the audit store and key material; raise if any of them is unusable."""
    key = audit_key(settings)
    return Components(
        settings=settings,
        sources=tuple(sources),
        policy=policy_engine_from_settings(settings),
        audit=AuditStore(
            settings.resolved_audit_db(),
            checkpoint_key=derive_key(key, "audit-checkpoint"),
            synchronous=settings.audit_synchronous,
        ),
        verifier=TokenVerifier(
            JwksKeys(settings.jwks_url)
            if settings.jwks_url
            else StaticKey.from_pem_file(settings.resolved_public_key_file()),
            issuer=settings.issuer,
            audience=settings.audience,
            leeway_s=settings.token_leeway_s,
            algorithms=settings.token_algorithms,
            claims=ClaimNames(
                settings.role_claim, settings.organisation_claim, settings.assurance_claim
            ),
        ),
        pseudonymiser=Pseudonymiser(key),
        decision_log=DecisionLog.open(settings.resolved_decision_log(), instance=uuid.uuid4().hex),
        request_signer=RequestSigner.from_settings(settings),
        answer_verifiers=answer_verifiers(sources),
        linkage=linkage_model(settings),
        connector_tls=connector_client_context(settings.connector_tls, sources),
    )


def linkage_model(settings: Settings) -> LinkageModel:
    """The configured model file (or the packaged default) with any threshold overrides."""
    model = LinkageModel.load(settings.linkage_model_file)
    if settings.link_threshold is None and settings.possible_threshold is None:
        return model
    return model.with_thresholds(
        link=model.link_threshold if settings.link_threshold is None else settings.link_threshold,
        possible=model.possible_threshold
        if settings.possible_threshold is None
        else settings.possible_threshold,
    )


class _GraphQLView(GraphQL[RequestContext, None]):
    def __init__(self, components: Components) -> None:
        super().__init__(
            build_schema(explorable=components.settings.mode is Mode.DEV),
            graphql_ide="graphiql" if components.settings.graphiql else None,
            allow_queries_via_get=False,
        )
        self._max_justification = components.settings.justification_max_chars
        self._audit_trail = AuditTrail(
            components.audit, components.pseudonymiser, components.settings.auditor_roles
        )

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        return RequestContext(
            caller=request.scope.get("state", {}).get("caller"),
            pipeline=request.app.state.pipeline,
            audit_trail=self._audit_trail,
            justification_max_chars=self._max_justification,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry refuses a malformed request (unsupported content type, broken JSON, unknown
        operation name) in plain text; here the refusal has the usual error shape and a stable
        code, so a portal handles every refusal the same way."""
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as exc:
            response = _error_response(exc.status_code, ErrorCode.BAD_REQUEST, exc.reason)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Only a JSON object is a GraphQL request. Strawberry catches only JSONDecodeError, then
        calls `.get` on whatever was decoded: bytes that are not UTF-8, or a body of `null`, `5`
        or `"x"`, would otherwise crash it into a 500."""
        try:
            decoded = super().decode_json(data)
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "Unable to parse request body as JSON") from exc
        if not isinstance(decoded, dict):
            raise HTTPException(400, "The request body must be a JSON object.")
        return decoded

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [format_error(e) for e in result.errors]
        return response


def _error_response(status: int, code: ErrorCode, message: str) -> JSONResponse:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code.value}}]}
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


class _AuthenticatedGraphQL:
    """Verifies the bearer token of every POST before GraphQL runs; a bare GET only serves
    GraphiQL (in dev mode), and a GET carrying an operation is refused rather than executed."""

    def __init__(self, view: ASGIApp, verifier: TokenVerifier) -> None:
        self._view = view
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and scope.get("query_string"):
            message = "Send GraphQL operations with POST."
            await _error_response(405, ErrorCode.BAD_REQUEST, message)(scope, receive, send)
            return
        if scope["method"] != "GET":
            request = Request(scope, receive)
            try:
                caller = await self._verifier.authenticate(request.headers.get("authorization"))
            except GatewayError as exc:
                await _error_response(401, exc.code, exc.message)(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        await self._view(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over a limit with 413, before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await self._too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self._max:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request is larger than {self._max} bytes."
        await _error_response(413, ErrorCode.REQUEST_TOO_LARGE, message)(scope, receive, send)


def create_app(components: Components) -> Starlette:
    """The gateway ASGI app; the HTTP client and pipeline live for the app's lifespan."""
    settings = components.settings

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            limits=limits, timeout=10.0, verify=components.connector_tls
        ) as client:
            fanout = FanOut(
                components.sources,
                client,
                AnswerCache(settings.cache_ttl_s),
                signer=components.request_signer,
                answer_verifiers=components.answer_verifiers,
            )
            outbox = Outbox(components.audit.path)
            notifier = NotificationDispatcher(
                outbox,
                client,
                components.request_signer,
                components.sources,
                RetryPolicy.from_settings(settings),
                components.answer_verifiers,
            )
            app.state.pipeline = LookupPipeline(
                sources=components.sources,
                policy=components.policy,
                fanout=fanout,
                audit=components.audit,
                pseudonymiser=components.pseudonymiser,
                decision_log=components.decision_log,
                linkage=components.linkage,
                authority=settings.field_authority,
                limits=AccessLimits(
                    LimitSettings(
                        per_user_per_minute=settings.lookups_per_user_per_minute,
                        per_organisation_per_minute=settings.lookups_per_organisation_per_minute,
                        distinct_children_per_day=settings.distinct_children_per_user_per_day,
                    ),
                    components.audit,
                ),
                deadline_ms=settings.lookup_deadline_ms,
                notifier=notifier,
            )
            pipeline = app.state.pipeline
            remote = (
                components.policy if isinstance(components.policy, RemotePolicyEngine) else None
            )
            if remote is not None:
                await remote.connect()
            watcher = None
            if remote is None and settings.policy_reload_s > 0:

                def install(engine: PolicyEngine) -> None:
                    pipeline.policy = engine

                reloader = PolicyReloader(
                    settings.policy_dir, install, interval_s=settings.policy_reload_s
                )
                watcher = asyncio.create_task(reloader.watch())
            # Started with the gateway, it also delivers what an earlier run left in the outbox.
            notifier.start()
            try:
                yield
            finally:
                if watcher is not None:
                    watcher.cancel()
                if remote is not None:
                    await remote.aclose()
                await notifier.aclose()
                outbox.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        policy = request.app.state.pipeline.policy
        checks = {
            "policy": bool(policy.revision),
            "audit": components.audit.is_writable(),
            "connectors": bool(components.sources),
        }
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "policy_revision": policy.revision,
            "sources": [s.name for s in components.sources],
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def jwks(request: Request) -> Response:
        return JSONResponse(components.request_signer.jwks())

    view: ASGIApp = _GraphQLView(components)
    if settings.trusted_documents is not None:
        view = TrustedDocuments(view, load_registry(settings.trusted_documents))
    graphql = BodyLimit(_AuthenticatedGraphQL(view, components.verifier), settings.max_body_bytes)
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(JWKS_PATH, jwks, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
