"""A witness's answers are read within bounds: a broken or hostile witness streaming without end is
refused once past MAX_ANSWER_BYTES, whether the gateway is reading its listing (as `audit verify
--witness` does) or its receipt for checkpoints sent, and is asked for an uncompressed answer; one
dripping its answer is given up on when the witness's timeout has passed. Real servers on
loopback; the gateway's own transport and dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from connectors.serving import BackgroundServer
from connectors.witness import MAX_BATCH, WITNESS_PATH, SignedCheckpoint, WitnessListing
from gateway.audit import SqliteAuditStore, Witness, WitnessDispatcher
from gateway.audit.witness_check import compare_with_witnesses
from gateway.audit.witnessing import MAX_ANSWER_BYTES, WitnessError, witnessed
from gateway.transport import ConnectorTransport
from tests.factories import CHECKPOINT_KEY, audit_record
from tests.stack import GATEWAY_ISSUER, GATEWAY_SIGNER

CHUNK = b"[" * 64 * 1024
ENOUGH_S = 30
"""The witness's timeout where the cap is tested: reading past 4 MiB must end at the cap, not the
deadline, however busy the machine."""
SERVED_AT_MOST = 8 * MAX_ANSWER_BYTES
"""The endless witness stops by itself past this, so a gateway that read on would still end."""


class _EndlessWitness:
    """Answers every listing and every delivery with a JSON-looking body that does not end (until
    SERVED_AT_MOST), and notes what each request asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []
        """Each request's method and Accept-Encoding."""

    async def answer(self, request: Request) -> Response:
        self.asked.append((request.method, request.headers.get("accept-encoding")))
        await request.body()
        return StreamingResponse(self._body(), media_type="application/json")

    async def _body(self) -> AsyncIterator[bytes]:
        for _ in range(SERVED_AT_MOST // len(CHUNK)):
            yield CHUNK


@pytest.fixture
def endless() -> Iterator[tuple[_EndlessWitness, str]]:
    witness = _EndlessWitness()
    app = Starlette(routes=[Route(WITNESS_PATH, witness.answer, methods=["GET", "POST"])])
    with BackgroundServer(app) as server:
        yield witness, server.url + WITNESS_PATH


async def _with_client(run: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """`run` with a client over the gateway's own transport, as witnessing uses it."""
    async with httpx.AsyncClient(transport=ConnectorTransport()) as client:
        await run(client)


def test_a_listing_dripping_past_the_witness_timeout_is_given_up_on():
    async def drip(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(40):  # 4 s, then a listing: read that long, it would be accepted
                yield b" "
                await asyncio.sleep(0.1)
            yield b'{"log": "gw-1", "checkpoints": [], "first_seen_seq": null, "conflicts": []}'

        return StreamingResponse(body(), media_type="application/json")

    app = Starlette(routes=[Route(WITNESS_PATH, drip)])
    with BackgroundServer(app) as server:

        async def read(client: httpx.AsyncClient) -> None:
            await witnessed(client, server.url + WITNESS_PATH, "gw-1", timeout_s=0.5)

        with pytest.raises(WitnessError, match="no answer in time"):
            asyncio.run(_with_client(read))


def test_a_listing_past_the_cap_is_refused_without_reading_it_all(endless):
    witness, url = endless

    async def read(client: httpx.AsyncClient) -> None:
        await witnessed(client, url, "gw-1", timeout_s=ENOUGH_S)

    with pytest.raises(WitnessError, match=f"larger than {MAX_ANSWER_BYTES} bytes"):
        asyncio.run(_with_client(read))
    assert witness.asked == [("GET", "identity")]


def test_a_receipt_past_the_cap_leaves_the_witness_failing_not_the_gateway_buffering(
    endless, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    witness, url = endless
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    try:
        asyncio.run(store.append(audit_record("a-1")))
        assert store.seal() is not None

        async def send(client: httpx.AsyncClient) -> None:
            dispatcher = WitnessDispatcher(
                store,
                client,
                GATEWAY_SIGNER,
                [Witness("endless", url, timeout_s=ENOUGH_S, verifier=None)],
                log=GATEWAY_ISSUER,
                seal_s=60,
                poll_s=60,
            )
            await dispatcher.send()

        with caplog.at_level(logging.WARNING, logger="childlookup.witness"):
            asyncio.run(_with_client(send))
    finally:
        store.close()

    [retry] = [r for r in caplog.records if getattr(r, "event", None) == "audit_witness_retry"]
    assert retry.context == {  # type: ignore[attr-defined]
        "witness": "endless",
        "error": f"its answer is larger than {MAX_ANSWER_BYTES} bytes",
    }
    # One delivery (the newest checkpoint, to learn what the witness holds), asking for an
    # uncompressed answer; nothing was sent after the receipt that could not be read.
    assert witness.asked == [("POST", "identity")]


def _listing(seqs: Iterable[int]) -> Response:
    """A listing of made-up checkpoints numbered `seqs` (their signatures are never checked
    before the listing is read whole)."""
    made = [
        SignedCheckpoint(
            seq=seq,
            records=seq,
            head="a" * 64,
            at="2026-11-29T12:00:00.000000+00:00",
            prev="0" * 64,
            key="0" * 16,
            signature="0" * 128,
        )
        for seq in seqs
    ]
    listing = WitnessListing(log="gw-1", checkpoints=made, first_seen_seq=1, conflicts=[])
    return Response(listing.model_dump_json(), media_type="application/json")


def test_a_witness_listing_pages_without_end_is_read_only_past_the_log_s_latest(tmp_path):
    """Every page full and each past the last (a broken or hostile witness): `audit verify
    --witness` had read on for ever. It stops a page past the log's latest checkpoint, and names
    the checkpoints the witness holds that the log never made."""
    served: list[int] = []

    async def pages(request: Request) -> Response:
        after = int(request.query_params["after"])
        served.append(after)
        # Ends, so that a reader reading on for ever still stops.
        seqs = range(after + 1, after + 1 + MAX_BATCH) if after < 20 * MAX_BATCH else ()
        return _listing(seqs)

    store = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    app = Starlette(routes=[Route(WITNESS_PATH, pages)])
    try:
        with BackgroundServer(app) as server:
            (verdict,) = asyncio.run(
                compare_with_witnesses(store, [server.url], "gw-1", CHECKPOINT_KEY)
            )
    finally:
        store.close()
    assert served == [0, MAX_BATCH]
    assert not verdict.ok


def test_a_witness_page_out_of_order_or_longer_than_a_page_is_refused(tmp_path):
    """Ordered so that each page moves on by one checkpoint (the last first), a listing would be
    read one request a checkpoint up to `read_to`."""

    async def pages(request: Request) -> Response:
        after = int(request.query_params["after"])
        # Ends after a few pages, so that a reader taking them in would still stop.
        seqs = [*range(after + 2, after + 1 + MAX_BATCH), after + 1] if after < 5 else []
        return _listing(seqs)

    app = Starlette(routes=[Route(WITNESS_PATH, pages)])
    with BackgroundServer(app) as server:

        async def read(client: httpx.AsyncClient) -> None:
            await witnessed(client, server.url + WITNESS_PATH, "gw-1", timeout_s=ENOUGH_S)

        with pytest.raises(WitnessError, match="disordered"):
            asyncio.run(_with_client(read))
