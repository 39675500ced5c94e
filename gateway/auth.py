"""The authenticate stage: a verified bearer token becomes a Caller, or the request stops here.

Only asymmetric algorithms are accepted, so a token signed with the public key as an HMAC secret, or
with `alg: none`, can never verify.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.errors import ErrorCode, GatewayError
from gateway.types import Caller

ALLOWED_ALGORITHMS = ("ES256",)
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "role", "org")


class TokenVerifier:
    """Verifies bearer tokens against one issuer's public key.

    A portal sends the same token with every request for its lifetime, and an ECDSA verification
    costs more than the rest of the edge together, so a verified token is remembered (by its exact
    bytes) until it expires. Nothing else is trusted from memory: an altered token is new bytes.
    """

    def __init__(
        self,
        public_key: PublicKeyTypes,
        *,
        issuer: str,
        audience: str,
        leeway_s: int,
        remember: int = 4096,
    ):
        self._key = public_key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._remember = remember

    @classmethod
    def from_pem_file(
        cls, path: Path, *, issuer: str, audience: str, leeway_s: int
    ) -> TokenVerifier:
        return cls(
            load_pem_public_key(path.read_bytes()),
            issuer=issuer,
            audience=audience,
            leeway_s=leeway_s,
        )

    def authenticate(self, authorization: str | None) -> Caller:
        """Turn an Authorization header into a Caller; any doubt is UNAUTHENTICATED."""
        if not authorization:
            raise _unauthenticated("Sign in: this request carries no bearer token.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("Use an 'Authorization: Bearer <token>' header.")
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires = remembered
            if time.time() < expires:
                return caller
            del self._verified[token]
        caller, expires = self._verify(token)
        self._verified[token] = (caller, expires)
        while len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthenticated("Your session token has expired: sign in again.") from exc
        except jwt.PyJWTError as exc:
            raise _unauthenticated("The bearer token could not be verified.") from exc
        role, org, sub = claims.get("role"), claims.get("org"), claims.get("sub")
        if not all(isinstance(v, str) and v for v in (role, org, sub)):
            raise _unauthenticated("The bearer token lacks a role or organisation.")
        name = claims.get("name")
        caller = Caller(
            subject=str(sub),
            name=name if isinstance(name, str) else str(sub),
            role=str(role),
            organisation=str(org),
        )
        return caller, float(claims["exp"]) + self._leeway


def _unauthenticated(message: str) -> GatewayError:
    return GatewayError(ErrorCode.UNAUTHENTICATED, message)
