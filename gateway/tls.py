"""TLS contexts, built in one place from the typed config, for both ends of mutual TLS.

Mutual TLS is a layer under the signed requests and answers, not a replacement: it keeps anyone
without a certificate from the federation's CA from even opening a connection to a connector (or
to the gateway), and proves to the gateway that it reached the agency's server and not an
impostor on the network. Files are checked here before OpenSSL sees them, because OpenSSL's own
errors ("PEM lib") do not say which file is wrong or why, and a gateway that fails to start
must tell its operator exactly what to fix.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from connectors import tls
from connectors.tls import TlsError
from gateway import metrics
from gateway.config import ClientTls, ServerTls, SourceConfig


def server_context(config: ServerTls) -> ssl.SSLContext:
    """A server context presenting `config`'s certificate; with a client CA, every client must
    present a certificate that chains to it (and that the CA's revocation lists, if given, do not
    name). Changed files are taken up while serving; `childlookup_tls_valid_until_timestamp_seconds`
    follows what is loaded."""
    return tls.ReloadingContext(
        config.files(),
        every_s=config.reload_s,
        on_load=metrics.tls_valid_until,
        on_refused=lambda error: metrics.tls_reload_refused("server"),
    )


def client_context(config: ClientTls) -> ssl.SSLContext:
    """A client context that checks the server's certificate and host name - against the given CA
    only (and its revocation lists, if given), or without one against httpx's default trust
    store - and presents the configured client certificate, if any."""
    return _client_context(config)[0]


def _client_context(config: ClientTls) -> tuple[ssl.SSLContext, datetime | None]:
    """`client_context`, and when it stops working: the client certificate's expiry, else the
    earliest of the CA's (None with neither file) - or a revocation list's next update, if
    sooner (OpenSSL then refuses every connector)."""
    until = next_update = None
    if config.ca_file is None:
        context = httpx.create_ssl_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        authorities = tls.load_trust(context, config.ca_file)
        until = min(ca.not_valid_after_utc for ca in authorities)
        if config.crl_file is not None:
            lists = tls.load_revocations(context, config.crl_file, config.ca_file, authorities)
            next_update = tls.next_update(lists)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert_file is not None and config.key_file is not None:
        until = tls.load_identity(context, config.cert_file, config.key_file)
    if until is not None and next_update is not None:
        until = min(until, next_update)
    return context, until


@dataclass(frozen=True)
class _ClientFiles:
    """`CHILDLOOKUP_CONNECTOR_TLS`'s files, as `connectors.tls.ReloadingContext` watches them."""

    config: ClientTls

    def paths(self) -> list[Path]:
        config = self.config
        files = (config.cert_file, config.key_file, config.ca_file, config.crl_file)
        return [p for p in files if p is not None]

    def load(self) -> tls.Loaded:
        context, until = _client_context(self.config)
        assert until is not None  # watched only with a file, which gives a time
        return tls.Loaded(context, until)


def connector_client_context(config: ClientTls, sources: Sequence[SourceConfig]) -> ssl.SSLContext:
    """The fan-out client's context; refuses a client certificate alongside an http:// source,
    which would quietly be asked in plain text while the operator believes mutual TLS is on.
    With a CA or client certificate, changed files are taken up while the gateway runs (every
    `reload_s`), and `childlookup_connector_tls_valid_until_timestamp_seconds` follows them."""
    if config.cert_file is not None:
        plain = [s.name for s in sources if s.url.scheme != "https"]
        if plain:
            raise TlsError(
                "connector mutual TLS is configured, but these sources are not https: "
                + ", ".join(plain)
            )
    files = _ClientFiles(config)
    if not files.paths():
        return client_context(config)
    return tls.ReloadingContext(
        files,
        every_s=config.reload_s,
        on_load=metrics.connector_tls_valid_until,
        on_refused=lambda error: metrics.tls_reload_refused("connectors"),
    )
