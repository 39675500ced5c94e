"""Server-side TLS for a connector, the certificate checks both ends of mutual TLS share, and a
context that takes up renewed files while it is in use (`ReloadingContext`).

Mutual TLS is a layer under the signed requests and answers, not a replacement: it keeps anyone
without a certificate from the federation's CA from even opening a connection to a connector, and
proves to the gateway that it reached the agency's server and not an impostor on the network.
Files are checked here before OpenSSL sees them, because OpenSSL's own errors ("PEM lib") do not
say which file is wrong or why, and a server that fails to start must tell its operator exactly
what to fix. It lives in the SDK because an agency serves https without installing the gateway.
Certificates are renewed and CRLs replaced on a schedule of their own, so a server watches its
files rather than needing a restart for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from connectors.logs import log_event
from connectors.pem import pem_blocks

_logger = logging.getLogger("childlookup.tls")

RELOAD_EVERY_S = 60.0
"""How often a server looks at its TLS files for a change, by default."""


class TlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the file and the fault."""


class TlsFiles(Protocol):
    """Files a TLS context is built from, as `ReloadingContext` watches them."""

    def paths(self) -> list[Path]:
        """The files, to be looked at for a change."""
        ...

    def load(self) -> Loaded:
        """A context from the files, checked; raises TlsError naming the file and the fault."""
        ...


class Verdict(Enum):
    """What files newly taken up make of a client already connected under earlier ones."""

    KEPT = "kept"
    """They let it in as the earlier files did: its connection stays open."""
    REFUSED = "refused"
    """They refuse its certificate (revoked, or no current list from its CA), or it has none
    where one is now asked for: its connection is closed."""
    UNSURE = "unsure"
    """They trust other CAs: only a new handshake can tell, so the connection is retired and its
    client connects again."""


@dataclass(frozen=True)
class Admission:
    """Which clients a server's files let in, as far as judging a connection already open needs.

    OpenSSL checks a client once, at the handshake. A server that took up new files - a renewed
    certificate of its own, a CA's next revocation list - would otherwise have to close every
    connection to be sure of its clients, and make each connect again, though mostly nothing
    about them changed. Judged here from the certificate the client presented, a connection is
    closed when its client is refused now and kept when its client is let in as before."""

    anchors: frozenset[bytes] | None = None
    """The client CAs' certificates (SHA-256 fingerprints); None: no client certificate asked."""
    listed: frozenset[x509.Name] | None = None
    """The CAs whose revocation lists are loaded; None: certificates are not checked against
    lists. When they are, OpenSSL refuses a certificate from a CA with no list here."""
    revoked: frozenset[tuple[x509.Name, int]] = frozenset()
    """(issuer, serial number) of each certificate the lists name."""

    @classmethod
    def of(
        cls,
        authorities: Iterable[x509.Certificate],
        lists: Iterable[x509.CertificateRevocationList] | None = None,
    ) -> Admission:
        """Client certificates chaining to `authorities`, checked against `lists` if given."""
        anchors = frozenset(ca.fingerprint(hashes.SHA256()) for ca in authorities)
        if lists is None:
            return cls(anchors)
        lists = list(lists)
        return cls(
            anchors,
            frozenset(crl.issuer for crl in lists),
            frozenset((crl.issuer, entry.serial_number) for crl in lists for entry in crl),
        )

    def judge(self, before: Admission, peer: bytes | None) -> Verdict:
        """What these files, taking over from `before`'s, make of a client `before`'s let in,
        which presented the certificate `peer` (DER; None if it presented none)."""
        if self.anchors is not None:
            if peer is None:
                return Verdict.REFUSED
            if self.listed is not None:
                try:
                    certificate = x509.load_der_x509_certificate(peer)
                except ValueError:
                    return Verdict.UNSURE
                issuer = certificate.issuer
                if issuer not in self.listed or (issuer, certificate.serial_number) in self.revoked:
                    return Verdict.REFUSED
        return Verdict.KEPT if self.anchors == before.anchors else Verdict.UNSURE


@dataclass(frozen=True)
class Loaded:
    """A TLS context built from files, with what a reload needs to know of it."""

    context: ssl.SSLContext
    until: datetime
    """When it stops working: its certificate expires, or a revocation list is due again."""
    admission: Admission | None = None
    """Which clients it lets in; None for a context that serves no clients (a client's own)."""


@dataclass(frozen=True)
class ServerFiles:
    """What a server serves https with: its certificate (chain) and key, and, for mutual TLS, the
    CA its clients' certificates must chain to and that CA's revocation lists."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    client_crl: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.cert, self.key, self.client_ca, self.client_crl) if p is not None]

    def load(self) -> Loaded:
        """A server context presenting the certificate (requiring client certificates from the
        client CA, if given, that its lists do not name), and when it stops working: the
        certificate's expiry, or a list's next update if sooner (OpenSSL then refuses every
        client)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        until = load_identity(context, self.cert, self.key)
        admission = Admission()
        if self.client_ca is not None:
            authorities = load_trust(context, self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
            lists = None
            if self.client_crl is not None:
                lists = load_revocations(context, self.client_crl, self.client_ca, authorities)
                until = min(until, next_update(lists) or until)
            admission = Admission.of(authorities, lists)
        elif self.client_crl is not None:
            raise TlsError(
                f"CRL file {self.client_crl} is for client certificates: give their CA too"
            )
        return Loaded(context, until, admission)


class ReloadingContext(ssl.SSLContext):
    """A context that takes up new files while in use: certificates renewed, a CA's new
    revocation list fetched, a key rotated - with no restart, and no request dropped.

    A thread looks at the files (`os.stat`: time, size, inode, so a renamed-in or re-linked file
    counts) every `every_s` seconds. When they changed, they are checked and loaded as at
    start-up, into a new context that every handshake from then on uses. Each connection a
    server `hold`s is judged against them (`Admission.judge`, from the certificate its client
    presented): one whose client the new files refuse - a certificate the new list revokes - is
    closed, one whose client they may not trust - its CAs changed - is retired, so that its
    client connects again and is checked, and the others stay open (see
    connectors.serving.ReloadAwareHttp for how each is closed). Files that cannot be used (a
    certificate written before its key, say) leave the running context in place and are logged
    (`tls_reload_failed`, with what is wrong); they are tried again when they change again, and
    `on_refused` is called with the error. Each load calls `on_load` with the moment the loaded
    files stop working (`Loaded.until`) and logs it (`tls_valid_until`, with the files' first
    path, the certificate's), for an alert in time; a load that closes or retires connections
    logs how many (`tls_connections_closed`: `count`, of which `refused`).

    asyncio and uvloop make every TLS connection through the context's `wrap_bio` (blocking
    servers through `wrap_socket`): those two are passed on to the context in use; its other
    attributes are not. The thread ends once the context is gone.
    """

    def __new__(cls, *args: object, **kwargs: object) -> ReloadingContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)  # unused: see wrap_bio

    def __init__(
        self,
        files: TlsFiles,
        *,
        every_s: float = RELOAD_EVERY_S,
        on_load: Callable[[datetime], None] | None = None,
        on_refused: Callable[[TlsError], None] | None = None,
    ) -> None:
        """Raises TlsError, naming the file and the fault, if the files cannot be used now."""
        self._files = files
        self._on_load = on_load
        self._on_refused = on_refused
        self._seen = _stamp(files)
        self._current = self._load()
        self._previous: Loaded | None = None
        self._lock = threading.Lock()
        self._held: dict[object, _OpenConnection] = {}
        if every_s > 0:
            threading.Thread(
                target=_watch, args=(weakref.ref(self), every_s), name="tls-reload", daemon=True
            ).start()

    @property
    def current(self) -> ssl.SSLContext:
        """The context a handshake made now uses: another one once changed files are taken up."""
        return self._current.context

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        current = self._current.context
        return current.wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return self._current.context.wrap_socket(
            sock,
            server_side,
            do_handshake_on_connect,
            suppress_ragged_eofs,
            server_hostname,
            session,
        )

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since last looked at; whether they were loaded."""
        stamp = _stamp(self._files)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            loaded = self._load()
        except TlsError as error:
            log_event(_logger, logging.ERROR, "tls_reload_failed", reason=str(error))
            if self._on_refused is not None:
                self._on_refused(error)
            return False
        with self._lock:
            self._previous, self._current = self._current, loaded
            judged: list[tuple[_OpenConnection, Verdict]] = []
            for key, held in self._held.items():
                verdict = _judged(held.loaded, loaded, held.peer)
                if verdict is Verdict.KEPT:
                    self._held[key] = replace(held, loaded=loaded)
                else:
                    judged.append((held, verdict))
        for held, verdict in judged:
            held.retire_soon(at_once=verdict is Verdict.REFUSED)
        if judged:
            refused = sum(verdict is Verdict.REFUSED for _, verdict in judged)
            log_event(
                _logger, logging.INFO, "tls_connections_closed", count=len(judged), refused=refused
            )
        return True

    def hold(
        self,
        made_with: ssl.SSLContext,
        peer: bytes | None,
        retire: Callable[[bool], None],
        loop: asyncio.AbstractEventLoop,
    ) -> Held:
        """Have `retire` called on `loop` when files taken up later refuse the connection whose
        handshake used `made_with` and whose client presented `peer` (DER), or may not trust it:
        with True to close it now (refused), False to retire it. If `made_with` is already not
        the context in use - the handshake began before new files were taken up and ended
        after - the reload did not see it, and the returned `Held` gives its verdict for the
        caller to act on."""
        key = object()
        with self._lock:
            current = self._current
            if made_with is current.context:
                verdict = Verdict.KEPT
            else:
                previous = self._previous
                if previous is not None and made_with is not previous.context:
                    previous = None  # older still: more than one reload during its handshake
                verdict = _judged(previous, current, peer)
            self._held[key] = _OpenConnection(current, peer, retire, loop)

        def let_go() -> None:
            with self._lock:
                self._held.pop(key, None)

        return Held(verdict, let_go)

    def _load(self) -> Loaded:
        loaded = self._files.load()
        first = str(self._files.paths()[0])
        at = loaded.until.isoformat()
        log_event(_logger, logging.INFO, "tls_valid_until", file=first, at=at)
        if self._on_load is not None:
            self._on_load(loaded.until)
        return loaded


@dataclass(frozen=True)
class Held:
    """A connection as `ReloadingContext.hold` took it."""

    verdict: Verdict
    """What the files in use make of it: other than KEPT only when its handshake straddled
    their reload."""
    let_go: Callable[[], None]
    """For when the connection is lost: it is no longer closed on a reload."""


@dataclass(frozen=True)
class _OpenConnection:
    """A connection a server holds open, and how to retire it from the reloading thread."""

    loaded: Loaded
    """The files it is judged to be under: those of its handshake, or later ones that kept it."""
    peer: bytes | None
    retire: Callable[[bool], None]
    loop: asyncio.AbstractEventLoop

    def retire_soon(self, *, at_once: bool) -> None:
        with contextlib.suppress(RuntimeError):  # its loop has stopped: closed already
            self.loop.call_soon_threadsafe(self.retire, at_once)


def _judged(before: Loaded | None, after: Loaded, peer: bytes | None) -> Verdict:
    """What `after` makes of a client `before` let in; UNSURE when either cannot say."""
    if before is None or before.admission is None or after.admission is None:
        return Verdict.UNSURE
    return after.admission.judge(before.admission, peer)


def _watch(context: weakref.ref[ReloadingContext], every_s: float) -> None:
    while True:
        time.sleep(every_s)
        alive = context()
        if alive is None:
            return
        alive.reload_if_changed()
        del alive  # hold no reference while asleep, so the context can go


def _stamp(files: TlsFiles) -> list[tuple[int, int, int] | None]:
    stamps: list[tuple[int, int, int] | None] = []
    for path in files.paths():
        try:
            status = os.stat(path)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((status.st_mtime_ns, status.st_size, status.st_ino))
    return stamps


def load_identity(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> datetime:
    """Load our certificate chain and its private key, after checking they belong together and
    that the certificate is valid now; returns when it expires."""
    chain = _certificates(cert_file, "certificate file")
    key_pem = _read(key_file, "key file")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise TlsError(f"key file {key_file} is encrypted; give an unencrypted key") from exc
    except ValueError as exc:
        raise TlsError(f"key file {key_file} holds no PEM private key") from exc
    except UnsupportedAlgorithm as exc:  # e.g. a curve cryptography cannot load: not a ValueError
        raise TlsError(f"key file {key_file} holds a key of an unsupported kind: {exc}") from exc
    try:
        certified = chain[0].public_key()
    except UnsupportedAlgorithm as exc:
        raise TlsError(
            f"certificate file {cert_file} certifies a key of an unsupported kind: {exc}"
        ) from exc
    if certified != key.public_key():
        raise TlsError(f"key file {key_file} does not match certificate file {cert_file}")
    now = datetime.now(UTC)
    if not chain[0].not_valid_before_utc <= now <= chain[0].not_valid_after_utc:
        raise TlsError(
            f"certificate file {cert_file} is valid only from "
            f"{chain[0].not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{chain[0].not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:  # e.g. a key too weak for OpenSSL's security level
        raise TlsError(
            f"certificate file {cert_file} was refused by OpenSSL: {exc.reason}"
        ) from exc
    return chain[0].not_valid_after_utc


def load_trust(context: ssl.SSLContext, ca_file: Path) -> list[x509.Certificate]:
    """Trust the CA certificates in `ca_file`; returns them."""
    authorities = _certificates(ca_file, "CA file")
    context.load_verify_locations(cafile=ca_file)
    return authorities


def load_revocations(
    context: ssl.SSLContext, crl_file: Path, ca_file: Path, authorities: list[x509.Certificate]
) -> list[x509.CertificateRevocationList]:
    """Refuse certificates that `crl_file`'s revocation lists (PEM, one per CA in `authorities`,
    `ca_file`'s) name; returns the lists.
    OpenSSL then needs a current list from each CA whose certificates it checks, or refuses them
    all: a list past its next update, or signed by no CA here, is refused here instead, with what
    to fix, and a CA here with no list is logged (`tls_crl_missing`): every certificate it issued
    would be refused."""
    now = datetime.now(UTC)
    crls = _crls(crl_file)
    for crl in crls:
        issuers = [ca for ca in authorities if ca.subject == crl.issuer]
        if not any(_signed_by(crl, ca) for ca in issuers):
            raise TlsError(
                f"CRL file {crl_file}: the list from {crl.issuer.rfc4514_string()} is not signed"
                f" by a CA in {ca_file}"
            )
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise TlsError(
                f"CRL file {crl_file}: the list from {crl.issuer.rfc4514_string()} expired at"
                f" {crl.next_update_utc:%Y-%m-%d %H:%M} UTC; fetch a current one"
            )
    context.load_verify_locations(cafile=crl_file)
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    for ca in authorities:
        if not any(crl.issuer == ca.subject for crl in crls):
            # Not an error: a root that signs only other CAs issues no client certificates.
            log_event(
                _logger,
                logging.WARNING,
                "tls_crl_missing",
                ca=ca.subject.rfc4514_string(),
                file=str(crl_file),
            )
    return crls


def next_update(lists: Iterable[x509.CertificateRevocationList]) -> datetime | None:
    """The earliest next update among `lists` (None if none has one): OpenSSL refuses every
    certificate from a CA whose list is past it."""
    updates = [crl.next_update_utc for crl in lists if crl.next_update_utc is not None]
    return min(updates, default=None)


def _crls(crl_file: Path) -> list[x509.CertificateRevocationList]:
    blocks = pem_blocks(_read(crl_file, "CRL file"), "X509 CRL")
    try:
        crls = [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise TlsError(f"CRL file {crl_file} holds a block that is not a PEM CRL") from exc
    if not crls:
        raise TlsError(f"CRL file {crl_file} holds no PEM CRL")
    return crls


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:  # a CA key of a kind that cannot sign (X25519, say) signed nothing
        return crl.is_signature_valid(cast(Any, ca.public_key()))
    except (TypeError, ValueError):
        return False


def _certificates(path: Path, what: str) -> list[x509.Certificate]:
    pem = _read(path, what)
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TlsError(f"{what} {path} holds no PEM certificate") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise TlsError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise TlsError(f"{what} {path} cannot be read: {exc.strerror}") from exc
