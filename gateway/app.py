"""The gateway's HTTP surface: POST /graphql (authenticated), GraphiQL in dev (its files under
/graphiql), the practitioners' portal at /portal/ (gateway.portal_site), /healthz, /readyz,
/metrics (Prometheus, see gateway.metrics for who may read it), and /.well-known/jwks.json (the
key connectors check the gateway's signed requests against).

The parts are built in gateway.components; /graphql is the GraphQL view (resolvers.view) behind
the edge middleware (gateway.middleware) and either the trusted-documents registry, when
configured, or automatic persisted queries (resolvers.persisted_queries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from connectors import serving
from connectors.serving import NOT_SERVED
from connectors.trust import JWKS_PATH
from gateway import metrics, tracing
from gateway.components import Components, persisted_query_store, running
from gateway.config import Mode
from gateway.cors import Cors
from gateway.errors import HTTP_REFUSALS, ErrorCode, error_response
from gateway.middleware import Authentication, BodyLimit, NoStore
from gateway.policy import policy_ready
from gateway.portal_site import PATH as PORTAL_PATH
from gateway.portal_site import portal_app
from gateway.redis_limits import answers
from resolvers import graphiql as graphiql_ide
from resolvers import query as graphql_query
from resolvers.persisted_queries import AutomaticPersistedQueries
from resolvers.trusted_documents import TrustedDocuments
from resolvers.view import GraphQLView

_log = logging.getLogger("childlookup.gateway")


def begin_draining(app: Starlette) -> None:
    """Turn readiness false while the app still serves, so a load balancer stops sending new
    lookups before the instance stops (see `childlookup serve`, CHILDLOOKUP_SHUTDOWN_DRAIN_S)."""
    app.state.draining = True


def create_app(
    components: Components, *, drain_signal: int | None = None, settle_heap: bool = False
) -> Starlette:
    """The gateway ASGI app; the pipeline and what it runs on live for the app's lifespan. With
    `drain_signal`, that signal begins draining (a worker process's parent sends it). With
    `settle_heap` (a worker process, which uvicorn serves rather than connectors.serving.serve_all),
    the garbage collector is kept off what start-up built once the app has started."""
    settings = components.settings

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.draining = False
        loop = asyncio.get_running_loop()
        if drain_signal is not None:
            loop.add_signal_handler(drain_signal, begin_draining, app)
        tracing.configure(settings.tracing)
        _log_operations_allowed(components)
        async with running(components) as pipeline:
            app.state.pipeline = pipeline
            if settle_heap:
                serving.settle_heap()
            try:
                yield
            finally:
                app.state.draining = True
                if drain_signal is not None:
                    loop.remove_signal_handler(drain_signal)
        tracing.flush()
        metrics.process_stopped()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready: the policy is loaded (and its OPA server, when it has one, answers), a record
        can be committed to the audit log now, the limits' Redis (when configured) answers, and
        the instance is not shutting down. Sources are reported, not required
        (gateway.source_health says why)."""
        policy = request.app.state.pipeline.policy
        checks = {
            "policy": await policy_ready(policy),
            "audit": await asyncio.to_thread(components.audit.is_writable),
            "connectors": bool(components.sources),
        }
        if components.redis is not None:
            checks["limits"] = await answers(components.redis)
        draining = request.app.state.draining
        ready = all(checks.values()) and not draining
        status = "shutting down" if draining else "ready" if ready else "not ready"
        body = {
            "status": status,
            "checks": checks,
            "policy_revision": policy.revision,
            "sources": [s.name for s in components.sources],
            "source_status": components.source_health.report(),
            "trusted_documents": None
            if components.trusted_documents is None
            else {"operations": components.trusted_documents.operations},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def jwks(request: Request) -> Response:
        return JSONResponse(components.request_signer.jwks())

    async def metrics_page(request: Request) -> Response:
        access = metrics.scrape_access(
            request.headers.get("authorization"),
            request.client.host if request.client else None,
            tokens=components.metrics_tokens(),
            dev=settings.mode is Mode.DEV,
        )
        if access is metrics.Scrape.NOT_SERVED:  # as any path not served: nothing to find here
            return error_response(404, ErrorCode.PATH_NOT_FOUND, NOT_SERVED)
        if access is metrics.Scrape.UNAUTHENTICATED:
            return error_response(
                401, ErrorCode.UNAUTHENTICATED, "Metrics need the scraper's bearer token."
            )
        revision = metrics.PolicyRevision(lambda: request.app.state.pipeline.policy.revision)
        body, media_type = await asyncio.to_thread(metrics.exposition, [revision])
        return Response(body, media_type=media_type, headers={"cache-control": "no-store"})

    graphql_view = GraphQLView(
        audit_trail=components.audit_trail,
        access_history=components.access_history,
        explorable=settings.explorable,
        justification_max_chars=settings.justification_max_chars,
    )
    view: ASGIApp = graphql_view
    if components.trusted_documents is not None:
        view = TrustedDocuments(view, components.trusted_documents)
    else:
        view = AutomaticPersistedQueries(
            view, persisted_query_store(components), graphql_view.graphql_schema
        )
    graphql: ASGIApp = NoStore(
        BodyLimit(Authentication(view, components.verifier), settings.max_body_bytes)
    )
    # GET serves GraphiQL, and only where the schema may be explored: elsewhere /graphql serves
    # POST alone, and a GET is refused 405 naming what is served, as any other method is.
    methods = ["GET", "POST"] if settings.explorable else ["POST"]
    if settings.cors_origins:
        graphql = Cors(graphql, settings.cors_origins, max_age_s=settings.cors_max_age_s)
        methods.append("OPTIONS")
    graphql_route = Route("/graphql", graphql, methods=methods)
    # Starlette serves HEAD wherever GET is served; GraphQL is not (strawberry refuses it), so
    # HEAD is refused here, its 405 naming what is served as PUT's does.
    assert graphql_route.methods is not None
    graphql_route.methods.discard("HEAD")
    routes: list[BaseRoute] = [
        graphql_route,
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route(JWKS_PATH, jwks, methods=["GET"]),
        Route(PORTAL_PATH, _to_portal, methods=["GET"]),
        Mount(PORTAL_PATH, app=portal_app(settings, audit_read_at_most=graphql_query.MAX_READ)),
    ]
    if settings.explorable:
        routes.append(Mount(graphiql_ide.ASSETS_PATH, app=graphiql_ide.assets()))
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=HTTP_REFUSALS)
    # Starlette's redirect from a trailing slash is built from the request's Host header (and
    # repeats a POST there); the portal's own address is redirected to explicitly.
    app.router.redirect_slashes = False
    return app


async def _to_portal(request: Request) -> Response:
    """/portal to /portal/, by a path relative to this host, whatever Host the request named."""
    return RedirectResponse(PORTAL_PATH + "/")


def _log_operations_allowed(components: Components) -> None:
    """Say at start-up which operations will run: only a manifest's, or any (with or without
    automatic persisted queries, and where they are kept)."""
    registry = components.trusted_documents
    if registry is not None:
        _log.info(
            "trusted documents on: only the manifest's operations run",
            extra={
                "event": "trusted_documents",
                "context": {"file": str(registry.path), "operations": registry.operations},
            },
        )
        return
    settings = components.settings
    store = (
        "off"
        if not settings.persisted_queries
        else "memory"
        if components.redis is None
        else "redis"
    )
    _log.info(
        "trusted documents off: any operation runs",
        extra={"event": "trusted_documents_off", "context": {"persisted_queries": store}},
    )
