"""Server-side TLS for a connector, and the certificate checks both ends of mutual TLS share.

Mutual TLS is a layer under the signed requests and answers, not a replacement: it keeps anyone
without a certificate from the federation's CA from even opening a connection to a connector, and
proves to the gateway that it reached the agency's server and not an impostor on the network.
Files are checked here before OpenSSL sees them, because OpenSSL's own errors ("PEM lib") do not
say which file is wrong or why, and a server that fails to start must tell its operator exactly
what to fix. It lives in the SDK because an agency serves https without installing the gateway.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class TlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the file and the fault."""


def server_context(
    cert_file: Path,
    key_file: Path,
    client_ca_file: Path | None = None,
    client_crl_file: Path | None = None,
) -> ssl.SSLContext:
    """A server context presenting this certificate; with a client CA, every client must present
    a certificate that chains to it, and, with the CA's revocation lists, one they do not list."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_identity(context, cert_file, key_file)
    if client_ca_file is not None:
        authorities = load_trust(context, client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
        if client_crl_file is not None:
            load_revocations(context, client_crl_file, authorities)
    elif client_crl_file is not None:
        raise TlsError(f"CRL file {client_crl_file} is for client certificates: give their CA too")
    return context


def load_identity(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Load our certificate chain and its private key, after checking they belong together and
    that the certificate is valid now."""
    chain = _certificates(cert_file, "certificate file")
    key_pem = _read(key_file, "key file")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise TlsError(f"key file {key_file} is encrypted; give an unencrypted key") from exc
    except ValueError as exc:
        raise TlsError(f"key file {key_file} holds no PEM private key") from exc
    if chain[0].public_key() != key.public_key():
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


def load_trust(context: ssl.SSLContext, ca_file: Path) -> list[x509.Certificate]:
    """Trust the CA certificates in `ca_file`; returns them."""
    authorities = _certificates(ca_file, "CA file")
    context.load_verify_locations(cafile=ca_file)
    return authorities


def valid_until(cert_file: Path, crl_file: Path | None = None) -> datetime:
    """When a server with this certificate (and these client CRLs) stops working without a
    restart: the certificate's expiry, or the earliest next update of a CRL, if sooner. Files
    are read again, so call it once, after the context was built from them."""
    until = _certificates(cert_file, "certificate file")[0].not_valid_after_utc
    if crl_file is None:
        return until
    updates = [crl.next_update_utc for crl in _crls(crl_file)]
    return min([until, *(update for update in updates if update is not None)])


def load_revocations(
    context: ssl.SSLContext, crl_file: Path, authorities: list[x509.Certificate]
) -> None:
    """Refuse certificates that `crl_file`'s revocation lists (PEM, one per CA in `authorities`)
    name. OpenSSL then needs a current list from each CA whose certificates it checks, or refuses
    them all: a list past its next update, or signed by no CA here, stops start-up instead, with
    what to fix. Lists are read at start-up; restart to take up a new one."""
    now = datetime.now(UTC)
    for crl in _crls(crl_file):
        issuers = [ca for ca in authorities if ca.subject == crl.issuer]
        if not any(_signed_by(crl, ca) for ca in issuers):
            raise TlsError(
                f"CRL file {crl_file}: the list from {crl.issuer.rfc4514_string()} is not signed"
                " by a CA in the client CA file"
            )
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            raise TlsError(
                f"CRL file {crl_file}: the list from {crl.issuer.rfc4514_string()} expired at"
                f" {crl.next_update_utc:%Y-%m-%d %H:%M} UTC; fetch a current one"
            )
    context.load_verify_locations(cafile=crl_file)
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _crls(crl_file: Path) -> list[x509.CertificateRevocationList]:
    pem = _read(crl_file, "CRL file")
    end = b"-----END X509 CRL-----"
    blocks = [block + end for block in pem.split(end) if b"-----BEGIN X509 CRL-----" in block]
    try:
        crls = [x509.load_pem_x509_crl(block.strip()) for block in blocks]
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
