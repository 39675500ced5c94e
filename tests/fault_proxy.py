"""A TCP proxy on loopback in front of a real service, for fault tests: it forwards, goes
silent (keeps every connection open and reads what arrives, as a connection pooler or a sidecar
whose far side stalled does - TCP, keepalives included, sees nothing wrong), or resets its
clients' connections (RST, as a NAT or load balancer dropping an idle one). It runs on an event
loop in a thread of its own, so the code under test can block or run any loop it likes."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from types import TracebackType


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._clients: list[asyncio.StreamWriter] = []
        self._silent = False
        self.port = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._call(self._close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def silence(self) -> None:
        """From now on nothing passes either way; every connection stays open."""
        self._silent = True

    def restore(self) -> None:
        """Forward again (what arrived while silent is gone)."""
        self._silent = False

    def reset(self) -> None:
        """End every client connection with an RST."""
        self._call(self._reset)

    def _call(self, action: object) -> None:
        async def run() -> None:
            action()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def _reset(self) -> None:
        for writer in self._clients:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._clients.clear()

    def _close(self) -> None:
        self._server.close()
        for writer in self._clients:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if not self._silent:
                    sink.write(data)
                    await sink.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            sink.close()
