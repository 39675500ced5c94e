"""How every server here (gateway, connectors, locator) holds its connections
(connectors.serving): a client that does not finish a request in time loses its connection."""

import socket
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors import serving
from connectors.serving import BackgroundServer

READ_S = 0.4


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"length": len(await request.body())})


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(serving, "REQUEST_READ_S", READ_S)
    with BackgroundServer(Starlette(routes=[Route("/", _echo, methods=["POST"])])) as running:
        yield running


def _connect(server: BackgroundServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes `sock` (reads until EOF)."""
    started = time.monotonic()
    while sock.recv(4096):
        pass
    return time.monotonic() - started


REQUEST = (
    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n"
)


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST / HTTP/1.1\r\nhost: x\r\n", REQUEST + b'{"a":'],
    ids=["nothing", "half the head", "half the body"],
)
def test_a_connection_that_does_not_finish_its_request_in_time_is_closed(server, sent):
    with _connect(server) as sock:
        sock.sendall(sent)
        assert _closed_after(sock) < READ_S + 2


def test_bytes_between_requests_start_the_deadline_again(server):
    """uvicorn's keep-alive timer stops at any byte: a bare CRLF after an answer kept the
    connection open with no deadline at all."""
    with _connect(server) as sock:
        sock.sendall(REQUEST + b'{"a": 12}')
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"\r\n")
        assert _closed_after(sock) < READ_S + 2


def test_a_request_sent_in_time_is_answered_and_its_connection_kept(server):
    with _connect(server) as sock:
        for _ in range(2):
            sock.sendall(REQUEST[:20])
            time.sleep(READ_S / 4)
            sock.sendall(REQUEST[20:] + b'{"a": 12}')
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(b'{"length":9}')
            time.sleep(READ_S * 1.5)  # idle past the read deadline: uvicorn's keep-alive holds


def test_a_request_head_over_the_limit_is_refused_431_and_its_connection_closed(server):
    with _connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (serving.MAX_HEAD_BYTES + 1))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_body_bigger_than_the_head_limit_is_no_head(server):
    """Head and body arrive in the same reads: only bytes read before the head is complete
    count towards its limit."""
    body = b'"' + b"b" * (3 * serving.MAX_HEAD_BYTES) + b'"'
    head = f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    with _connect(server) as sock:
        for _ in range(2):  # and the next request's head on the same connection
            sock.sendall(head + body)
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(b'{"length":%d}' % len(body))


def _chunked(head: bytes, chunks: list[bytes], trailers: bytes = b"") -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + framed + b"0\r\n" + trailers + b"\r\n"


CHUNKED = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"


def test_chunked_trailers_count_with_the_headers(server):
    """Trailers after the last chunk are headers too (uvicorn adds them to the request's), and
    were read without bound."""
    trailers = b"".join(b"x-t%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
    with _connect(server) as sock:
        sock.sendall(_chunked(CHUNKED, [b'"abc"'], trailers))
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_chunked_body_bigger_than_the_header_limit_is_answered(server):
    body = b'"' + b"b" * (2 * serving.MAX_HEAD_BYTES) + b'"'
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    with _connect(server) as sock:
        sock.sendall(_chunked(CHUNKED, chunks))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b'{"length":%d}' % len(body))
