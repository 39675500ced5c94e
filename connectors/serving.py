"""Running ASGI apps on loopback: several in one process (the demo), or one in a background thread
(tests and benchmarks).

uvicorn installs its own signal handlers per server, so with several servers in one event loop only
the last one would hear Ctrl-C. Here one handler stops them all, and sockets are bound before the
servers start so that port 0 works and the chosen port is known up front. Any of them can serve
https, from an `ssl.SSLContext` built by `gateway.tls` (mutual TLS when it requires client
certificates).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

import uvicorn
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from connectors.tls import Held, ReloadingContext, Verdict

T = TypeVar("T")

REQUEST_READ_S = 20.0
"""How long a connection has to send a whole request, from its first byte (and to send a first
request at all, from opening): every request here is a small JSON body (`ServedHttp`)."""

MAX_HEAD_BYTES = 64 * 1024
"""The most a server reads of a request that is not its body - request line, headers, chunk
framing, trailers (`ServedHttp`): a bearer token and the usual headers take a few kilobytes."""

LAST_CALL_S = 1.0
"""How long a connection made under TLS files since replaced, and idle, has to send one last
request (answered with `Connection: close`) before it is closed."""


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it every response waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at this moment: for a subprocess to bind, or a dead endpoint."""
    sock = bind_socket(host, 0)
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def socket_url(sock: socket.socket, *, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


@dataclass(frozen=True)
class ServedApp:
    """An app to serve, with the socket it listens on, and its TLS context when it serves https."""

    name: str
    app: ASGIApp
    sock: socket.socket
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return socket_url(self.sock, tls=self.tls is not None)


class ReloadAwareHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, its connections held by the server's `ReloadingContext`: when
    new TLS files are taken up, each connection is judged against them (`connectors.tls.Verdict`),
    so that a client whose certificate a new revocation list names cannot go on over a connection
    it already held, while the others keep theirs.
    - Refused: a busy connection closes once its answer is sent (`Connection: close`: the request
      came before the new files did); an idle one closes at once.
    - Unsure (its client CAs changed): a busy connection closes the same way; an idle one answers
      one last request if it comes within `LAST_CALL_S`, then closes, or closes when that time is
      up. Closed at once, a request its client sent in that instant would be lost, and HTTP
      clients do not all send it again (httpx, for one: about one failed request a reload with
      clients busy).
    A connection whose handshake straddled the reload, which the reload did not see, is judged
    when it opens. Plain connections, and contexts that never reload, are served as uvicorn
    serves them."""

    _held: Held | None = None
    _last_call: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        context = transport.get_extra_info("sslcontext")
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(context, ReloadingContext) and ssl_object is not None:
            peer = ssl_object.getpeercert(binary_form=True)
            self._held = context.hold(ssl_object.context, peer, self._retire, self.loop)
            if self._held.verdict is not Verdict.KEPT:
                self._retire(at_once=self._held.verdict is Verdict.REFUSED)

    def _retire(self, at_once: bool) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # busy: answered with `Connection: close`, then closed
        elif at_once:
            self.shutdown()
        elif self._last_call is None and not self.transport.is_closing():
            self._last_call = self.loop.call_later(LAST_CALL_S, self.shutdown)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._last_call is not None and self.cycle is not None:
            self._last_call.cancel()
            self._last_call = None
            self.cycle.keep_alive = False  # its last request: answered, then closed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._held is not None:
            self._held.let_go()
        if self._last_call is not None:
            self._last_call.cancel()
        super().connection_lost(exc)


class ServedHttp(ReloadAwareHttp):
    """`ReloadAwareHttp` with bounds on reading each request, where uvicorn (over httptools) has
    none - for the gateway or a connector facing clients without a proxy that bounds them:
    - a deadline: a connection that sends nothing within `REQUEST_READ_S` of opening, or of its
      first byte after an answer, or does not finish a request (head and body) within
      `REQUEST_READ_S` of starting it, is closed. uvicorn's keep-alive timer stops at any byte, so
      a client sending a request's first bytes and no more (slowloris), or a bare CRLF between
      requests, held the connection, and with enough of them the server's sockets, for as long
      as it liked;
    - a size for everything of a request but its body - request line, headers, chunk framing,
      trailers: over `MAX_HEAD_BYTES` it is answered 431 and the connection closed. A 100 MB
      header was read whole, the event loop stalling for seconds as it grew, and chunked
      trailers (which uvicorn adds to the headers) ran to gigabytes."""

    _reading: asyncio.TimerHandle | None = None
    _framing = 0
    """Bytes of the current request that were not its body: every byte read, less what the
    parser handed on as body (`on_body`)."""
    _body_in_read = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_within(REQUEST_READ_S)

    def data_received(self, data: bytes) -> None:
        if self._reading is None and (self.cycle is None or self.cycle.response_complete):
            self._read_within(REQUEST_READ_S)  # bytes between requests, even a bare CRLF
        self._body_in_read = 0
        super().data_received(data)
        if not self.transport.is_closing():
            # A read may end one request and begin the next: the count restarts at the next
            # (on_message_begin) and takes this read's other bytes with it, a few at most.
            self._framing += len(data) - self._body_in_read
            if self._framing > MAX_HEAD_BYTES:
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._read_within(REQUEST_READ_S)
        self._framing = 0

    def on_body(self, body: bytes) -> None:
        self._body_in_read += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._read_within(None)

    def _refuse_head(self) -> None:
        message = f"The request's headers are over {MAX_HEAD_BYTES} bytes.".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._read_within(None)
        super().connection_lost(exc)

    def _read_within(self, seconds: float | None) -> None:
        if self._reading is not None:
            self._reading.cancel()
        self._reading = None if seconds is None else self.loop.call_later(seconds, self._too_slow)

    def _too_slow(self) -> None:
        self._reading = None
        if not self.transport.is_closing():
            self.transport.close()


NOT_SERVED: Final = "Nothing is served at this path."

Refuse = Callable[[int, str, Mapping[str, str]], Response]
"""Makes a service's error response from a status, a message and headers."""


def http_refusals(refuse: Refuse) -> dict[Any, ExceptionHandler]:
    """Starlette's own refusals - no route for the path (404), a method the route does not serve
    (405, with `Allow`) - in the service's error shape, made by `refuse`, rather than Starlette's
    plain text: a Starlette app's `exception_handlers`."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            # A route names what it serves; static files (GET and HEAD) raise without saying.
            headers = dict(exc.headers or {"Allow": "GET, HEAD"})
            served = headers["Allow"]
            return refuse(405, f"{request.method} is not served here: use {served}.", headers)
        return refuse(404, NOT_SERVED, {})

    return {404: refused, 405: refused}


def server_config(app: ASGIApp | str, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration as every server here has it: no access log or server header,
    connections that follow TLS files taken up while serving and a deadline for reading each
    request (`ServedHttp`)."""
    return uvicorn.Config(app, http=ServedHttp, access_log=False, server_header=False, **options)


def _config(
    app: ASGIApp, log_level: str, tls: ssl.SSLContext | None, graceful_s: int = 5
) -> uvicorn.Config:
    return server_config(
        app,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        ssl_context_factory=None if tls is None else lambda config, default: tls,
    )


async def serve_all(
    apps: Sequence[ServedApp],
    on_started: Callable[[], Awaitable[None] | None] | None = None,
    log_level: str = "warning",
    *,
    drain_s: float = 0.0,
    on_drain: Callable[[], None] | None = None,
) -> None:
    """Serve every app until SIGINT or SIGTERM, then shut them all down gracefully.

    With `drain_s`, SIGTERM (an orchestrator stopping the process) first calls `on_drain` and
    keeps serving that long, so a load balancer can see the instance going before it goes;
    SIGINT (a person at the terminal), or a second signal, stops at once.
    """
    servers = [_QuietServer(_config(a.app, log_level, a.tls)) for a in apps]
    loop = asyncio.get_running_loop()
    draining = False

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    def drain_then_stop() -> None:
        nonlocal draining
        if draining or drain_s <= 0:
            stop()
            return
        draining = True
        if on_drain is not None:
            on_drain()
        loop.call_later(drain_s, stop)

    loop.add_signal_handler(signal.SIGINT, stop)
    loop.add_signal_handler(signal.SIGTERM, drain_then_stop)
    try:
        tasks = [
            asyncio.create_task(s.serve(sockets=[a.sock]))
            for s, a in zip(servers, apps, strict=True)
        ]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                stop()
                break
            await asyncio.sleep(0.01)
        else:
            settle_heap()
            if on_started is not None:
                result = on_started()
                if result is not None:
                    await result
        await asyncio.gather(*tasks)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def settle_heap() -> None:
    """Keep the garbage collector off what start-up built, once a process serves until it stops.

    CPython's cyclic collector walks, in each full collection, every object the process holds:
    for a server that is mostly what start-up built - schemas, policy, models, records, modules -
    and lives as long as the process. Under load (the gateway at 16 lookups at a time, timed with
    `gc.callbacks`) those walks took 80-100 ms each, every request in flight waiting them out,
    ~0.2 ms of CPU per lookup all told. Frozen (`gc.freeze()`) after a collection, start-up's
    objects are out of its sight: full collections then took 12-20 ms, the collector's CPU per
    lookup fell to ~0.08 ms and the gateway's 99th percentile at 16 concurrent lookups from ~140
    to ~80 ms. Objects are still freed by reference counting; only cycles among frozen objects
    would stay, and start-up builds none that it later drops. (A first-generation threshold of
    50,000 rather than 700 saved ~0.04 ms more a lookup but paused 25 ms at a time: not taken.)
    """
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on uvloop when it is installed, else on asyncio's loop.

    uvloop roughly halves the per-request cost of the event loop, which matters on the small
    machines connectors and gateways run on.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class BackgroundServer:
    """Serve one app on loopback in a daemon thread; use as a context manager.

    Tests and benchmarks use this so that requests cross a real socket and a real HTTP stack.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Serve on `sock` when given (bound earlier, so its URL could be handed out first);
        https with `tls`."""
        self._sock = sock or bind_socket(host, port)
        # Short grace: a test's deliberately stuck request should not hold up its teardown.
        self._server = _QuietServer(_config(app, "warning", tls, graceful_s=1))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self.url = socket_url(self._sock, tls=tls is not None)

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server at {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
