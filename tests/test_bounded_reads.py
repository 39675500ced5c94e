"""Another party's answers read within bounds (connectors.bounded_reads): one streaming without end
is refused past the cap, one dripping without end is given up on when the exchange's time is up,
and the readers built on it - a publisher's keys, the identity provider's discovery document -
fail as they fail when the party cannot be reached. Real servers on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from connectors.bounded_reads import MAX_DOCUMENT_BYTES, AnswerTooLarge, read_answer
from connectors.serving import BackgroundServer
from connectors.trust import KeysUnavailable, PublishedKeys, jwks_document, key_id
from gateway.identity_provider import ProviderDiscovery

KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
JWKS = json.dumps(jwks_document([KEY])).encode()
ISSUER = "http://127.0.0.1"
DISCOVERY = json.dumps(
    {
        "issuer": ISSUER,
        "authorization_endpoint": "http://127.0.0.1/authorize",
        "token_endpoint": "http://127.0.0.1/token",
        "code_challenge_methods_supported": ["S256"],
    }
).encode()
CHUNK = b" " * 64 * 1024
DEEP = b'{"keys": ' + b"[" * 5000 + b"]" * 5000 + b"}"
"""A JWKS nested past Python's recursion limit, in 10 KB."""
DRIP_S = 0.05
DRIPS = 80
"""A dripping answer is whole after DRIPS x DRIP_S = 4 s: long after any deadline the tests set, so
a reader without one would get it whole, and soon enough that the test still ends then."""
WITHIN_S = 0.5
"""The deadline for answers expected to run out of time."""
GENEROUS_S = 10.0
"""The deadline for answers expected to arrive: loopback on a busy CI machine can be slow."""


class _Party:
    """Answers /endless/<doc> with whitespace past the cap (to 4x it, so a reader that read on
    would still stop) and then the document, /drip/<doc> with whitespace a byte at a time and then
    the document, /plain/<doc> with the document; the documents are a JWKS, an OpenID discovery
    document, and a JSON array. Read whole, each would be accepted. Notes each Accept-Encoding."""

    def __init__(self) -> None:
        self.encodings: list[str | None] = []

    async def answer(self, request: Request) -> Response:
        self.encodings.append(request.headers.get("accept-encoding"))
        how, name = request.path_params["how"], request.path_params["doc"]
        document = {"jwks": JWKS, "discovery": DISCOVERY, "list": b"[]", "deep": DEEP}[name]
        if how == "plain":
            return Response(document, media_type="application/json")
        if how == "gzip":  # sent compressed, asked not to: 40 MB unpacked from ~40 KB
            bomb = gzip.compress(document + b" " * (40 << 20))
            headers = {"content-encoding": "gzip"}
            return Response(bomb, media_type="application/json", headers=headers)
        body = self._endless(document) if how == "endless" else self._drip(document)
        return StreamingResponse(body, media_type="application/json")

    async def _endless(self, document: bytes) -> AsyncIterator[bytes]:
        for _ in range(4 * MAX_DOCUMENT_BYTES // len(CHUNK)):
            yield CHUNK
        yield document

    async def _drip(self, document: bytes) -> AsyncIterator[bytes]:
        for _ in range(DRIPS):
            yield b" "
            await asyncio.sleep(DRIP_S)
        yield document


@pytest.fixture(scope="module")
def party() -> Iterator[tuple[_Party, str]]:
    served = _Party()
    app = Starlette(routes=[Route("/{how}/{doc}", served.answer)])
    with BackgroundServer(app) as server:
        yield served, server.url


async def _read(url: str, within_s: float = WITHIN_S) -> tuple[httpx.Response, bytes]:
    async with httpx.AsyncClient() as client:
        return await read_answer(
            client, "GET", url, max_bytes=MAX_DOCUMENT_BYTES, within_s=within_s
        )


def test_an_answer_within_bounds_is_read_whole_and_asked_for_uncompressed(party):
    served, url = party
    served.encodings.clear()

    response, body = asyncio.run(_read(f"{url}/plain/jwks", GENEROUS_S))

    assert (response.status_code, body) == (200, JWKS)
    assert served.encodings == ["identity"]


def test_an_answer_past_the_cap_is_refused(party):
    _, url = party
    with pytest.raises(AnswerTooLarge, match=f"larger than {MAX_DOCUMENT_BYTES} bytes"):
        asyncio.run(_read(f"{url}/endless/jwks", GENEROUS_S))


def test_an_answer_sent_compressed_though_asked_for_uncompressed_is_refused(party):
    """One compressed piece was unpacked whole before the cap was looked at (+200 MB for a
    256 KB cap)."""
    _, url = party
    with pytest.raises(httpx.DecodingError, match="gzip-encoded"):
        asyncio.run(_read(f"{url}/gzip/jwks", GENEROUS_S))


@pytest.mark.parametrize("path", ["gzip/jwks", "plain/deep"])
def test_a_publisher_sending_a_bomb_leaves_its_keys_unavailable(party, path):
    """Nested past the recursion limit, a JWKS raised RecursionError out of a lookup's fan-out,
    failing the whole lookup."""
    _, url = party
    keys = PublishedKeys(f"{url}/{path}", timeout_s=GENEROUS_S)
    with pytest.raises(KeysUnavailable):
        asyncio.run(keys.key(key_id(KEY)))


def test_an_answer_dripping_past_its_time_is_given_up_on(party):
    _, url = party
    with pytest.raises(httpx.TimeoutException, match=f"not whole within {WITHIN_S} s"):
        asyncio.run(_read(f"{url}/drip/jwks"))


WITHOUT_END = [("endless", GENEROUS_S), ("drip", WITHIN_S)]
"""Each answer without end, with a deadline that only the dripping one runs into."""


@pytest.mark.parametrize(("how", "within_s"), WITHOUT_END)
def test_a_publisher_answering_without_end_leaves_its_keys_unavailable(party, how, within_s):
    _, url = party
    keys = PublishedKeys(f"{url}/{how}/jwks", timeout_s=within_s)
    with pytest.raises(KeysUnavailable):
        asyncio.run(keys.key(key_id(KEY)))


def test_a_publisher_answering_with_no_json_object_leaves_its_keys_unavailable(party):
    _, url = party
    keys = PublishedKeys(f"{url}/plain/list", timeout_s=GENEROUS_S)
    with pytest.raises(KeysUnavailable):
        asyncio.run(keys.key(key_id(KEY)))


def test_a_publisher_within_bounds_gives_its_keys(party):
    _, url = party
    keys = PublishedKeys(f"{url}/plain/jwks", timeout_s=GENEROUS_S)
    found = asyncio.run(keys.key(key_id(KEY)))
    assert found.public_numbers() == KEY.public_numbers()


@pytest.mark.parametrize(("how", "within_s"), WITHOUT_END)
def test_a_discovery_document_without_end_leaves_sign_in_unavailable(
    party, how, within_s, caplog: pytest.LogCaptureFixture
):
    _, url = party
    discovery = ProviderDiscovery(f"{url}/{how}/discovery", ISSUER, timeout_s=within_s)

    with caplog.at_level(logging.WARNING, logger="childlookup.portal"):
        assert asyncio.run(discovery.endpoints()) is None

    [failed] = [r for r in caplog.records if getattr(r, "event", None) == "portal_discovery_failed"]
    assert failed.context["url"] == discovery.url  # type: ignore[attr-defined]


def test_a_discovery_document_within_bounds_gives_the_endpoints(party):
    _, url = party
    discovery = ProviderDiscovery(f"{url}/plain/discovery", ISSUER, timeout_s=GENEROUS_S)
    endpoints = asyncio.run(discovery.endpoints())
    assert endpoints is not None
    assert endpoints.token_endpoint == "http://127.0.0.1/token"
