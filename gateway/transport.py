"""The HTTP transport under the gateway's httpx client: aiohttp's connection pool, exact errors.

httpx stays the client API; its default pool (httpcore) checked every pooled connection for
liveness with a poll() on each request and release, which was 20% of the gateway's CPU at 16
concurrent lookups and grew with the pool (docs/benchmarks.md). aiohttp's pool does not, and its
HTTP parser is compiled: through httpx-aiohttp's transport the same lookups ran at ~3x the rate.

httpx-aiohttp maps every aiohttp connection error, a server closing the connection mid-answer
included, to httpx's ConnectTimeout, which fan-out would report as TIMED_OUT. Here only a real
timeout stays a timeout; a connection that could not be made is a ConnectError and one broken
later a RemoteProtocolError (both FAILED), with the aiohttp error (and a refused connection under
it) kept as the cause, so a refused connection is still recognised and retried.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class ConnectorTransport(AiohttpTransport):
    def __init__(self, tls: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=tls, limits=limits, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.ConnectTimeout as error:
            raise _precise(error) from error.__cause__
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_PreciseStream(response.stream),
            request=request,
            extensions=response.extensions,
        )


class _PreciseStream(httpx.AsyncByteStream):
    """The answer's body, with the same error mapping while it is read."""

    def __init__(self, stream: httpx.AsyncByteStream | httpx.SyncByteStream) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.ConnectTimeout as error:
            raise _precise(error) from error.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()


def _precise(error: httpx.ConnectTimeout) -> httpx.TransportError:
    cause = error.__cause__
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return error
    if isinstance(cause, aiohttp.ClientConnectorError):  # no connection made: refused, no route
        return httpx.ConnectError(str(error))
    return httpx.RemoteProtocolError(str(error))
