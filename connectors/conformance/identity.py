"""The kit as a gateway: its request-signing key, and where the connector finds the public half.

The connector under test is started as it runs in production, trusting a gateway's published keys
(`--gateway-jwks URL`, or a public key file for connectors that cannot fetch one); the kit plays
that gateway. Its key is kept in a PEM file (created when missing, with the public key beside it)
so a connector configured once keeps trusting it between runs. The JWKS is served on loopback
during a run and can also be written to a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.serving import BackgroundServer
from connectors.trust import (
    JWKS_PATH,
    ensure_key_pair,
    jwks_document,
    key_id,
    load_private_key,
    request_authorization,
)


def public_key_path(private_path: Path) -> Path:
    """Where the public half of `private_path` is written: `kit.pem` -> `kit.pub.pem`."""
    return private_path.with_name(f"{private_path.stem}.pub.pem")


class KitIdentity:
    """The gateway the kit plays: signs requests as `issuer` with its private key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        self.issuer = issuer
        self._key = private_key
        self._kid = key_id(private_key.public_key())

    @classmethod
    def from_key_file(cls, path: Path, issuer: str) -> KitIdentity:
        """Load the key in `path`, or create it (and its public key beside it) when missing.
        An existing key whose public file is missing gets it written; it is never replaced."""
        return cls(load_private_key(ensure_key_pair(path, public_key_path(path))), issuer)

    def authorization(
        self,
        body: bytes,
        *,
        audience: str,
        jti: str | None = None,
        issued_at: int | None = None,
    ) -> str:
        """A gateway's `Authorization` header for `body` sent to `audience`."""
        return request_authorization(
            self._key,
            body,
            issuer=self.issuer,
            audience=audience,
            kid=self._kid,
            jti=jti,
            issued_at=issued_at,
        )

    def impostor(self, *, issuer: str | None = None) -> KitIdentity:
        """Another gateway: this key under another issuer name, or (by default) a fresh key the
        connector has never been shown, under this issuer name."""
        if issuer is not None:
            return KitIdentity(self._key, issuer)
        return KitIdentity(ec.generate_private_key(ec.SECP256R1()), self.issuer)

    def jwks(self) -> dict[str, Any]:
        return jwks_document([self._key.public_key()])

    def write_jwks(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.jwks(), indent=2) + "\n", encoding="utf-8")


@contextmanager
def published_jwks(identity: KitIdentity, host: str, port: int) -> Iterator[str]:
    """Serve `identity`'s JWKS at JWKS_PATH on `host`:`port` for the duration; yields its URL."""

    keys = identity.jwks()

    async def jwks(request: Request) -> Response:
        return JSONResponse(keys)

    app = Starlette(routes=[Route(JWKS_PATH, jwks, methods=["GET"])])
    with BackgroundServer(app, host=host, port=port) as server:
        yield server.url + JWKS_PATH
