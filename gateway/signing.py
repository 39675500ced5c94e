"""The gateway's side of connector trust: it signs every request it sends, publishes the key at
`/.well-known/jwks.json`, and checks the signature on each answer from a source configured with a
key, so an answer that was not signed by that agency, or was altered on the way, is never data.

Formats are in `connectors.trust`, beside the connector's side of the same exchange.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from connectors.trust import (
    KeySource,
    PublishedKeys,
    StaticKeys,
    ensure_key_pair,
    jwks_document,
    key_id,
    load_private_key,
    load_public_keys,
    published_keys,
    request_authorization,
    verify_answer,
)
from gateway.config import AnswerKeys, Settings, SourceConfig

DEV_KEY_FILE: Final = "gateway-request-key.pem"
DEV_PUBLIC_KEY_FILE: Final = "gateway-request-key.pub.pem"


class RequestSigner:
    """Signs each federated request: a fresh token per request, addressed to one connector."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str,
        also_published: Sequence[ec.EllipticCurvePublicKey] = (),
    ) -> None:
        """`also_published`: keys the JWKS serves beside this one's, for a rotation."""
        self._key = private_key
        self._issuer = issuer
        self._kid = key_id(private_key.public_key())
        self._published = published_keys(private_key, also_published)

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestSigner:
        """The configured key (production), or a dev key generated once into the state dir; and
        the keys to publish beside it, if any."""
        path = settings.request_signing_key_file or ensure_key_pair(
            settings.state_dir / DEV_KEY_FILE, settings.state_dir / DEV_PUBLIC_KEY_FILE
        )
        extra = settings.request_signing_published_keys_file
        return cls(
            load_private_key(path),
            issuer=settings.gateway_id,
            also_published=() if extra is None else load_public_keys(extra),
        )

    def authorization(self, audience: str, body: bytes) -> str:
        """The `Authorization` header value for sending `body` to the connector `audience`."""
        return request_authorization(
            self._key, body, issuer=self._issuer, audience=audience, kid=self._kid
        )

    def jwks(self) -> dict[str, Any]:
        """The signing key first, then the others published for a rotation."""
        return jwks_document(self._published)


class AnswerVerifier:
    """Checks that an answer body was signed, just now, by the source it claims to come from."""

    def __init__(self, keys: KeySource) -> None:
        self._keys = keys

    @classmethod
    def for_party(
        cls, party: AnswerKeys, tls: ssl.SSLContext | None = None
    ) -> AnswerVerifier | None:
        """The party's configured answer key (a source's, a witness's), if any; a bad key file
        fails at start-up. Keys published by URL are fetched over `tls`, the context the gateway
        reaches the party with (`CHILDLOOKUP_CONNECTOR_TLS`): a party requiring the gateway's
        client certificate, or certified by the federation's own CA, serves its keys as it
        serves its answers."""
        if party.answer_key_file is not None:
            return cls(StaticKeys.from_pem_file(party.answer_key_file))
        if party.answer_jwks_url is not None:
            return cls(PublishedKeys(str(party.answer_jwks_url), tls=tls))
        return None

    async def verify(self, signature: str | None, body: bytes, *, source: str) -> None:
        """Raise TrustError unless `signature` is `source`'s valid signature over `body`."""
        await verify_answer(signature, body, self._keys, source=source)


def answer_verifiers(
    sources: Sequence[SourceConfig], tls: ssl.SSLContext | None = None
) -> Mapping[str, AnswerVerifier]:
    """An answer verifier for each source configured with a key (published keys fetched over
    `tls`, as `AnswerVerifier.for_party`)."""
    verifiers = {source.name: AnswerVerifier.for_party(source, tls) for source in sources}
    return {name: verifier for name, verifier in verifiers.items() if verifier is not None}
