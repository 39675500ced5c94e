"""The fan-out transport against real sockets on loopback, each server answering exact bytes."""

import asyncio
import contextlib

import httpx
import pytest

from connectors.serving import free_port
from gateway.exchange import Malformed, post_capped
from gateway.transport import ConnectorTransport

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class RawServer:
    """Reads each request whole, then answers with `answer(n)` for the n-th request on that
    connection (bytes to send; None closes the connection without a word)."""

    def __init__(self, answer, *, close_after=None):
        self.answer, self.close_after = answer, close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = httpx.URL(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x")
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            for n in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answer(n)
                if answer is None:
                    break
                if isinstance(answer, float):
                    await asyncio.sleep(answer)
                    continue
                writer.write(answer)
                await writer.drain()
                if self.close_after is not None and n + 1 >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _post(transport, url, body=b"{}"):
    return await post_capped(transport, url, body, {"content-type": "application/json"}, 1000)


@pytest.mark.anyio
async def test_one_connection_carries_request_after_request():
    async with RawServer(lambda n: OK) as server, ConnectorTransport() as transport:
        for _ in range(5):
            reply = await _post(transport, server.url)
            assert (reply.status_code, reply.payload) == (200, b'{"ok":true}')
    assert server.connections == 1
    assert len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first
    assert first.endswith(b"\r\n\r\n{}")


@pytest.mark.anyio
async def test_a_connection_that_sent_more_than_its_answer_is_not_reused():
    """Half of a second answer sent after the first, unasked: reused, the connection gave the
    next request that half to finish, and the source timed out."""
    answers = [OK + b"HTTP/1.1 200 OK\r\nContent-Le", OK]
    async with RawServer(lambda n: answers[min(n, 1)]) as server, ConnectorTransport() as transport:
        for _ in range(2):
            reply = await _post(transport, server.url)
            assert (reply.status_code, reply.payload) == (200, b'{"ok":true}')
    assert server.connections == 2


@pytest.mark.anyio
async def test_an_answer_past_the_cap_is_refused_and_its_connection_not_reused():
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 1500  # and no more
    answers = iter([big, OK])  # one per request, whichever connection it comes on
    async with RawServer(lambda n: next(answers)) as server, ConnectorTransport() as t:
        with pytest.raises(Malformed):
            await _post(t, server.url)  # a cap of 1000 bytes
        reply = await _post(t, server.url)
    assert reply.payload == b'{"ok":true}'
    assert server.connections == 2


@pytest.mark.anyio
async def test_a_header_holding_a_line_break_is_never_sent():
    async with RawServer(lambda n: OK) as server, ConnectorTransport() as transport:
        for headers in ({"x-request-id": "a\r\nx-admin: yes"}, {"x-a\nb": "c"}):
            with pytest.raises(httpx.LocalProtocolError):
                await post_capped(transport, server.url, b"{}", headers, 1000)
        await _post(transport, server.url)
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_chunked_and_read_to_close_answers_are_read_whole():
    chunked = (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    to_close = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"b":2}'
    async with (
        RawServer(lambda n: chunked) as chunks,
        RawServer(lambda n: to_close, close_after=1) as closing,
        ConnectorTransport() as transport,
    ):
        assert (await _post(transport, chunks.url)).payload == b'{"a":1}'
        assert (await _post(transport, chunks.url)).payload == b'{"a":1}'
        assert (await _post(transport, closing.url)).payload == b'{"b":2}'
        assert (await _post(transport, closing.url)).payload == b'{"b":2}'
    assert chunks.connections == 1  # kept alive
    assert closing.connections == 2  # the server said it closes: not reused


@pytest.mark.anyio
async def test_an_interim_answer_is_skipped_for_the_real_one():
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    async with RawServer(lambda n: interim) as server, ConnectorTransport() as transport:
        for _ in range(2):
            reply = await _post(transport, server.url)
            assert (reply.status_code, reply.payload) == (200, b'{"ok":true}')
    assert server.connections == 1


@pytest.mark.anyio
async def test_a_kept_connection_the_server_closed_is_replaced_without_an_error():
    """The keep-alive race: the server closes an idle connection as the next request leaves."""
    async with (
        RawServer(lambda n: OK if n == 0 else None) as server,
        ConnectorTransport() as transport,
    ):
        for _ in range(3):
            assert (await _post(transport, server.url)).status_code == 200
    assert server.connections == 3
    assert len(server.requests) == 5  # each reuse was tried once, then sent again on a new one


@pytest.mark.anyio
async def test_a_new_connection_closed_without_an_answer_is_an_error_not_retried():
    async with RawServer(lambda n: None) as server, ConnectorTransport() as transport:
        with pytest.raises(httpx.RemoteProtocolError, match="before any answer"):
            await _post(transport, server.url)
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_an_answer_cut_short_or_malformed_is_a_protocol_error():
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"partial'
    async with (
        RawServer(lambda n: cut, close_after=1) as cutting,
        RawServer(lambda n: b"NONSENSE\r\n\r\n") as garbled,
        ConnectorTransport() as transport,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
            await _post(transport, cutting.url)
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await _post(transport, garbled.url)


@pytest.mark.anyio
async def test_an_answer_whose_head_runs_past_its_limit_is_a_protocol_error():
    """Headers without end were read without bound (~380 MB a second); the body alone was
    capped. A head of the usual size, in many small reads, is read as ever."""
    endless = b"HTTP/1.1 200 OK\r\n" + b"x-a: " + b"b" * 200 + b"\r\n" * 1
    flood = endless + b"".join(b"x-%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))
    async with (
        RawServer(lambda n: flood) as flooding,
        RawServer(lambda n: OK) as plain,
        ConnectorTransport() as transport,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="head is over"):
            await _post(transport, flooding.url)
        assert (await _post(transport, plain.url)).payload == b'{"ok":true}'


@pytest.mark.anyio
async def test_a_refused_connection_is_a_connect_error_caused_by_the_refusal():
    url = httpx.URL(f"http://127.0.0.1:{free_port()}/v1/x")
    async with ConnectorTransport() as transport:
        with pytest.raises(httpx.ConnectError) as raised:
            await _post(transport, url)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


@pytest.mark.anyio
async def test_no_answer_within_the_read_timeout_is_a_read_timeout():
    async with RawServer(lambda n: 5.0) as server, ConnectorTransport() as transport:
        request = httpx.Request(
            "POST",
            server.url,
            content=b"{}",
            extensions={"timeout": {"connect": 1.0, "read": 0.1, "pool": 1.0}},
        )
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)


@pytest.mark.anyio
async def test_requests_past_the_limit_wait_for_a_place_then_time_out():
    gate = asyncio.Event()

    async def slow(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        await gate.wait()
        writer.write(OK)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = httpx.URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    transport = ConnectorTransport(None, limits)

    def request(pool_s=5.0):
        timeouts = {"connect": 1.0, "read": 5.0, "pool": pool_s}
        return httpx.Request("POST", url, content=b"{}", extensions={"timeout": timeouts})

    try:
        first = [asyncio.create_task(transport.handle_async_request(request())) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(request(pool_s=0.1))  # two in flight
        waiting = asyncio.create_task(transport.handle_async_request(request()))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        gate.set()
        for response in await asyncio.gather(*first):
            assert (await response.aread()) == b'{"ok":true}'
            await response.aclose()  # gives its place to the one waiting
        response = await waiting
        assert (await response.aread()) == b'{"ok":true}'
        await response.aclose()
    finally:
        await transport.aclose()
        server.close()


@pytest.mark.anyio
async def test_a_streamed_request_body_goes_as_one_chunk_then_the_last():
    received = []

    async def serve(reader, writer):
        received.append(await reader.readuntil(b"\r\n0\r\n\r\n"))
        writer.write(OK)
        await writer.drain()
        writer.close()

    async def parts():
        yield b'{"a"'
        yield b":1}"

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"
    try:
        async with httpx.AsyncClient(transport=ConnectorTransport()) as client:
            response = await client.post(url, content=parts())
    finally:
        server.close()
    assert response.content == b'{"ok":true}'
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b'7\r\n{"a":1}\r\n0\r\n\r\n'
