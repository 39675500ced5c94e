"""A publisher's keys fetched from its JWKS (connectors.trust.PublishedKeys), served for real on
loopback: a caller giving up mid-fetch must not leave the keys unfetched for the refresh
interval, and a connector whose gateway's keys cannot be fetched says it is unavailable."""

from __future__ import annotations

import asyncio
import socket

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.app import create_connector_app
from connectors.protocol import LOOKUP_PATH, ErrorCode, ErrorResponse
from connectors.serving import BackgroundServer
from connectors.trust import (
    JWKS_PATH,
    PublishedKeys,
    RequestVerifier,
    StaticKey,
    TrustError,
    jwks_document,
    key_id,
    signed_token,
    verified_claims,
)
from tests.stack import GATEWAY_ISSUER, GATEWAY_SIGNER
from tests.test_trust import RecordingBackend
from tests.test_trust import _body as lookup_body

KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


def _slow_jwks(delay_s: float, served: list[float]) -> Starlette:
    async def jwks(request: Request) -> Response:
        served.append(delay_s)
        await asyncio.sleep(delay_s)
        return JSONResponse(jwks_document([KEY]))

    return Starlette(routes=[Route(JWKS_PATH, jwks)])


@pytest.mark.anyio
async def test_a_fetch_its_caller_gave_up_on_still_serves_the_next_caller():
    served: list[float] = []
    with BackgroundServer(_slow_jwks(0.3, served)) as server:
        keys = PublishedKeys(server.url + JWKS_PATH, min_refresh_s=30.0)

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # a lookup's deadline passing mid-fetch
                await keys.key(key_id(KEY))
        found = await keys.key(key_id(KEY))

    assert found.public_numbers() == KEY.public_numbers()
    assert served == [0.3]  # one fetch, finished for the second caller


@pytest.mark.anyio
async def test_callers_arriving_together_share_one_fetch():
    served: list[float] = []
    with BackgroundServer(_slow_jwks(0.1, served)) as server:
        keys = PublishedKeys(server.url + JWKS_PATH)

        found = await asyncio.gather(*(keys.key(key_id(KEY)) for _ in range(5)))

    assert len(served) == 1
    assert {k.public_numbers() for k in found} == {KEY.public_numbers()}


@pytest.mark.anyio
async def test_callers_arriving_as_the_first_fetch_ends_are_given_its_keys():
    """A caller checking between the fetch's end and its bookkeeping (a later turn of the event
    loop) once found the new keys with no time they stay usable: refused as unavailable - the
    first lookup of every connector's life."""
    with BackgroundServer(_slow_jwks(0.05, [])) as server:
        keys = PublishedKeys(server.url + JWKS_PATH)
        first = asyncio.ensure_future(keys.key(key_id(KEY)))
        arriving = []
        while not first.done():
            arriving.append(asyncio.ensure_future(keys.key(key_id(KEY))))
            await asyncio.sleep(0)
        found = await asyncio.gather(first, *arriving, return_exceptions=True)

    assert [k for k in found if isinstance(k, BaseException)] == []


def test_a_connector_that_cannot_fetch_the_gateways_keys_answers_unavailable():
    """Not 401: nothing was found wrong with the request, and a 401 would send the gateway's
    operator looking for a fault in its keys. 503 UNAVAILABLE says try again (and counts towards
    the source's circuit); the backend is never asked either way. So for every request until a
    fetch succeeds, not only the one whose fetch failed: the next, a moment later, finds no fetch
    due yet, and no key held is no key known to be absent."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}{JWKS_PATH}"
    backend = RecordingBackend()
    verifier = RequestVerifier(PublishedKeys(closed, timeout_s=1), issuer=GATEWAY_ISSUER)
    app = create_connector_app(backend, source="health", verifier=verifier)
    answers = []
    with BackgroundServer(app) as server:
        for _ in range(2):
            body = lookup_body()
            answers.append(
                httpx.post(
                    server.url + LOOKUP_PATH,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "authorization": GATEWAY_SIGNER.authorization("health", body),
                    },
                )
            )

    assert [answer.status_code for answer in answers] == [503, 503]
    for answer in answers:
        error = ErrorResponse.model_validate_json(answer.content).error
        assert error.code is ErrorCode.UNAVAILABLE
        assert error.message == "The signer's published keys could not be fetched."
    assert backend.requests == []


def _jwk(public_key: object, kid: str) -> dict[str, object]:
    algorithm = RSAAlgorithm if isinstance(public_key, rsa.RSAPublicKey) else ECAlgorithm
    return algorithm.to_jwk(public_key, as_dict=True) | {"kid": kid}


@pytest.mark.anyio
async def test_a_signature_naming_a_published_key_es256_cannot_use_is_untrusted_not_a_fault():
    """A publisher (a connector's answers, a witness, the locator) serving an RSA or P-384 key
    under the id its signatures name: the check raised TypeError out of a lookup's fan-out,
    failing the whole lookup, where one untrusted answer is that source's status."""
    signer = ec.generate_private_key(ec.SECP256R1())
    body = b"{}"
    token = signed_token(signer, {"iss": "health"}, body)
    named = jwt.get_unverified_header(token)["kid"]
    others = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
        "p384": ec.generate_private_key(ec.SECP384R1()).public_key(),
    }
    for other in others.values():

        async def jwks(request: Request, other: object = other) -> Response:
            return JSONResponse({"keys": [_jwk(other, named)]})

        with BackgroundServer(Starlette(routes=[Route(JWKS_PATH, jwks)])) as server:
            keys = PublishedKeys(server.url + JWKS_PATH)
            with pytest.raises(TrustError):
                await verified_claims(token, keys, body, issuer="health", audience=None, leeway_s=5)
        with pytest.raises(TrustError):  # handed such a key directly
            await verified_claims(
                token, StaticKey(other), body, issuer="health", audience=None, leeway_s=5
            )
