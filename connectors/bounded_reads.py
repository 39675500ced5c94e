"""Another party's HTTP answer, read whole only while it stays small and quick.

A publisher's keys, an identity provider's discovery document, a witness's receipt: each is a
few kilobytes from a server the reader does not run. Read as httpx reads by default, one that
streams without end makes the reader buffer without end, and one that drips a byte now and then
(each within httpx's timeout between reads) holds the reader for as long as it likes. Here the
body is read piece by piece to `max_bytes`, the whole exchange is bounded by `within_s`, and the
answer is asked for uncompressed: one compressed piece could unpack to far more than the cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import httpx

MAX_DOCUMENT_BYTES: Final = 256 * 1024
"""The most read of a JWKS or an OpenID discovery document: a few kilobytes in practice (one with
a dozen keys and their certificate chains, ~20 KB)."""

UNCOMPRESSED: Final = {"accept-encoding": "identity"}


class AnswerTooLarge(ValueError):
    """The answer went on past the most the reader takes; it was not read further."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the answer is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


async def read_answer(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    within_s: float,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> tuple[httpx.Response, bytes]:
    """The answer to one request and its body, whatever its status. AnswerTooLarge past
    `max_bytes`; httpx.TimeoutException when it is not whole within `within_s` (each of httpx's
    phases - connecting, each write, each read - is given that long too); any other
    httpx.HTTPError when the server cannot be reached or read."""
    request = client.build_request(
        method, url, headers={**UNCOMPRESSED, **(headers or {})}, timeout=within_s, **options
    )
    try:
        async with asyncio.timeout(within_s):
            response = await client.send(request, stream=True)
            try:
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    # Sent compressed though asked not to: one piece could unpack to gigabytes
                    # before the cap is looked at.
                    raise httpx.DecodingError(
                        f"the answer is {encoding}-encoded; it was asked for uncompressed",
                        request=request,
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise AnswerTooLarge(max_bytes)
            finally:
                await response.aclose()
    except TimeoutError:
        raise httpx.ReadTimeout(
            f"the answer was not whole within {within_s} s", request=request
        ) from None
    return response, bytes(body)
