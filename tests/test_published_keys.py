"""A publisher's keys fetched from its JWKS (connectors.trust.PublishedKeys), served for real on
loopback: a caller giving up mid-fetch must not leave the keys unfetched for the refresh
interval."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.serving import BackgroundServer
from connectors.trust import JWKS_PATH, PublishedKeys, jwks_document, key_id

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
