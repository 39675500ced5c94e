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
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.backend import ConnectorError
from connectors.bounded_reads import AnswerTooLarge, read_answer
from connectors.protocol import ErrorCode
from connectors.trust import read_private_key

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHM: Final = "RS512"
ASSERTION_LIFETIME_S: Final = 300
"""NHS England's token endpoint refuses an assertion that expires more than five minutes ahead."""
REFRESH_MARGIN_S: Final = 60.0
"""A cached token this close to expiry is replaced before use, so it cannot expire in flight."""
MAX_TOKEN_LIFETIME_S: Final = 24 * 60 * 60
"""The longest `expires_in` believed. NHS England grants ten minutes; an answer claiming more than
a day (or infinity) would have the connector keep one token for good, whatever happens to it."""
MAX_TOKEN_ANSWER_BYTES: Final = 64 * 1024
"""The most of a token answer read: a token and its lifetime are well under 2 KB."""
TOKEN_CALL_S: Final = 5.0
"""The longest one token call may take, whole; lookups needing a token wait behind it."""
_BEARER_TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""A token as an `Authorization: Bearer` header can carry it (RFC 6750's b64token)."""


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
        key = read_private_key(key_path)
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
            response, body = await read_answer(
                client,
                "POST",
                self.token_url,
                max_bytes=MAX_TOKEN_ANSWER_BYTES,
                within_s=TOKEN_CALL_S,
                data=form,
            )
        except httpx.HTTPError:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, "The NHS token service could not be reached."
            ) from None
        except AnswerTooLarge:
            raise _no_usable_token() from None
        if response.status_code != 200:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE,
                f"The NHS token service refused the connector (HTTP {response.status_code}).",
            )
        try:
            token, lifetime = _usable_token(json.loads(body))
        except (ValueError, RecursionError):
            raise _no_usable_token() from None
        return token, self.clock() + lifetime


def _no_usable_token() -> ConnectorError:
    return ConnectorError(
        ErrorCode.UNAVAILABLE, "The NHS token service answered without a usable token."
    )


def _usable_token(answer: object) -> tuple[str, float]:
    """The access token and its lifetime in seconds from a token answer; ValueError unless the
    token is one a header can carry and the lifetime a number of seconds (or its digits) above 0
    and at most `MAX_TOKEN_LIFETIME_S` - not NaN, which no comparison holds for."""
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    token, lifetime = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(token, str) or _BEARER_TOKEN.fullmatch(token) is None:
        raise ValueError("no access token a header can carry")
    if isinstance(lifetime, str):
        lifetime = float(lifetime)  # NHS England sends "599"
    elif isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        raise ValueError("no lifetime")
    if not 0 < lifetime <= MAX_TOKEN_LIFETIME_S:  # compared as sent: float() overflows an int
        raise ValueError("a lifetime out of range")
    return token, float(lifetime)
