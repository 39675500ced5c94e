"""How the connector authenticates to the FHIR servers: not at all, a fixed bearer token, or NHS
England's application-restricted pattern - OAuth 2.0 client credentials with a signed JWT.

In the signed-JWT pattern the connector holds an RSA private key whose public half is registered
with the API platform, signs a short-lived assertion (RS512) naming itself and the token endpoint,
and swaps it for an access token. The token is kept until shortly before it expires, so a lookup
normally costs no token call; when the server nevertheless refuses it, the backend asks for a fresh
one once (`refresh=True`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.backend import ConnectorError
from connectors.protocol import ErrorCode

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHM: Final = "RS512"
ASSERTION_LIFETIME_S: Final = 300
"""NHS England's token endpoint refuses an assertion that expires more than five minutes ahead."""
REFRESH_MARGIN_S: Final = 60.0
"""A cached token this close to expiry is replaced before use, so it cannot expire in flight."""


class FhirAuth(Protocol):
    """The `Authorization` header value for calls to a FHIR server (None: send none)."""

    async def authorization(
        self, client: httpx.AsyncClient, *, refresh: bool = False
    ) -> str | None:
        """The header value; with `refresh`, not a cached one (the server refused it)."""


@dataclass(frozen=True)
class NoAuth:
    """No `Authorization` header: a server on a trusted network, or the open sandbox."""

    async def authorization(
        self, client: httpx.AsyncClient, *, refresh: bool = False
    ) -> str | None:
        return None


@dataclass(frozen=True)
class BearerToken:
    """A fixed access token, issued out of band."""

    token: str = field(repr=False)

    async def authorization(
        self, client: httpx.AsyncClient, *, refresh: bool = False
    ) -> str | None:
        return f"Bearer {self.token}"


@dataclass
class SignedJwtAuth:
    """OAuth 2.0 client credentials with a signed JWT client assertion (RFC 7523), as NHS England's
    APIs use: `client_id` is the application's API key, `key_id` the `kid` its public key is
    registered under, `token_url` the platform's token endpoint (also the assertion's audience)."""

    token_url: str
    client_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    key_id: str
    clock: Callable[[], float] = time.time
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @classmethod
    def from_pem_file(
        cls, token_url: str, client_id: str, key_path: Path, key_id: str
    ) -> SignedJwtAuth:
        """Read the RSA private key from a PEM file; raises ValueError if it is not one."""
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path}: a client assertion key must be an RSA private key")
        return cls(token_url=token_url, client_id=client_id, private_key=key, key_id=key_id)

    def client_assertion(self) -> str:
        """A fresh assertion: issuer and subject the client, audience the token endpoint, a unique
        `jti` so it cannot be replayed, expiring within the platform's five minutes."""
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=ASSERTION_ALGORITHM,
            headers={"kid": self.key_id, "typ": "JWT"},
        )

    async def authorization(
        self, client: httpx.AsyncClient, *, refresh: bool = False
    ) -> str | None:
        async with self._lock:  # one token request at a time, however many lookups need one
            if (
                refresh
                or self._token is None
                or self.clock() >= self._expires_at - REFRESH_MARGIN_S
            ):
                self._token, self._expires_at = await self._fetch(client)
            return f"Bearer {self._token}"

    async def _fetch(self, client: httpx.AsyncClient) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        try:
            response = await client.post(self.token_url, data=form)
        except httpx.HTTPError:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, "The NHS token service could not be reached."
            ) from None
        if response.status_code != 200:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE,
                f"The NHS token service refused the connector (HTTP {response.status_code}).",
            )
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, "The NHS token service answered without a usable token."
            ) from None
        return token, self.clock() + lifetime
