"""A test identity provider on loopback, for the portal's OpenID Connect sign-in (tests only).

It serves the discovery document, an authorization endpoint that "signs in" one of its test users
(chosen on a tiny form, or by `?login_hint=<role>`) and sends the browser back with a code, a token
endpoint for public clients that checks the client id, the redirect URI and the PKCE verifier
(S256) before issuing an ES256 access token (with the role and organisation claims the gateway
expects, for its audience) and an ID token (with the nonce), and its JWKS. CORS is allowed on the
token endpoint for the one portal origin it is told, as a real provider does for a registered
single-page application.

A test can make it misbehave as a real provider might: send the code back in the URL's fragment
instead of its query (`return_in_fragment`), never answer at the token endpoint
(`token_endpoint_answers`), or state an `expires_in` of its own (`expires_in`) beside tokens valid
for `token_ttl_s`, or an ID token expiring at a time of its own (`id_token_ttl_s`).

Like a real provider it can keep a sign-in session (`keeps_sign_in`): a cookie remembering who
signed in and when (`auth_time`), so a later authorization request from the same browser is
answered with a code for them at once - unless it asks for a fresh sign-in (`prompt=login`, or a
`max_age` they signed in longer ago than), which it may be told to ignore (`ignores_prompt`). It
may offer an `end_session_endpoint` (`offers_end_session`, OpenID Connect RP-Initiated Logout
1.0) that ends that session and sends the browser back to a registered post-logout redirect URI.
Every authorization and logout request's parameters are kept (`authorize_requests`, `logouts`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connectors.serving import BackgroundServer
from gateway.config import SourceConfig
from tests.stack import Stack, running_gateway

KID = "test-idp-1"
CLIENT_ID = "childlookup-portal"
AUDIENCE = "childlookup-gateway"


@dataclass(frozen=True)
class SignedInUser:
    subject: str
    name: str
    role: str
    organisation: str


USERS = (
    SignedInUser("idp-sw-1", "Sam Social Worker", "social_worker", "LA-LEEDS"),
    SignedInUser("idp-aud-1", "Alex Auditor", "auditor", "LA-LEEDS-IG"),
)


SESSION_COOKIE = "test_idp_session"


@dataclass
class _Grant:
    user: SignedInUser
    redirect_uri: str
    challenge: str
    nonce: str | None
    auth_time: int


@dataclass(frozen=True)
class _SignIn:
    """Who signed in at the provider in one browser, and when."""

    user: SignedInUser
    auth_time: int


@dataclass
class IdentityProvider:
    """The provider's state; `issuer` is its base URL once served (tests.stack.serving)."""

    issuer: str = ""
    portal_origin: str = ""
    redirect_uris: tuple[str, ...] = ()
    """The registered redirect URIs; a request naming another is refused."""
    token_ttl_s: int = 300
    """How long the tokens are valid (`exp`), and `expires_in` unless that is given."""
    expires_in: Any = None
    """The token response's `expires_in` when not None, whatever the tokens' `exp` says."""
    return_in_fragment: bool = False
    """Send the code and state back in the URL's fragment (`#code=...`), not its query."""
    token_endpoint_answers: bool = True
    """False: the token endpoint takes the request and never answers it."""
    id_token_ttl_s: int | None = None
    """The ID token's `exp`, from now (negative: already expired), when not `token_ttl_s`."""
    keeps_sign_in: bool = False
    """Remember who signed in (a cookie), and sign them straight back in when asked again."""
    ignores_prompt: bool = False
    """With `keeps_sign_in`: sign them straight back in even when asked for a fresh sign-in."""
    offers_end_session: bool = False
    """Name an `end_session_endpoint` in the discovery document."""
    post_logout_redirect_uris: tuple[str, ...] = ()
    """The registered post-logout redirect URIs; a logout naming another is refused."""
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    logouts: list[dict[str, str]] = field(default_factory=list)
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    token_requests: int = 0
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _sign_ins: dict[str, _SignIn] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/token", self._token, methods=["POST", "OPTIONS"]),
                Route("/jwks", self._jwks),
                Route("/logout", self._logout),
            ]
        )

    # --- endpoints ----------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        end_session = {"end_session_endpoint": f"{self.issuer}/logout"}
        return JSONResponse(
            (end_session if self.offers_end_session else {})
            | {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params = await _form(request)
        else:
            self.authorize_requests.append(params)
        problem = self._authorization_problem(params)
        if problem:
            return HTMLResponse(f"<p>{html.escape(problem)}</p>", status_code=400)
        chosen = params.get("user") or params.get("login_hint")
        user = next((u for u in USERS if u.role == chosen), None)
        session_id = request.cookies.get(SESSION_COOKIE, "")
        if user is not None:
            sign_in = _SignIn(user, int(time.time()))
        elif (kept := self._sign_ins.get(session_id)) and self._reuses(kept, params):
            sign_in = kept
        else:
            return HTMLResponse(self._login_form(params))
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            sign_in.user,
            params["redirect_uri"],
            params["code_challenge"],
            params.get("nonce"),
            sign_in.auth_time,
        )
        back = {"code": code, "state": params.get("state", ""), "iss": self.issuer}
        separator = "#" if self.return_in_fragment else "?"
        response = RedirectResponse(
            f"{params['redirect_uri']}{separator}{urlencode(back)}", status_code=303
        )
        if self.keeps_sign_in:
            session_id = secrets.token_urlsafe(16)
            self._sign_ins[session_id] = sign_in
            response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax")
        return response

    def _reuses(self, kept: _SignIn, params: dict[str, str]) -> bool:
        """Whether a kept sign-in answers this request without asking the user again."""
        if self.ignores_prompt:
            return True
        if "login" in params.get("prompt", "").split():
            return False
        max_age = params.get("max_age")
        return max_age is None or int(time.time()) - kept.auth_time < int(max_age)

    async def _logout(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.logouts.append(params)
        back = params.get("post_logout_redirect_uri")
        if back is not None and (
            back not in self.post_logout_redirect_uris or params.get("client_id") != CLIENT_ID
        ):
            return HTMLResponse("<p>The post-logout redirect URI is not registered.</p>", 400)
        self._sign_ins.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response: Response = (
            HTMLResponse("<p>You are signed out.</p>")
            if back is None
            else RedirectResponse(back, status_code=303)
        )
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def _token(self, request: Request) -> Response:
        cors = {"access-control-allow-origin": self.portal_origin, "vary": "origin"}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        self.token_requests += 1
        if not self.token_endpoint_answers:
            await asyncio.sleep(3600)  # cancelled when the server stops
        form = await _form(request)
        grant = self._grants.pop(form.get("code", ""), None)  # one use only
        if (
            form.get("grant_type") != "authorization_code"
            or form.get("client_id") != CLIENT_ID
            or grant is None
            or form.get("redirect_uri") != grant.redirect_uri
            or s256(form.get("code_verifier", "")) != grant.challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400, headers=cors)
        headers = cors | {"cache-control": "no-store"}
        return JSONResponse(self._tokens(grant), headers=headers)

    async def _jwks(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return JSONResponse({"keys": [jwk | {"kid": KID, "alg": "ES256", "use": "sig"}]})

    # --- what they answer ---------------------------------------------------------------------

    def _authorization_problem(self, params: dict[str, str]) -> str | None:
        if params.get("client_id") != CLIENT_ID:
            return "Unknown client."
        if params.get("redirect_uri") not in self.redirect_uris:
            return "The redirect URI is not registered for this client."
        if params.get("response_type") != "code":
            return "Only the authorization code flow is supported."
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required."
        return None

    def _login_form(self, params: dict[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k != "user"
        )
        buttons = "".join(
            f'<button name="user" value="{u.role}">{html.escape(u.name)} ({u.role})</button>'
            for u in USERS
        )
        return (
            '<!doctype html><html lang="en"><title>Test identity provider</title>'
            f'<h1>Sign in</h1><form method="post" action="/authorize">{hidden}{buttons}</form>'
        )

    def _tokens(self, grant: _Grant) -> dict[str, Any]:
        now = int(time.time())
        user = grant.user
        common = {
            "iss": self.issuer,
            "sub": user.subject,
            "iat": now,
            "exp": now + self.token_ttl_s,
        }
        access = common | {
            "aud": AUDIENCE,
            "name": user.name,
            "role": user.role,
            "org": user.organisation,
        }
        identity = common | {
            "aud": CLIENT_ID,
            "name": user.name,
            "nonce": grant.nonce,
            "auth_time": grant.auth_time,
        }
        if self.id_token_ttl_s is not None:
            identity["exp"] = now + self.id_token_ttl_s
        return {
            "access_token": self.sign(access),
            "id_token": self.sign(identity),
            "token_type": "Bearer",
            "expires_in": self.token_ttl_s if self.expires_in is None else self.expires_in,
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": KID})


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (without python-multipart)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def s256(verifier: str) -> str:
    """The PKCE code challenge of a verifier (RFC 7636, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@contextlib.contextmanager
def production_portal(
    tmp: Path, sources: Sequence[SourceConfig], settings: dict[str, Any]
) -> Iterator[tuple[IdentityProvider, Stack]]:
    """The test provider and a gateway set up with `settings` (tests/conftest.py's
    production_settings) trusting it: its issuer, JWKS and the portal's client id, the portal at
    `/portal/` registered as the redirect URI and the post-logout redirect URI."""
    provider = IdentityProvider()
    with BackgroundServer(provider.app()) as idp:
        provider.issuer = idp.url
        trusting = {
            "issuer": idp.url,
            "jwks_url": f"{idp.url}/jwks",
            "audience": AUDIENCE,
            "portal_client_id": CLIENT_ID,
        }
        without_dev_key = {k: v for k, v in settings.items() if k != "token_public_key_file"}
        with running_gateway(tmp, sources, **(without_dev_key | trusting)) as gateway:
            provider.portal_origin = gateway.url
            provider.redirect_uris = (f"{gateway.url}/portal/",)
            provider.post_logout_redirect_uris = provider.redirect_uris
            yield provider, gateway
