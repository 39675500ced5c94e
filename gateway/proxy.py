"""Federated requests through an HTTP proxy, as the standard environment variables say.

Agencies are often reached only through an organisation's egress proxy. `HTTPS_PROXY`,
`HTTP_PROXY` and `ALL_PROXY` (or their lower-case forms, read as Python's `urllib.request` reads
them) name it for https and http parties, `NO_PROXY` the hosts reached directly: the variables
httpx honours for the gateway's other outbound requests (identity provider and JWKS fetches).
A `NO_PROXY` entry matches a host and its subdomains, `NAME:PORT` one port only, `*` every host,
and an IP network (`10.0.0.0/8`) the parties named by an address in it.
The proxy is asked to `CONNECT` to the party, and TLS - the party's certificate checked, the
gateway's client certificate presented - runs inside that tunnel, end to end: the proxy sees
neither the request nor the answer. An http party is tunnelled too, so the proxy must allow
CONNECT to its port.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

MAX_ANSWER_HEAD_BYTES = 16 * 1024
"""A proxy's answer to CONNECT longer than this, without its end, is not a proxy's answer."""

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy to tunnel through."""

    host: str
    port: int
    authorization: str | None
    """The Proxy-Authorization header's value, from the URL's user and password."""


@dataclass(frozen=True)
class Proxies:
    """The proxy for each scheme, and the hosts reached without one."""

    by_scheme: Mapping[str, Proxy]
    no_proxy: str | None

    @classmethod
    def from_environment(cls) -> Proxies:
        """Raises ValueError for a proxy URL that is not http://HOST[:PORT]."""
        found = urllib.request.getproxies_environment()
        by_scheme = {}
        for scheme in ("http", "https"):
            url = found.get(scheme) or found.get("all")
            if url:
                by_scheme[scheme] = _proxy(url, scheme)
        return cls(by_scheme, found.get("no"))

    def for_party(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy to reach `host` through, or None to reach it directly."""
        proxy = self.by_scheme.get(scheme)
        if proxy is None:
            return None
        return None if self._reached_directly(host.lower(), port) else proxy

    def _reached_directly(self, host: str, port: int) -> bool:
        """NO_PROXY: `*`, entries NAME or NAME:PORT (a leading dot ignored), each matching that
        host and its subdomains, or an IP network (`10.0.0.0/8`, `fd00::/8`) matching the
        addresses in it - a party named by address, as curl and Go match them: a name is not
        resolved to see whether its address falls in one."""
        address = _address(host)
        for entry in (self.no_proxy or "").split(","):
            name, only_port = _name_and_port(entry.strip().lower().lstrip("."))
            if name == "*":
                return True
            if not name or (only_port and only_port != str(port)):
                continue
            if host == name or host.endswith("." + name):
                return True
            if address is not None and "/" in name and address in _network(name):
                return True
        return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | tuple[()]:
    """The network an entry names (host bits allowed, as `10.1.2.3/8`); none if it names none."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return ()


def _name_and_port(entry: str) -> tuple[str, str]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address has no port."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, rest.removeprefix(":")
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, port
    return entry, ""


def _proxy(url: str, scheme: str) -> Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"the {scheme} proxy must be http://HOST[:PORT] (the tunnel's TLS is end to end), "
            f"not {parts.scheme}://"
        )
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return Proxy(parts.hostname, parts.port or 80, authorization)


class _TunnelHead(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT, up to the blank line that ends it."""

    def __init__(self) -> None:
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._head = bytearray()

    def data_received(self, data: bytes) -> None:
        self._head += data
        ended = b"\r\n\r\n" in self._head or len(self._head) > MAX_ANSWER_HEAD_BYTES
        if ended and not self.answered.done():
            self.answered.set_result(bytes(self._head))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(bytes(self._head))


async def tunnel(proxy: Proxy, host: str, port: int) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """A connection through `proxy` to `host`:`port`, with the proxy's answer read; raises
    httpx.ConnectError unless the proxy opened the tunnel (a 2xx answer and nothing after it)."""
    loop = asyncio.get_running_loop()
    try:
        transport, head = await loop.create_connection(_TunnelHead, proxy.host, proxy.port)
    except OSError as error:
        raise httpx.ConnectError(
            f"cannot connect to the proxy {proxy.host}:{proxy.port}: {error}"
        ) from error
    target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        answer = await head.answered
    except BaseException:
        transport.close()
        raise
    status = _STATUS.match(answer)
    end = answer.find(b"\r\n\r\n")
    if status is None or not 200 <= int(status.group(1)) < 300 or end != len(answer) - 4:
        transport.close()
        said = answer.split(b"\r\n", 1)[0][:200].decode("latin-1", "replace") or "nothing"
        raise httpx.ConnectError(
            f"the proxy {proxy.host}:{proxy.port} did not open a tunnel to {target}: {said}"
        )
    return transport, head
