"""The reference portal served by the gateway at /portal/, same origin as /graphql, no CDN.

- `GET /portal/` the page; its style sheet and scripts beside it (the `portal` package's files).
- `GET /portal/config.json` what the page needs to know before sign-in: how practitioners sign in
  (the demo users in dev mode; or, with `CHILDLOOKUP_PORTAL_CLIENT_ID` or in production, OpenID
  Connect: the issuer, client id, scopes, the claims naming role and organisation, and the
  authorization and token endpoints from the identity provider's discovery document, and its
  `end_session_endpoint` as `endSessionEndpoint` when it names one), the
  inactivity timeout, the auditor roles, and each purpose's justification rule from the policy
  data.
- `GET /portal/operations.json` the trusted-documents manifest the page takes its operations from.
- `POST /portal/dev-session` `{"user": <index>}`: a dev token for one demo user. Only where the
  gateway verifies dev tokens (dev mode, no identity provider configured); 404 otherwise.

Every answer carries a Content-Security-Policy allowing nothing inline and nothing from another
origin - but for OpenID Connect sign-in, `connect-src` also allows the identity provider's token
endpoint origin, exactly (the page exchanges the code there) - no referrer, no MIME sniffing;
everything but the scripts and style sheet is `no-store` (the page shows a child's details, and
the config and session carry tokens). The page goes to the provider's authorization endpoint by
navigation (`location.assign`), not a form, so `form-action 'self'` stays.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import portal
from gateway.config import Settings
from gateway.errors import HTTP_REFUSALS, ErrorCode, error_response
from gateway.identity_provider import ProviderDiscovery, ProviderEndpoints, discovery_url
from gateway.middleware import BodyLimit
from gateway.tokens import DEMO_USERS, DEV_TOKEN_TTL_S, PRIVATE_KEY_FILE, issue_dev_token

PATH: Final = "/portal"


def content_security_policy(token_origin: str | None = None) -> str:
    """The portal's policy; with OpenID Connect, the page may also POST to `token_origin`."""
    connect = "'self'" if token_origin is None else f"'self' {token_origin}"
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; connect-src {connect}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


CONTENT_SECURITY_POLICY: Final = content_security_policy()
CACHEABLE_SUFFIXES: Final = (".js", ".css", ".svg")
"""Files that never carry a child's details: caches may keep them (revalidating each time)."""
DEV_SESSION_MAX_BYTES: Final = 1024

_log = logging.getLogger("childlookup.portal")


class StaticDirectory(StaticFiles):
    """Files from a directory, where a path holding a NUL byte is not found rather than a 500
    (the file system refuses the name with a ValueError, which Starlette lets through)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if "\x00" in path:
            return "", None
        return super().lookup_path(path)


class PortalHeaders:
    """The portal's security and caching headers on every answer under /portal/; `policy` gives
    the Content-Security-Policy as it stands when the answer starts."""

    def __init__(self, app: ASGIApp, policy: Callable[[], str] = lambda: CONTENT_SECURITY_POLICY):
        self._app = app
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        cacheable = str(scope["path"]).endswith(CACHEABLE_SUFFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = self._policy()
                headers["referrer-policy"] = "no-referrer"
                headers["x-content-type-options"] = "nosniff"
                headers["x-frame-options"] = "DENY"
                if cacheable and message["status"] == 200:
                    headers["cache-control"] = "no-cache"
                else:
                    headers["cache-control"] = "no-store"
                    headers["pragma"] = "no-cache"
            await send(message)

        await self._app(scope, receive, send_with_headers)


def portal_app(settings: Settings, *, audit_read_at_most: int) -> ASGIApp:
    """The ASGI app to mount at PATH. `audit_read_at_most` is the most entries the gateway gives
    an auditor's trail or feed a reading: the page reads on past a full one, and says there may be
    more, rather than showing the first as the whole."""
    demo_sign_in = settings.verifies_dev_tokens()
    discovery = (
        ProviderDiscovery(
            discovery_url(settings.issuer, settings.portal_oidc_discovery_url), settings.issuer
        )
        if settings.portal_client_id is not None
        else None
    )

    def policy() -> str:
        endpoints = discovery.cached if discovery else None
        return content_security_policy(endpoints.token_origin if endpoints else None)

    async def page(request: Request) -> Response:
        # Read before answering, so the page's policy allows the token endpoint it will use.
        if discovery is not None:
            await discovery.endpoints()
        return FileResponse(portal.STATIC_DIR / "index.html", media_type="text/html")

    async def config(request: Request) -> Response:
        endpoints = await discovery.endpoints() if discovery is not None else None
        page_config = _page_config(settings, demo_sign_in, endpoints)
        return JSONResponse(page_config | {"auditReadAtMost": audit_read_at_most})

    async def manifest(request: Request) -> Response:
        return FileResponse(portal.MANIFEST_FILE, media_type="application/json")

    async def dev_session(request: Request) -> Response:
        if not demo_sign_in:
            return Response(status_code=404)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error_response(400, ErrorCode.BAD_REQUEST, "Send the demo user as JSON.")
        try:
            index = json.loads(await request.body())["user"]
        except (ValueError, KeyError, TypeError, RecursionError):
            # RecursionError: JSON nested deeper than the decoder goes fits in the 1 KiB read.
            index = None
        if not isinstance(index, int) or isinstance(index, bool):
            return error_response(400, ErrorCode.BAD_REQUEST, "Name a demo user by its number.")
        if not 0 <= index < len(DEMO_USERS):
            return error_response(400, ErrorCode.BAD_REQUEST, "There is no such demo user.")
        user = DEMO_USERS[index]
        ttl_s = min(DEV_TOKEN_TTL_S, settings.token_max_lifetime_s)
        token = issue_dev_token(
            (settings.state_dir / PRIVATE_KEY_FILE).read_bytes(),
            role=user.role,
            organisation=user.organisation,
            name=user.name,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl_s=ttl_s,
            max_lifetime_s=settings.token_max_lifetime_s,
        )
        _log.info(
            "portal demo sign-in",
            extra={"event": "portal_dev_session", "context": {"role": user.role}},
        )
        return JSONResponse({"token": token, "expiresInS": ttl_s, "user": _user(index)})

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/config.json", config, methods=["GET"]),
        Route("/operations.json", manifest, methods=["GET"]),
        Route(
            "/dev-session",
            BodyLimit(request_response(dev_session), DEV_SESSION_MAX_BYTES),
            methods=["POST"],
        ),
        Mount("/", app=StaticDirectory(directory=portal.STATIC_DIR)),
    ]
    return PortalHeaders(Starlette(routes=routes, exception_handlers=HTTP_REFUSALS), policy)


def _user(index: int) -> dict[str, Any]:
    user = DEMO_USERS[index]
    return {
        "index": index,
        "name": user.name,
        "role": user.role,
        "organisation": user.organisation,
    }


def _page_config(
    settings: Settings, demo_sign_in: bool, endpoints: ProviderEndpoints | None
) -> dict[str, Any]:
    demo = demo_sign_in and settings.portal_client_id is None
    return {
        "mode": settings.mode.value,
        "signIn": "demo" if demo else "oidc",
        "demoUsers": [_user(i) for i in range(len(DEMO_USERS))] if demo else [],
        "oidc": None if demo else _oidc_config(settings, endpoints),
        "idleTimeoutS": settings.portal_idle_timeout_s,
        "tokenMaxLifetimeS": settings.token_max_lifetime_s,
        "auditorRoles": list(settings.auditor_roles),
        "purposes": _purposes(settings),
    }


def _oidc_config(settings: Settings, endpoints: ProviderEndpoints | None) -> dict[str, Any]:
    """How the page signs in with the identity provider; `available` is false when no client id
    is configured or the discovery document could not be read (the page says so)."""
    return {
        "available": settings.portal_client_id is not None and endpoints is not None,
        "issuer": settings.issuer,
        "clientId": settings.portal_client_id,
        "scopes": " ".join(settings.portal_oidc_scopes),
        "authorizationEndpoint": endpoints.authorization_endpoint if endpoints else None,
        "tokenEndpoint": endpoints.token_endpoint if endpoints else None,
        "roleClaim": settings.role_claim,
        "organisationClaim": settings.organisation_claim,
    } | _end_session_config(endpoints)


def _end_session_config(endpoints: ProviderEndpoints | None) -> dict[str, str]:
    """Where the page ends the practitioner's session at the provider on sign-out; nothing when
    the provider offers nowhere (the page then asks it for a fresh sign-in next time)."""
    if endpoints is None or endpoints.end_session_endpoint is None:
        return {}
    return {"endSessionEndpoint": endpoints.end_session_endpoint}


def _purposes(settings: Settings) -> dict[str, Any]:
    """Each purpose's description and justification rule, as the policy data states them (the
    page shows them; the policy still decides). Empty when the data cannot be read."""
    try:
        purposes = settings.policy_catalogue()["purposes"]
    except (ValueError, KeyError):
        return {}
    described: dict[str, Any] = {}
    for name, purpose in purposes.items():
        rule = purpose.get("justification") or {}
        described[name] = {
            "description": purpose.get("description", ""),
            "justificationRequired": bool(purpose.get("justification_required")),
            "minWords": rule.get("min_words", 0),
            "minLetters": rule.get("min_letters", 0),
        }
    return described
