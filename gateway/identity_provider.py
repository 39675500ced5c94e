"""The identity provider the portal signs practitioners in with (OpenID Connect), as its discovery
document describes it.

The gateway reads `{issuer}/.well-known/openid-configuration` (or
`CHILDLOOKUP_PORTAL_OIDC_DISCOVERY_URL`) itself, so the page is told the authorization and token
endpoints in /portal/config.json, and the page's Content-Security-Policy can allow exactly the
token endpoint's origin and nothing else. The document must name the configured issuer (OpenID
Connect Discovery 1.0, section 4.3), its endpoints must be https (http on loopback only, for
tests), and PKCE with S256 must not be ruled out. An `end_session_endpoint` (OpenID Connect
RP-Initiated Logout 1.0), when the document names one that is plainly https, is where the page
ends the practitioner's session at the provider when they sign out: on a shared workstation the
next person to sign in must not be signed straight back in as them. It is read to
MAX_DOCUMENT_BYTES and whole within the timeout (connectors.bounded_reads), cached for an hour,
and after a failure fetched again at most every 30 s - one read at a time, however many page
loads are waiting on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from connectors.bounded_reads import MAX_DOCUMENT_BYTES, read_answer

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

_log = logging.getLogger("childlookup.portal")


@dataclass(frozen=True)
class ProviderEndpoints:
    """Where the page sends the practitioner to sign in, where it exchanges the code, and where
    it ends their session at the provider on sign-out (None: the provider offers nowhere, so the
    page asks it for a fresh sign-in next time instead)."""

    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None = None

    @property
    def token_origin(self) -> str:
        """The token endpoint's origin, as the page's connect-src must allow it."""
        return web_origin(self.token_endpoint)


class DiscoveryError(ValueError):
    """The discovery document could not be read or does not describe the configured issuer."""


def discovery_url(issuer: str, configured: str | None) -> str:
    """The configured discovery URL, or the issuer's well-known one."""
    return configured or issuer.rstrip("/") + DISCOVERY_PATH


def web_origin(url: str) -> str:
    """`scheme://host[:port]` of an https URL (or an http one on loopback), built from its
    checked parts; DiscoveryError otherwise.

    The origin goes into the page's Content-Security-Policy header as it is, so the URL must be
    plainly a URL: printable ASCII with none of `\\ ; , ' "` or spaces (each could end a CSP
    directive and begin another - a document's `token_endpoint` could add `frame-ancestors http:`
    - or, as a control or non-Latin-1 character, break every answer under /portal/), no user
    information, a host of letters, digits, dots and hyphens (or an IPv6 address), and a port
    that is a number."""
    if not _PLAIN_URL.fullmatch(url):
        raise DiscoveryError(f"{url!r} is not a plain https URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DiscoveryError(f"{url!r} is not a plain https URL") from None
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)
    if not secure or "@" in parts.netloc or not _host(host):
        raise DiscoveryError(f"{url!r} is not an https URL")
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port is None else f":{port}")


_PLAIN_URL: Final = re.compile(r"[!#$%&()*+\-./0-9:=?@A-Z\[\]_a-z~]+")
"""The characters a plain URL is written in here: printable ASCII less space, `\\`, `;`, `,`,
quotes, `<>`, `^`, backquote, braces and `|`."""
_HOSTNAME: Final = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _host(host: str) -> bool:
    """A DNS name or an IP address (urlsplit gives the host lowercased, an IPv6 one unbracketed)."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME.fullmatch(host) is not None


def parse_discovery(document: Any, issuer: str) -> ProviderEndpoints:
    """The endpoints of a discovery document describing `issuer`."""
    if not isinstance(document, dict):
        raise DiscoveryError("the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        raise DiscoveryError(
            f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise DiscoveryError("the identity provider does not support PKCE with S256")
    endpoints = []
    for name in ("authorization_endpoint", "token_endpoint"):
        value = document.get(name)
        if not isinstance(value, str):
            raise DiscoveryError(f"the discovery document has no {name}")
        web_origin(value)
        endpoints.append(value)
    authorization, token = endpoints
    return ProviderEndpoints(authorization, token, _end_session(document))


def _end_session(document: dict[str, Any]) -> str | None:
    """The document's `end_session_endpoint` when it is plainly https; else None, said in the log:
    the page must not send the ID token to an endpoint that is not, and without one it still
    signs out safely (it asks the provider for a fresh sign-in next time)."""
    value = document.get("end_session_endpoint")
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise DiscoveryError(f"{value!r} is not a URL")
        web_origin(value)
    except DiscoveryError as exc:
        _log.warning(
            "identity provider end_session_endpoint ignored",
            extra={"event": "portal_end_session_ignored", "context": {"error": str(exc)}},
        )
        return None
    return value


class ProviderDiscovery:
    """The identity provider's endpoints, fetched from its discovery document and cached."""

    def __init__(
        self,
        url: str,
        issuer: str,
        *,
        max_age_s: float = 3600.0,
        retry_s: float = 30.0,
        timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self._issuer = issuer
        self._max_age = max_age_s
        self._retry = retry_s
        self._timeout = timeout_s
        self._endpoints: ProviderEndpoints | None = None
        self._fetched_at = -float("inf")
        self._failed_at = -float("inf")
        # One read at a time: page loads arriving while it is under way wait for its outcome
        # rather than each opening a connection of its own to the provider.
        self._reading = asyncio.Lock()

    @property
    def cached(self) -> ProviderEndpoints | None:
        """The endpoints last read, without fetching."""
        return self._endpoints

    async def endpoints(self) -> ProviderEndpoints | None:
        """The endpoints, fetched when not yet known or older than `max_age_s`; None when the
        document cannot be read (and was never read)."""
        if not self._due(time.monotonic()):
            return self._endpoints
        if self._reading.locked() and self._endpoints is not None:
            return self._endpoints  # refreshed meanwhile: what was read an hour ago still serves
        async with self._reading:
            now = time.monotonic()
            if self._due(now):
                await self._read(now)
        return self._endpoints

    def _due(self, now: float) -> bool:
        stale = now - self._fetched_at > self._max_age
        return stale and now - self._failed_at > self._retry

    async def _read(self, now: float) -> None:
        """Read the document once; on failure, keep what was read before."""
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response, body = await read_answer(
                    client,
                    "GET",
                    self.url,
                    max_bytes=MAX_DOCUMENT_BYTES,
                    within_s=self._timeout,
                    headers={"accept": "application/json"},
                )
            response.raise_for_status()
            self._endpoints = parse_discovery(json.loads(body), self._issuer)
            self._fetched_at = now
        # RecursionError: a document nested deeper than the JSON decoder goes (well under the
        # size cap); InvalidURL: a discovery URL httpx cannot send to. Either is a document that
        # cannot be read, said in the log and on the page, not a 500 on every page load.
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, RecursionError) as exc:
            self._failed_at = now
            _log.warning(
                "identity provider discovery failed",
                extra={
                    "event": "portal_discovery_failed",
                    "context": {"url": self.url, "error": str(exc)},
                },
            )
