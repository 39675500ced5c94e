"""Federated requests through an HTTP proxy (gateway.proxy): a real CONNECT proxy on loopback,
started here, in front of real connectors - plain, and over mutual TLS end to end inside the
tunnel - and the standard environment variables read as the gateway reads them."""

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from connectors.app import create_connector_app
from connectors.serving import BackgroundServer, free_port, run
from connectors.tls import ReloadingContext, ServerFiles
from gateway.cache import AnswerCache
from gateway.config import ClientTls, SourceConfig
from gateway.fanout import FanOut
from gateway.proxy import Proxies, Proxy
from gateway.tls import connector_client_context
from gateway.transport import ConnectorTransport
from gateway.types import LookupQuery, Plan, Purpose, SourceStatus
from tests.factories import NHS, health_record, lookup_context
from tests.test_mtls import CLIENT, SERVER, Authority

QUERY = LookupQuery(nhs_number=NHS, purpose=Purpose.DIRECT_CARE)
CREDENTIALS = "gateway:s3cret"


@dataclass
class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT), on its own thread and event loop, keeping the
    targets it was asked for; with `required`, only for that Proxy-Authorization."""

    required: str | None = None
    targets: list[str] = field(default_factory=list)
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        if method != "CONNECT":  # a tunnelling proxy only
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        if self.required is not None and headers.get("Proxy-Authorization") != self.required:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            writer.close()
            return
        self.targets.append(target)
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{self.port}"
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            server.close()

    def proxies(self, scheme: str, authorization: str | None = None, no_proxy=None) -> Proxies:
        return Proxies({scheme: Proxy("127.0.0.1", self.port, authorization)}, no_proxy)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class _Backend:
    async def lookup(self, request):
        return [health_record()]


def _ask(url: str, proxies: Proxies, tls=None):
    source = SourceConfig(name="health", url=url, provides=("name",), timeout_ms=3000)
    plan = Plan(True, None, frozenset({"name"}), ("health",), "d1")

    async def ask():
        async with ConnectorTransport(tls, proxies=proxies) as transport:
            (answer,) = await FanOut([source], transport, AnswerCache(0)).ask(
                lookup_context(QUERY), plan
            )
            return answer

    return run(ask())


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_a_connector_is_asked_through_the_proxy_with_its_credentials():
    proxy = ConnectProxy(required=_basic(CREDENTIALS))
    app = create_connector_app(_Backend(), source="health")
    with proxy.running(), BackgroundServer(app) as server:
        answer = _ask(server.url, proxy.proxies("http", _basic(CREDENTIALS)))
        refused = _ask(server.url, proxy.proxies("http", _basic("gateway:wrong")))
    assert (answer.status, len(answer.records)) == (SourceStatus.ANSWERED, 1)
    assert proxy.targets == [server.url.removeprefix("http://")]
    assert refused.status is SourceStatus.FAILED


def test_mutual_tls_runs_end_to_end_inside_the_tunnel(tmp_path):
    ca = Authority(tmp_path, "proxied-federation")
    connector, gateway = ca.issue("connector", SERVER), ca.issue("gateway-client", CLIENT)
    files = ServerFiles(connector.cert, connector.key, ca.ca_file)
    tls = connector_client_context(
        ClientTls(ca_file=ca.ca_file, cert_file=gateway.cert, key_file=gateway.key), []
    )
    proxy = ConnectProxy()
    app = create_connector_app(_Backend(), source="health")
    with proxy.running(), BackgroundServer(app, tls=ReloadingContext(files, every_s=0)) as server:
        answer = _ask(server.url, proxy.proxies("https"), tls)
        without_certificate = _ask(
            server.url,
            proxy.proxies("https"),
            connector_client_context(ClientTls(ca_file=ca.ca_file), []),
        )
    assert (answer.status, len(answer.records)) == (SourceStatus.ANSWERED, 1)
    assert without_certificate.status is SourceStatus.FAILED
    assert proxy.targets == [server.url.removeprefix("https://")] * 2


def test_hosts_in_no_proxy_are_reached_directly():
    proxy = ConnectProxy()
    app = create_connector_app(_Backend(), source="health")
    with proxy.running(), BackgroundServer(app) as server:
        answer = _ask(server.url, proxy.proxies("http", no_proxy="example.org, 127.0.0.1"))
    assert answer.status is SourceStatus.ANSWERED
    assert proxy.targets == []


def test_a_proxy_that_cannot_be_reached_fails_the_source():
    proxies = Proxies({"http": Proxy("127.0.0.1", free_port(), None)}, None)
    answer = _ask("http://connector.invalid:8080", proxies)
    assert answer.status is SourceStatus.FAILED


def test_the_standard_variables_name_the_proxy_and_the_hosts_reached_directly(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://gateway:p%40ss@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", ".agency.local,localhost:8443,[::1]")
    proxies = Proxies.from_environment()
    via = Proxy("proxy.internal", 3128, _basic("gateway:p@ss"))
    assert proxies.for_party("https", "health.example.org", 443) == via
    assert proxies.for_party("https", "social-care.agency.local", 443) is None
    assert proxies.for_party("https", "agency.local", 443) is None
    assert proxies.for_party("https", "localhost", 8443) is None
    assert proxies.for_party("https", "localhost", 9443) == via
    assert proxies.for_party("https", "::1", 443) is None
    assert proxies.for_party("http", "health.example.org", 80) is None  # no HTTP_PROXY


def test_no_proxy_networks_match_parties_named_by_an_address_in_them():
    via = Proxy("proxy.internal", 3128, None)
    proxies = Proxies({"https": via}, "10.0.0.0/8, 192.168.1.7/24:8443, fd00::/8, not/a-net")
    assert proxies.for_party("https", "10.20.30.40", 443) is None
    assert proxies.for_party("https", "11.0.0.1", 443) == via
    assert proxies.for_party("https", "192.168.1.200", 8443) is None  # host bits allowed
    assert proxies.for_party("https", "192.168.1.200", 443) == via  # that port only
    assert proxies.for_party("https", "fd12:3456::1", 443) is None
    assert proxies.for_party("https", "fe80::1", 443) == via
    # A name is matched as a name, never resolved to see where its address falls.
    assert proxies.for_party("https", "health.10.0.0.0", 443) == via


@pytest.mark.parametrize("url", ["socks5://proxy:1080", "https://proxy:3129"])
def test_a_proxy_other_than_plain_http_is_refused_at_start_up(monkeypatch, url):
    monkeypatch.setenv("HTTPS_PROXY", url)
    with pytest.raises(ValueError, match="must be http://HOST"):
        Proxies.from_environment()
