"""The gateway's connections to federated parties: a lean HTTP/1.1 keep-alive pool.

Fan-out, owner notifications and the locator post bytes and read bytes through it
(`ConnectorTransport.post`, via gateway.exchange); witness delivery uses it under
`httpx.AsyncClient`, as an httpx transport. Every federated request is a POST of a few kilobytes
to a handful of known parties, answered in one small JSON body - a lookup makes three at once, and
the gateway is one Python thread. The general-purpose transports were most of its CPU per lookup:
httpcore checked every pooled connection with a poll() on each request and release (20% at 16
concurrent lookups, growing with the pool), and aiohttp under httpx (httpx-aiohttp) translated
every request and answer between the two libraries' models and wrote headers and body apart
(still a third of the event loop's CPU per lookup, docs/benchmarks.md). Here a request is one
buffer written once, the answer is parsed by httptools (llhttp, the parser uvicorn serves with),
and a connection waits in a plain list until reused.

What it does: HTTP/1.1 over TCP or TLS (the connector TLS context, client certificates
included), keep-alive with `httpx.Limits` (at most `max_connections` requests in flight - more
wait for a place, up to the pool timeout - and at most `max_keepalive_connections` idle
connections, each kept `keepalive_expiry` seconds), fixed-length, chunked and read-to-close
answers, httpx's connect / read / pool timeouts, tunnels through an HTTP proxy (gateway.proxy).
What it does not: HTTP/2, HEAD (an answer's length could not be told from its headers),
`Expect: 100-continue`.

Errors are exact, as fan-out needs them: only a real timeout is a timeout; a connection that
could not be made is a ConnectError with the OSError as its cause (so a refused connection is
recognised and retried), and a connection broken or spoken to wrongly later is a
RemoteProtocolError (both FAILED). A reused connection that the server had closed while it sat
idle (a keep-alive race: the server's idle timeout expired as the request left) is replaced once
by a new connection; every federated request is idempotent (a lookup by its request id, a
notification by its message id, a checkpoint by its number).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Final, cast

import httptools
import httpx

from connectors.tls import ReloadingContext
from gateway.proxy import Proxies, Proxy, tunnel

_Origin = tuple[bytes, str, int]

DEFAULT_LIMITS: Final = httpx.Limits(max_connections=200, max_keepalive_connections=50)

MAX_HEAD_BYTES: Final = 64 * 1024
"""The most of an answer's head (status line, headers, interim answers) read: a server sending
headers without end held ~380 MB a second of a source's budget, and an owner notification's
receiver as much, where the body is capped."""

PAUSE_AT_BYTES: Final = 1 << 20
"""An answer buffered past this, not yet read by its caller, stops reading from the socket."""


class _Stale(Exception):
    """A reused connection closed before any byte of its answer arrived."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, then yields its answer's head and body."""

    made_with: ssl.SSLContext | None = None
    """The TLS context its handshake used (None over plain http)."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.reused = False
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._in_flight = False
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._head_bytes = 0
        self._informational = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._keep_alive = False
        self._received = False
        self._until_close = False
        self._error: httpx.TransportError | None = None
        self._stale = False

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Each request is one write: Nagle's algorithm would hold it for the last ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self._in_flight:  # nothing was asked: a server speaking out of turn
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(f"malformed answer: {error}")
            return
        if not self._head_done:  # a read the head did not end in: all head (or interim answers)
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(f"the answer's head is over {MAX_HEAD_BYTES} bytes")

    def _fail(self, problem: str) -> None:
        """End the answer in a protocol error, and the connection with it."""
        self._error = httpx.RemoteProtocolError(problem)
        self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._head_done and self._until_close and not self._complete:
            self._complete = True  # an answer with neither length nor chunks ends with the stream
        elif self._in_flight and not self._complete and self._error is None:
            self._stale = not self._received
            self._error = httpx.RemoteProtocolError(
                "the connection closed mid-answer"
                if self._received
                else "the connection closed before any answer"
            )
            self._error.__cause__ = exc
        self._in_flight = False
        self._wake()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # more after the answer, unasked: the connection is not reused
            self._keep_alive = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer: the real one follows
            self._informational = True
            self._headers, self._reason = [], b""
            return
        self._status = status
        names = {name.lower() for name, _ in self._headers}
        self._until_close = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and status not in (204, 304)
        )
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_AT_BYTES and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()  # only valid until the next message
        self._in_flight = False
        self._wake()

    # --- the request -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self._reset()
        self._in_flight = True
        self._transport.write(data)

    async def head(self, within_s: float | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The answer's status, reason and headers; raises _Stale or an httpx error."""
        while not self._head_done:
            self._raise_error()
            await self._wait(within_s)
        return self._status, self._reason, self._headers

    async def chunk(self, within_s: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self._chunks:
            if self._complete:
                return None
            self._raise_error()
            await self._wait(within_s)
        chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    @property
    def reusable(self) -> bool:
        """The answer was read to its end and both sides keep the connection open."""
        return self._complete and self._keep_alive and not self._closed

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()
        self._closed = True

    def _raise_error(self) -> None:
        if self._error is None:
            return
        if self._stale and self.reused:
            raise _Stale
        raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, within_s: float | None) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = None if within_s is None else self._loop.call_later(within_s, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


async def _tunnelled(origin: _Origin, proxy: Proxy, tls: ssl.SSLContext | None) -> _Connection:
    """A connection to `origin` through `proxy`'s CONNECT tunnel, with TLS inside it if `tls`."""
    _, host, port = origin
    transport, protocol = await tunnel(proxy, host, port)
    if tls is not None:
        try:
            secured = await asyncio.get_running_loop().start_tls(
                transport, protocol, tls, server_hostname=host
            )
        except BaseException:
            transport.close()
            raise
        if secured is None:  # the tunnel closed during the handshake
            raise httpx.ConnectError(f"the tunnel to {host}:{port} closed during TLS set-up")
        transport = secured
    connection = _Connection(origin)
    transport.set_protocol(connection)
    connection.connection_made(transport)
    return connection


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout("no answer within the read timeout"))


class _Body(httpx.AsyncByteStream):
    """An answer's body, read from its connection; closing it gives the connection back."""

    def __init__(
        self,
        connection: _Connection,
        within_s: float | None,
        release: Callable[[_Connection], None],
    ) -> None:
        self._connection = connection
        self._within_s = within_s
        self._release: Callable[[_Connection], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._connection.chunk(self._within_s)) is not None:
            yield chunk

    async def aclose(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self._connection)


class ConnectorTransport(httpx.AsyncBaseTransport):
    """The gateway's connections to federated parties (connectors, the locator, witnesses)."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxies: Proxies | None = None,
    ) -> None:
        """`tls` verifies https parties (and may carry a client certificate); without it, the
        system's trusted roots, loaded at the first https connection. `proxies`: the
        environment's (HTTPS_PROXY, NO_PROXY, ...) unless given."""
        self._tls = tls
        self._proxies = Proxies.from_environment() if proxies is None else proxies
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._max_in_flight = limits.max_connections
        self._in_flight = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """For `httpx.AsyncClient` users (witness delivery and listings)."""
        if request.method == "HEAD":
            raise httpx.UnsupportedProtocol("HEAD is not supported by the connector transport")
        origin = self._origin(request.url)
        timeouts = request.extensions.get("timeout", {})
        data = _serialised(request, await request.aread())
        connection, status, reason, headers = await self._exchanged(origin, data, timeouts)
        return httpx.Response(
            status,
            headers=headers,
            stream=_Body(connection, timeouts.get("read"), self._release),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.strip()},
        )

    async def post(
        self,
        url: httpx.URL,
        body: bytes,
        headers: Mapping[str, str],
        max_bytes: int,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes | None]:
        """POST `body` with `headers` (plus Host and Content-Length); the answer's status, headers
        and body - None for a body longer than `max_bytes`, which is not read any further.

        Bytes in, bytes out, for the federated exchanges that need nothing else (gateway.exchange):
        building and reading httpx's Request and Response cost ~30 us of the ~90 a request
        costs the gateway's one thread."""
        origin = self._origin(url)
        data = _posted(url, headers, body)
        connection, status, _, answer_headers = await self._exchanged(origin, data, timeouts)
        chunks: list[bytes] = []
        size = 0
        try:
            while (chunk := await connection.chunk(timeouts.get("read"))) is not None:
                size += len(chunk)
                if size > max_bytes:
                    return status, answer_headers, None
                chunks.append(chunk)
        finally:
            self._release(connection)  # closed instead when its answer was not read to the end
        return status, answer_headers, b"".join(chunks)

    def _origin(self, url: httpx.URL) -> _Origin:
        if self._closed:
            raise RuntimeError("the transport is closed")
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        return scheme, url.host, url.port or (443 if scheme == b"https" else 80)

    async def _exchanged(
        self, origin: _Origin, data: bytes, timeouts: Mapping[str, float | None]
    ) -> tuple[_Connection, int, bytes, list[tuple[bytes, bytes]]]:
        """`data` sent, and the answer's head read, on a connection now in use."""
        await self._take_place(timeouts.get("pool"))
        connection: _Connection | None = None
        try:
            connection = await self._connection(origin, timeouts.get("connect"))
            connection.send(data)
            try:
                status, reason, headers = await connection.head(timeouts.get("read"))
            except _Stale:
                # The server closed this idle connection as the request left: a new one.
                connection = await self._connect(origin, timeouts.get("connect"))
                connection.send(data)
                status, reason, headers = await connection.head(timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._give_place()
            raise
        return connection, status, reason, headers

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def _take_place(self, within_s: float | None) -> None:
        """A place among `max_connections` requests in flight, first come first served."""
        if self._max_in_flight is None or (
            self._in_flight < self._max_in_flight and not self._waiting
        ):
            self._in_flight += 1
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting.append(place)
        try:
            async with asyncio.timeout(within_s):
                await place  # given by _give_place, which counted it in flight for us
        except BaseException as error:
            if place.done() and not place.cancelled():
                self._give_place()  # given just as the wait ended: pass it on
            elif place in self._waiting:  # not yet passed over by _give_place
                self._waiting.remove(place)
            if isinstance(error, TimeoutError):
                raise httpx.PoolTimeout("no connection free within the pool timeout") from None
            raise

    def _give_place(self) -> None:
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)  # the place changes hands: still counted in flight
                return
        self._in_flight -= 1

    async def _connection(self, origin: _Origin, within_s: float | None) -> _Connection:
        idle = self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            tls = self._tls_for(origin)
            while idle:
                connection = idle.pop()  # the most recently used: the least likely to be stale
                self._idle_count -= 1
                # A connection made before the TLS files changed (a CA's new revocation list,
                # say) is not reused: the party is checked again under the new ones.
                fresh = not self._expired(connection, now) and connection.made_with is tls
                if fresh and not connection.closed:
                    connection.reused = True
                    return connection
                connection.close()
        return await self._connect(origin, within_s)

    def _tls_for(self, origin: _Origin) -> ssl.SSLContext | None:
        """The context a handshake with `origin` would use now; None over plain http."""
        if origin[0] != b"https":
            return None
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls.current if isinstance(self._tls, ReloadingContext) else self._tls

    async def _connect(self, origin: _Origin, within_s: float | None) -> _Connection:
        scheme, host, port = origin
        tls = self._tls_for(origin)
        loop = asyncio.get_running_loop()
        proxy = self._proxies.for_party(scheme.decode(), host, port)
        try:
            async with asyncio.timeout(within_s):
                if proxy is not None:
                    connection = await _tunnelled(origin, proxy, tls)
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(origin),
                        host,
                        port,
                        ssl=tls,
                        server_hostname=host if tls is not None else None,
                    )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as error:  # refused, unreachable, no such name, TLS handshake failed
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {error}") from error
        connection.made_with = tls
        return connection

    def _release(self, connection: _Connection) -> None:
        self._give_place()
        full = self._max_idle is not None and self._idle_count >= self._max_idle
        if self._closed or full or not connection.reusable:
            connection.close()
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        idle = self._idle.setdefault(connection.origin, [])
        while idle and self._expired(idle[0], now):  # the oldest first: let expired ones go
            idle.pop(0).close()
            self._idle_count -= 1
        idle.append(connection)
        self._idle_count += 1

    def _expired(self, connection: _Connection, now: float) -> bool:
        return self._expiry is not None and now - connection.idle_since > self._expiry


def _posted(url: httpx.URL, headers: Mapping[str, str], body: bytes) -> bytes:
    """A POST as it goes on the wire, with the Host and Content-Length headers httpx.Request
    would add."""
    lines = [(b"Host", url.netloc)]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise httpx.LocalProtocolError("a header holds a line break")
        lines.append((name.encode("ascii"), value.encode("ascii")))
    lines.append((b"Content-Length", b"%d" % len(body)))
    return _wire(b"POST", url.raw_path, lines, body)


def _serialised(request: httpx.Request, body: bytes) -> bytes:
    """An httpx request as it goes on the wire; a streamed (chunked) body, read whole, as one
    chunk and then the last."""
    if any(
        name.lower() == b"transfer-encoding" and value.lower() == b"chunked"
        for name, value in request.headers.raw
    ):
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return _wire(request.method.encode("ascii"), request.url.raw_path, request.headers.raw, body)


def _wire(method: bytes, path: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The request line, headers and body in one buffer, to be written at once."""
    head = [method, b" ", path, b" HTTP/1.1\r\n"]
    for name, value in headers:
        head += (name, b": ", value, b"\r\n")
    head += (b"\r\n", body)
    return b"".join(head)
