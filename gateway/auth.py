"""The authenticate stage: a verified bearer token becomes a Caller, or the request stops here.

Only asymmetric algorithms from an allow-list are accepted, so a token signed with a public key
used as an HMAC secret, or with `alg: none`, can never verify. Keys come from a static PEM file
(the dev demo) or from the identity provider's JWKS, fetched, cached, and fetched again when a
token names a key id not yet seen (key rotation) - at most once per `min_refresh_s`, so forged
key ids cannot make the gateway hammer the provider.

A token lives at most `max_lifetime_s` from its `iat` to its `exp`, whatever the issuer put in it:
a stolen long-lived token would otherwise open every child's record for as long as it says.
"""

from __future__ import annotations

import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connectors.trust import KeySource, KeysUnavailable, PublishedKeys, UnknownKey
from connectors.trust import StaticKey as _StaticKey
from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller

DEFAULT_ALGORITHMS = ("ES256", "RS256", "PS256")
DEFAULT_MAX_LIFETIME_S: Final = 12 * 3600
"""The longest a token may be valid, `iat` to `exp`: one practitioner's shift (long day shifts
run to about 12 hours), so a practitioner signs in once per shift and a token taken from a
device or a log stops working by the end of that shift. Identity providers usually issue much
shorter access tokens; this bounds the ones that do not."""
_ASYMMETRIC = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384"})


class StaticKey(_StaticKey):
    """One public key, whatever the token's key id (the demo's dev signing key)."""

    @classmethod
    def from_pem_file(cls, path: Path) -> StaticKey:
        return cls(load_pem_public_key(path.read_bytes()))


class JwksKeys:
    """The identity provider's published keys, by key id."""

    def __init__(self, published: PublishedKeys) -> None:
        self._published = published

    async def key(self, kid: str | None) -> Any:
        if kid is None:
            raise _unauthenticated("The bearer token does not say which key signed it.")
        try:
            return await self._published.key(kid)
        except KeysUnavailable as exc:
            # Not the token's fault: 401 would make a portal sign its practitioner out.
            raise GatewayError(
                ErrorCode.IDENTITY_UNAVAILABLE,
                "Sign-in could not be checked with the identity provider; try again shortly.",
            ) from exc
        except UnknownKey as exc:
            raise _unauthenticated(
                "The bearer token was signed with a key the issuer does not publish."
            ) from exc


@dataclass(frozen=True)
class ClaimNames:
    """Where the practitioner's role, organisation and assurance level are in the token."""

    role: str = "role"
    organisation: str = "org"
    assurance: str | None = None


class TokenVerifier:
    """Verifies bearer tokens from one issuer.

    A portal sends the same token with every request for its lifetime, and a signature check
    costs more than the rest of the edge together, so a verified token is remembered (by its exact
    bytes) until it expires - and only while the key that verified it is still the one published
    under its key id: a key the issuer withdrew stops every token it signed, remembered or not.
    Nothing else is trusted from memory: an altered token is new bytes.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_s: int,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        claims: ClaimNames = ClaimNames(),
        max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S,
        remember: int = 4096,
    ):
        if not algorithms or not set(algorithms) <= _ASYMMETRIC:
            raise ValueError(f"token algorithms must be asymmetric, from {sorted(_ASYMMETRIC)}")
        self._keys = keys
        self._max_lifetime = max_lifetime_s
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._algorithms = list(algorithms)
        self._claims = claims
        self._required = ["iss", "aud", "sub", "exp", "iat", claims.role, claims.organisation]
        if claims.assurance:
            self._required.append(claims.assurance)
        self._verified: OrderedDict[str, tuple[Caller, float, str | None, Any]] = OrderedDict()
        """Per token verified: its caller, when it expires, its key id and the key that checked
        it."""
        self._remember = remember

    async def authenticate(self, authorization: str | None) -> Caller:
        """Turn an Authorization header into a Caller; any doubt is UNAUTHENTICATED."""
        if not authorization:
            raise _unauthenticated("Sign in: this request carries no bearer token.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("Use an 'Authorization: Bearer <token>' header.")
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires, kid, key = remembered
            if time.time() < expires and await self._keys.key(kid) is key:
                return caller
            del self._verified[token]
        caller, expires, kid, key = await self._verify(token)
        self._verified[token] = (caller, expires, kid, key)
        while len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, float, str | None, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthenticated("The bearer token could not be verified.") from exc
        if header.get("alg") not in self._algorithms:
            raise _unauthenticated(
                "The bearer token is signed with an algorithm not accepted here."
            )
        key = await self._keys.key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": self._required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthenticated("Your session token has expired: sign in again.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _unauthenticated(
                "The bearer token is not valid yet: the clocks of the identity provider and the"
                " gateway may differ."
            ) from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # PyJWT raises TypeError or ValueError, not its own errors, when the key named is not
            # of the algorithm's kind (an RS256 token against an EC key): a token, not a fault.
            raise _unauthenticated("The bearer token could not be verified.") from exc
        issued, expires = claims["iat"], claims["exp"]
        if not all(
            isinstance(t, int | float) and not isinstance(t, bool) for t in (issued, expires)
        ):
            raise _unauthenticated("The bearer token could not be verified.")
        if expires - issued > self._max_lifetime:
            raise _unauthenticated(
                "The bearer token is valid for longer than the gateway accepts"
                f" ({describe_duration(self._max_lifetime)}): sign in again through your portal."
            )
        values = [claims.get(name) for name in self._required[5:]]
        if not all(_text(v) for v in [claims.get("sub"), *values]):
            raise _unauthenticated(
                "The bearer token lacks a readable subject, role, organisation or assurance level."
            )
        name = claims.get("name")
        caller = Caller(
            subject=str(claims["sub"]),
            name=name if _text(name) else str(claims["sub"]),
            role=str(claims[self._claims.role]),
            organisation=str(claims[self._claims.organisation]),
        )
        return caller, float(claims["exp"]) + self._leeway, header.get("kid"), key


def describe_duration(seconds: int) -> str:
    """A limit as a person reads it: "12 hours", "1 hour", "90 minutes", "45 seconds"."""
    unit, size = next(
        (u, s) for u, s in (("hour", 3600), ("minute", 60), ("second", 1)) if seconds % s == 0
    )
    count = seconds // size
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _text(value: object) -> TypeGuard[str]:
    """Whether a claim is a non-empty string that can be stored and shown. JSON lets a token
    carry a lone surrogate (`"\\ud800"`), which is no character and cannot be written as UTF-8,
    and a control character (`"\\u0000"`), which PostgreSQL cannot hold in text and a log or
    message would print as nothing or as a terminal command. A caller named by either would fail
    the lookup where its audit record is written - after the agencies were asked - rather than
    at the edge (gateway.middleware refuses a lone surrogate in a request body)."""
    if not isinstance(value, str) or not value:
        return False
    return not any(unicodedata.category(char) in _UNSTORABLE for char in value)


_UNSTORABLE: Final = frozenset({"Cs", "Cc"})
"""Lone surrogates and control characters (C0, DEL and C1: NUL, escape, tab, new line)."""


def _unauthenticated(message: str) -> GatewayError:
    return GatewayError(ErrorCode.UNAUTHENTICATED, message)
