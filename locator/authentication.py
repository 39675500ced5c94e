"""Who may talk to the locator: registered agencies publish, the gateway locates.

Both sign each request as the gateway signs a connector request (connectors.trust): an ES256
token for the locator's id, committing to the body, used once. An agency's token must be made
with that agency's own key: the token says which agency it claims to be, and only that agency's
published key can verify it, so agency A cannot publish or read holdings as agency B.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import jwt

from connectors.trust import (
    KeySource,
    MemoryReplayCache,
    PublishedKeys,
    ReplayCache,
    RequestVerifier,
    StaticKeys,
    TrustError,
    UnknownKey,
)
from locator.settings import AgencyKeys

JWKS_TIMEOUT_S: Final = 3.0
JWKS_MIN_REFRESH_S: Final = 30.0


class Publishers:
    """The registered agencies, and the check that a request was signed by one of them.

    Agencies that publish their keys as a JWKS are fetched over one HTTP client held here (close
    it with `aclose`): thousands of agencies first publishing at once each need their JWKS
    fetched, and a client of its own per fetch cost each ~100 ms of CPU on the event loop (a
    fresh TLS context), which serialised every publication behind it."""

    def __init__(
        self,
        agencies: Sequence[AgencyKeys],
        *,
        audience: str,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        seen = MemoryReplayCache() if replay_cache is None else replay_cache
        self._audience = audience
        self._client = httpx.AsyncClient(timeout=JWKS_TIMEOUT_S)
        self._verifiers = {
            agency.name: RequestVerifier(
                self._keys_of(agency), issuer=agency.name, replay_cache=seen
            )
            for agency in agencies
        }

    def __len__(self) -> int:
        return len(self._verifiers)

    def __contains__(self, agency: object) -> bool:
        """Whether `agency` is registered (in the agencies file) now."""
        return agency in self._verifiers

    async def aclose(self) -> None:
        """Close the client that fetches agencies' JWKS."""
        await self._client.aclose()

    async def verify(self, authorization: str | None, body: bytes) -> str:
        """The agency that signed `body`; raises TrustError unless a registered agency signed it
        just now, for this locator, and never sent it before."""
        claimed = _claimed_issuer(authorization)
        verifier = self._verifiers.get(claimed)
        if verifier is None:
            raise TrustError("The signer is not an agency registered with this locator.")
        await verifier.verify(authorization, body, audience=self._audience)
        return claimed

    def _keys_of(self, agency: AgencyKeys) -> KeySource:
        if agency.public_key_file is not None:
            return StaticKeys.from_pem_file(agency.public_key_file)
        assert agency.jwks_url is not None  # AgencyKeys holds exactly one of the two
        return PublishedKeys(agency.jwks_url, client=self._client, min_refresh_s=JWKS_MIN_REFRESH_S)


def gateway_verifier(
    keys: list[str] | Path, *, issuer: str, replay_cache: ReplayCache | None = None
) -> RequestVerifier:
    """The check that a locate was signed by the gateway, with the keys published at the URLs
    `keys` or held in the PEM file `keys`."""
    source: KeySource
    if isinstance(keys, Path):
        source = StaticKeys.from_pem_file(keys)
    else:
        source = _AnyOf([PublishedKeys(url) for url in keys])
    return RequestVerifier(source, issuer=issuer, replay_cache=replay_cache)


def _claimed_issuer(authorization: str | None) -> str:
    """Who the token says made it - read before its signature is checked, to know whose key
    checks it; trusted only once that key has verified it."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TrustError("The locator accepts only requests signed by an agency or the gateway.")
    try:
        claims: dict[str, Any] = jwt.decode(token.strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TrustError("The signature is not a well-formed token.") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise TrustError("The token does not say who made it.")
    return issuer


class _AnyOf:
    """Keys published by any of several publishers (gateways of one deployment, each with its
    own JWKS): the first that knows the key id."""

    def __init__(self, sources: Sequence[KeySource]) -> None:
        if not sources:
            raise ValueError("no gateway keys are configured")
        self._sources = tuple(sources)

    async def key(self, kid: str | None) -> Any:
        failure: TrustError | None = None
        for source in self._sources:
            try:
                return await source.key(kid)
            except TrustError as error:
                failure = error
        raise failure or UnknownKey("The signature was made with a key no gateway publishes.")
