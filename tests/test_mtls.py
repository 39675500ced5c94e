"""Mutual TLS on both sides, with certificates made here: a federation CA, a rogue CA, and
certificates for the gateway, the connectors and a portal. Servers are real loopback servers; each
attack is paired with the same call made properly, so a refusal cannot pass for a broken setup."""

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPSConnection
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import REGISTRY
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from connectors.cli import gateway_keys
from connectors.logs import configure as configure_logging
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.serving import (
    LAST_CALL_S,
    BackgroundServer,
    bind_socket,
    free_port,
    run,
    socket_url,
)
from connectors.tls import Admission, ReloadingContext, ServerFiles, Verdict
from connectors.trust import (
    JWKS_PATH,
    AnswerSigner,
    RequestVerifier,
    StaticKey,
    TrustError,
    ensure_key_pair,
    load_public_key,
)
from gateway.audit import configured_witnesses
from gateway.config import ClientTls, ServerTls, WitnessConfig
from gateway.demo import reference_source
from gateway.signing import DEV_KEY_FILE, DEV_PUBLIC_KEY_FILE
from gateway.tls import TlsError, client_context, connector_client_context, server_context
from gateway.tokens import PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token
from gateway.transport import ConnectorTransport
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.processes import CLI, health_source_config, wait_for
from tests.stack import LOOKUP, connector_key, running_gateway, write_records

LOOPBACK = IPv4Address("127.0.0.1")
RECORDS = {
    "health": [health_record()],
    "education": [school_record()],
    "social_care": [social_care_record()],
}


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Authority:
    """A throwaway CA writing PEM files under `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self._dir = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self._cert = (
            self._builder(self._name, self._key.public_key(), now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / f"{name}-ca.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        usage: x509.ObjectIdentifier,
        *,
        ip: IPv4Address = LOOPBACK,
        valid_from: timedelta = timedelta(hours=-1),
        valid_for: timedelta = timedelta(days=1),
    ) -> Issued:
        """A leaf certificate for `usage` (server or client auth), valid from now + `valid_from`."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = datetime.now(UTC) + valid_from
        cert = (
            self._builder(subject, key.public_key(), start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip)]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return _write(self._dir, name, cert, key)

    def revocations(
        self, name: str, revoked: list[Issued], *, next_update: timedelta = timedelta(days=1)
    ) -> Path:
        """This CA's revocation list naming `revoked`, written as `<name>.crl.pem`."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._name)
            .last_update(now - timedelta(hours=1))
            .next_update(now + next_update)
        )
        for issued in revoked:
            serial = x509.load_pem_x509_certificate(issued.cert.read_bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - timedelta(minutes=5))
                .build()
            )
        path = self._dir / f"{name}.crl.pem"
        path.write_bytes(
            builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        return path

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey, start: datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
        )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(directory: Path, name: str, cert: x509.Certificate, key: object) -> Issued:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    issued = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return issued


SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Authority
    rogue: Authority
    connector: Issued
    gateway_server: Issued
    gateway_client: Issued
    portal: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "federation")
    return Pki(
        dir=directory,
        ca=ca,
        rogue=Authority(directory, "rogue"),
        connector=ca.issue("connector", SERVER),
        gateway_server=ca.issue("gateway-server", SERVER),
        gateway_client=ca.issue("gateway-client", CLIENT),
        portal=ca.issue("portal", CLIENT),
    )


def _attacker(ca_file: Path, cert: Issued | None) -> ssl.SSLContext:
    """A client context built by hand, without gateway.tls's checks, as an attacker would."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def _records(tmp: Path, name: str) -> Path:
    return write_records(tmp / f"{name}.jsonl", RECORDS[name])


def _files(issued: Issued) -> dict[str, Path]:
    return {"cert_file": issued.cert, "key_file": issued.key}


@contextlib.contextmanager
def _connectors(tmp, tls_by_name, apps=None):
    """Reference connectors (plain ones unless `apps` are given), each serving https with its own
    context; yields name -> URL."""
    apps = apps or {name: create_reference_app(name, _records(tmp, name)) for name in tls_by_name}
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(BackgroundServer(apps[name], tls=tls)).url
            for name, tls in tls_by_name.items()
        }


def _lookup(url: str, token: str, tls: ssl.SSLContext) -> httpx.Response:
    body = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "SAFEGUARDING_ENQUIRY"}}
    headers = {"authorization": f"Bearer {token}"}
    return httpx.post(f"{url}/graphql", json=body, headers=headers, verify=tls, timeout=10)


BAD_CLIENTS = [
    pytest.param(lambda pki: None, id="no-client-certificate"),
    pytest.param(lambda pki: pki.rogue.issue("rogue-client", CLIENT), id="another-ca"),
    pytest.param(
        lambda pki: pki.ca.issue("expired", CLIENT, valid_from=timedelta(days=-3)), id="expired"
    ),
    pytest.param(
        lambda pki: pki.ca.issue("early", CLIENT, valid_from=timedelta(days=1)),
        id="not-yet-valid",
    ),
    pytest.param(lambda pki: pki.connector, id="server-only-certificate"),
]
"""Client certificates (or none) that a server requiring mutual TLS must refuse."""


# --- a connector requiring the gateway's client certificate --------------------------------------


@pytest.fixture(scope="module")
def mtls_connector(pki, tmp_path_factory):
    app = create_reference_app("health", _records(tmp_path_factory.mktemp("conn"), "health"))
    tls = server_context(ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file))
    with BackgroundServer(app, tls=tls) as server:
        yield server.url


def test_a_connector_serving_mutual_tls_has_an_https_url_and_lets_the_gateway_in(
    pki, mtls_connector
):
    tls = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client)))
    assert mtls_connector.startswith("https://127.0.0.1:")
    assert httpx.get(f"{mtls_connector}/healthz", verify=tls).status_code == 200


@pytest.mark.parametrize("client", BAD_CLIENTS)
def test_a_connector_refuses_a_client_without_a_valid_certificate_from_its_ca(
    pki, mtls_connector, client
):
    tls = _attacker(pki.ca.ca_file, client(pki))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{mtls_connector}/healthz", verify=tls)


def test_a_gateway_checks_the_host_name_in_a_connector_certificate(pki, tmp_path):
    elsewhere = pki.ca.issue("elsewhere", SERVER, ip=IPv4Address("10.9.9.9"))
    app = create_reference_app("health", _records(tmp_path, "health"))
    tls = client_context(ClientTls(ca_file=pki.ca.ca_file))
    server_tls = server_context(ServerTls(**_files(elsewhere)))
    with (
        BackgroundServer(app, tls=server_tls) as server,
        pytest.raises(httpx.ConnectError, match="IP address mismatch"),
    ):
        httpx.get(f"{server.url}/healthz", verify=tls)


# --- the gateway's fan-out ---------------------------------------------------------------------


def test_connectors_the_gateway_cannot_trust_or_reach_are_failed_sources_not_data(pki, tmp_path):
    """social_care is a trusted https connector; health's certificate is from the rogue CA;
    education requires a client certificate this gateway does not have."""
    rogue_server = pki.rogue.issue("rogue-server", SERVER)
    servers = {
        "health": server_context(ServerTls(**_files(rogue_server))),
        "education": server_context(
            ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file)
        ),
        "social_care": server_context(ServerTls(**_files(pki.connector))),
    }
    with _connectors(tmp_path, servers) as urls:
        sources = [reference_source(name, url) for name, url in urls.items()]
        with running_gateway(
            tmp_path, sources, connector_tls=ClientTls(ca_file=pki.ca.ca_file)
        ) as gw:
            lookup = gw.lookup("health_visitor", NHS)["data"]["child"]
    statuses = {s["source"]: (s["status"], s["errorCode"]) for s in lookup["sources"]}
    assert statuses == {
        "health": ("FAILED", "CONNECTION_FAILED"),
        "education": ("FAILED", "CONNECTION_FAILED"),
        "social_care": ("ANSWERED", None),
    }
    assert lookup["complete"] is False
    assert {r["source"] for r in lookup["records"]} == {"social_care"}


# --- both sides at once ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls_stack(pki, tmp_path_factory):
    """Connectors requiring the gateway's client certificate and checking its signed requests;
    a gateway serving https and requiring portals' client certificates."""
    tmp = tmp_path_factory.mktemp("stack")
    ensure_dev_keys(tmp)
    # The gateway's request-signing key, made before the gateway (which reuses it) so that the
    # connectors can be given its public key: they cannot fetch its JWKS through client-cert TLS.
    ensure_key_pair(tmp / DEV_KEY_FILE, tmp / DEV_PUBLIC_KEY_FILE)
    gateway_key = StaticKey(load_public_key(tmp / DEV_PUBLIC_KEY_FILE))
    tls = server_context(ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file))
    apps = {}
    answer_keys = {}
    for name in RECORDS:
        private, answer_keys[name] = connector_key(tmp, name)
        apps[name] = create_reference_app(
            name,
            _records(tmp, name),
            verifier=RequestVerifier(gateway_key, issuer="childlookup-gateway"),
            signer=AnswerSigner.from_pem_file(private),
        )
    with _connectors(tmp, dict.fromkeys(RECORDS, tls), apps) as urls:
        sources = [
            reference_source(name, url, answer_key_file=answer_keys[name])
            for name, url in urls.items()
        ]
        settings = {
            "connector_tls": ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client)),
            "server_tls": ServerTls(**_files(pki.gateway_server), client_ca_file=pki.ca.ca_file),
        }
        with running_gateway(tmp, sources, **settings) as gateway:
            yield gateway


def test_a_lookup_over_mutual_tls_on_both_sides_answers_from_every_source(pki, mtls_stack):
    portal = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.portal)))
    response = _lookup(mtls_stack.url, mtls_stack.token("social_worker"), portal)
    assert mtls_stack.url.startswith("https://")
    lookup = response.json()["data"]["child"]
    assert {s["source"]: s["status"] for s in lookup["sources"]} == dict.fromkeys(
        RECORDS, "ANSWERED"
    )
    assert lookup["complete"] is True
    assert lookup["child"]["name"]["given"] == "Amelia"


def test_a_connector_requiring_client_certificates_serves_its_answer_keys_to_the_gateway(
    pki, tmp_path
):
    """A connector certified by the federation's CA and requiring the gateway's certificate
    publishes its answer keys behind the same TLS: the gateway fetches them as it asks for
    records, with its own CA and client certificate, and its signed answers are trusted."""
    private, _ = connector_key(tmp_path, "health")
    app = create_reference_app(
        "health", _records(tmp_path, "health"), signer=AnswerSigner.from_pem_file(private)
    )
    tls = server_context(ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file))
    with _connectors(tmp_path, {"health": tls}, {"health": app}) as urls:
        jwks = urls["health"] + JWKS_PATH
        source = reference_source("health", urls["health"]).model_copy(
            update={"answer_jwks_url": jwks}
        )
        connector_tls = ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client))
        with running_gateway(tmp_path, [source], connector_tls=connector_tls) as gateway:
            lookup = gateway.lookup("social_worker", NHS)["data"]["child"]
        with pytest.raises(httpx.TransportError):  # no way in without the client certificate
            httpx.get(jwks, verify=client_context(ClientTls(ca_file=pki.ca.ca_file)))
    assert {s["source"]: s["status"] for s in lookup["sources"]} == {"health": "ANSWERED"}
    assert lookup["child"]["name"]["given"] == "Amelia"


def test_a_witness_behind_mutual_tls_has_its_receipts_checked_with_keys_fetched_through_it(
    pki, tmp_path
):
    """A witness configured with `answer_jwks_url` (`[[witnesses]]`) serves its keys behind the
    same TLS as its checkpoints: the gateway fetches them over CHILDLOOKUP_CONNECTOR_TLS."""
    private, _ = connector_key(tmp_path, "ig-witness")
    signer = AnswerSigner.from_pem_file(private)
    app = create_reference_app("health", _records(tmp_path, "health"), signer=signer)
    tls = server_context(ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file))
    receipt = b'{"witnessed": 42}'
    signature = signer.sign(receipt, source="ig-witness")

    def checks(connector_tls: ssl.SSLContext | None) -> bool:
        config = WitnessConfig(name="ig-witness", url=url, answer_jwks_url=url + JWKS_PATH)
        (witness,) = configured_witnesses("childlookup-gateway", [], [config], {}, connector_tls)
        assert witness.verifier is not None
        try:
            run(witness.verifier.verify(signature, receipt, source="ig-witness"))
        except TrustError:
            return False
        return True

    with _connectors(tmp_path, {"health": tls}, {"health": app}) as urls:
        url = urls["health"]
        federation = ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client))
        assert checks(connector_client_context(federation, []))
        assert not checks(None)  # the public CAs, no client certificate: no keys


def test_cli_connectors_take_the_gateways_keys_from_its_federation_certified_https(pki, tmp_path):
    """`connector serve --gateway-jwks` fetches over https trusting the public CAs, which know
    nothing of a federation's own CA: `--gateway-jwks-ca` names it, `--gateway-key` takes the
    keys out of band instead. Without either, every signed request is refused."""
    ensure_key_pair(tmp_path / DEV_KEY_FILE, tmp_path / DEV_PUBLIC_KEY_FILE)
    statuses = _cli_connectors_behind(
        tmp_path,
        ServerTls(**_files(pki.gateway_server)),
        client_context(ClientTls(ca_file=pki.ca.ca_file)),
        lambda jwks: {
            "health": ["--gateway-jwks", jwks, "--gateway-jwks-ca", str(pki.ca.ca_file)],
            "education": ["--gateway-key", str(tmp_path / DEV_PUBLIC_KEY_FILE)],
            "social_care": ["--gateway-jwks", jwks],  # the public CAs: the gateway is refused
        },
    )
    assert statuses == {"health": "ANSWERED", "education": "ANSWERED", "social_care": "FAILED"}


def test_cli_connectors_fetch_the_keys_of_a_gateway_requiring_client_certificates(pki, tmp_path):
    """A gateway serving its portals with mutual TLS answers a fetch of its keys only over a
    connection with a client certificate: `--gateway-jwks-cert` and `--gateway-jwks-key`."""
    fetcher = pki.ca.issue("connector-fetching-keys", CLIENT)
    server_tls = ServerTls(**_files(pki.gateway_server), client_ca_file=pki.ca.ca_file)
    federation = ["--gateway-jwks-ca", str(pki.ca.ca_file)]
    statuses = _cli_connectors_behind(
        tmp_path,
        server_tls,
        _portal(pki),
        lambda jwks: {
            "health": [
                *("--gateway-jwks", jwks, *federation),
                *("--gateway-jwks-cert", str(fetcher.cert), "--gateway-jwks-key", str(fetcher.key)),
            ],
            "education": ["--gateway-jwks", jwks, *federation],  # refused at the handshake
        },
    )
    assert statuses == {"health": "ANSWERED", "education": "FAILED"}


def _keys_options(**given: object) -> argparse.Namespace:
    options = ("gateway_jwks", "gateway_key", "gateway_jwks_ca", "gateway_jwks_cert")
    return argparse.Namespace(**dict.fromkeys((*options, "gateway_jwks_key")) | given)


def test_options_for_fetching_the_gateways_keys_need_what_they_are_for(pki):
    jwks = "https://gateway.example/.well-known/jwks.json"
    client = {"gateway_jwks_cert": pki.portal.cert, "gateway_jwks_key": pki.portal.key}
    with pytest.raises(ValueError, match="--gateway-jwks-cert, --gateway-jwks-key: for fetching"):
        gateway_keys(_keys_options(**client))
    with pytest.raises(ValueError, match="--gateway-jwks-ca: for fetching --gateway-jwks"):
        gateway_keys(_keys_options(gateway_jwks_ca=pki.ca.ca_file))
    with pytest.raises(ValueError, match="together"):
        gateway_keys(_keys_options(gateway_jwks=jwks, gateway_jwks_cert=pki.portal.cert))
    mismatched = client | {"gateway_jwks_key": pki.connector.key}
    with pytest.raises(TlsError, match="does not match certificate file"):
        gateway_keys(_keys_options(gateway_jwks=jwks, **mismatched))
    assert gateway_keys(_keys_options(gateway_jwks=jwks, **client)) is not None


def _cli_connectors_behind(
    tmp_path: Path,
    server_tls: ServerTls,
    portal: ssl.SSLContext,
    options: Callable[[str], dict[str, list[str]]],
) -> dict[str, str]:
    """Run `connector serve` for each agency `options` names, with the options it gives for the
    gateway's JWKS URL, behind a gateway serving https with `server_tls`; one lookup through
    `portal`: each source's status."""
    gateway_sock = bind_socket("127.0.0.1", 0)
    trusted = options(socket_url(gateway_sock, tls=True) + JWKS_PATH)
    ports = {name: free_port() for name in trusted}
    processes = [
        subprocess.Popen(
            [
                *CLI,
                *("connector", "serve", "--agency", name, "--port", str(ports[name])),
                *("--records", str(_records(tmp_path, name)), *trusted[name]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in trusted
    ]
    try:
        for name, process in zip(trusted, processes, strict=True):
            wait_for(f"http://127.0.0.1:{ports[name]}/healthz", process)
        sources = [reference_source(n, f"http://127.0.0.1:{p}") for n, p in ports.items()]
        with running_gateway(tmp_path, sources, sock=gateway_sock, server_tls=server_tls) as gw:
            lookup = _lookup(gw.url, gw.token("social_worker"), portal).json()["data"]["child"]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
    return {s["source"]: s["status"] for s in lookup["sources"]}


@pytest.mark.parametrize("client", BAD_CLIENTS)
def test_a_gateway_requiring_client_certificates_refuses_a_portal_without_one(
    pki, mtls_stack, client
):
    with pytest.raises(httpx.TransportError):
        _lookup(mtls_stack.url, mtls_stack.token("gp"), _attacker(pki.ca.ca_file, client(pki)))


def test_a_gateway_refuses_plain_http_on_its_https_port(mtls_stack):
    with pytest.raises(httpx.TransportError):
        httpx.get(mtls_stack.url.replace("https://", "http://") + "/healthz")


def test_a_gateway_serving_https_without_a_client_ca_lets_any_portal_in(pki, tmp_path):
    sources = [reference_source("health", f"https://127.0.0.1:{free_port()}")]
    server_tls = ServerTls(**_files(pki.gateway_server))
    with running_gateway(tmp_path, sources, server_tls=server_tls) as gateway:
        tls = client_context(ClientTls(ca_file=pki.ca.ca_file))
        assert httpx.get(f"{gateway.url}/healthz", verify=tls).status_code == 200


@pytest.mark.parametrize("crl_for", [timedelta(hours=6), timedelta(days=3)], ids=["crl", "cert"])
def test_metrics_say_when_the_gateways_https_stops_working_without_a_restart(
    pki, tmp_path, crl_for
):
    """The sooner of the certificate's expiry and the client CRL's next update, for an alert in
    time to renew or fetch and restart."""
    crl = pki.ca.revocations(f"next-update-{crl_for.total_seconds():.0f}", [], next_update=crl_for)
    server_tls = ServerTls(
        **_files(pki.gateway_server), client_ca_file=pki.ca.ca_file, client_crl_file=crl
    )
    sources = [reference_source("health", f"https://127.0.0.1:{free_port()}")]
    with running_gateway(tmp_path, sources, server_tls=server_tls) as gateway:
        portal = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.portal)))
        text = httpx.get(f"{gateway.url}/metrics", verify=portal).text

    [value] = re.findall(r"^childlookup_tls_valid_until_timestamp_seconds (\S+)$", text, re.M)
    next_update = x509.load_pem_x509_crl(crl.read_bytes()).next_update_utc
    not_after = x509.load_pem_x509_certificate(pki.gateway_server.cert.read_bytes())
    assert next_update is not None
    assert float(value) == min(next_update, not_after.not_valid_after_utc).timestamp()


# --- files taken up while serving ----------------------------------------------------------------


def _served_serial(url: str, client: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to `url` is shown."""
    host, port = url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _serial(issued: Issued) -> int:
    return x509.load_pem_x509_certificate(issued.cert.read_bytes()).serial_number


def _put(source: Issued, target: Issued) -> None:
    """Put `source`'s certificate and key where `target`'s are, as deployment.md says a renewal
    should: each file written whole beside it, then renamed into place."""
    for new, path in ((source.cert, target.cert), (source.key, target.key)):
        written = path.with_name(path.name + ".new")
        written.write_bytes(new.read_bytes())
        os.replace(written, path)


@pytest.fixture
def renewable(pki, tmp_path) -> Issued:
    """A copy of the connector's certificate and key in files of their own, to renew in place."""
    served = Issued(tmp_path / "served.pem", tmp_path / "served-key.pem")
    _put(pki.connector, served)
    return served


def _portal(pki: Pki) -> ssl.SSLContext:
    return client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.portal)))


@pytest.fixture
def trusted(pki, tmp_path) -> Path:
    """A copy of the federation's CA file, as a server's client CAs, to change in place."""
    path = tmp_path / "client-cas.pem"
    path.write_bytes(pki.ca.ca_file.read_bytes())
    return path


def _trust_another_ca(trusted: Path, name: str) -> None:
    """Add a CA to the client CAs in `trusted`, written whole and renamed into place, as a
    federation taking on a new CA would: whether the clients already connected are trusted as
    before, only their next handshake can tell (Verdict.UNSURE)."""
    another = Authority(trusted.parent, name)
    written = trusted.with_name(trusted.name + ".new")
    written.write_bytes(trusted.read_bytes() + another.ca_file.read_bytes())
    os.replace(written, trusted)


def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(pki, renewable):
    app = create_reference_app("health", _records(pki.dir, "health"))
    tls = ReloadingContext(ServerFiles(renewable.cert, renewable.key, pki.ca.ca_file), every_s=0)
    renewed = pki.ca.issue("connector-renewed", SERVER)
    with BackgroundServer(app, tls=tls) as server:
        assert not tls.reload_if_changed()  # nothing changed yet
        _put(renewed, renewable)
        assert _served_serial(server.url, _portal(pki)) == _serial(pki.connector)
        assert tls.reload_if_changed()
        assert _served_serial(server.url, _portal(pki)) == _serial(renewed)
        assert httpx.get(f"{server.url}/healthz", verify=_portal(pki)).status_code == 200


def test_a_new_revocation_list_refuses_a_client_from_then_on(pki, tmp_path):
    app = create_reference_app("health", _records(pki.dir, "health"))
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.ca.revocations("none-revoked", []).read_bytes())
    files = ServerFiles(pki.connector.cert, pki.connector.key, pki.ca.ca_file, crl)
    tls = ReloadingContext(files, every_s=0)
    leaving = pki.ca.issue("leaving-client", CLIENT)
    with BackgroundServer(app, tls=tls) as server:
        client = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(leaving)))
        assert httpx.get(f"{server.url}/healthz", verify=client).status_code == 200
        crl.write_bytes(pki.ca.revocations("leaving-revoked", [leaving]).read_bytes())
        assert tls.reload_if_changed()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", verify=client)
        assert httpx.get(f"{server.url}/healthz", verify=_portal(pki)).status_code == 200


def _held_open(url: str, client: ssl.SSLContext, path: str = "/healthz") -> HTTPSConnection:
    """A keep-alive connection to `url` that has been answered once: open, idle, held."""
    host, port = url.removeprefix("https://").split(":")
    connection = HTTPSConnection(host, int(port), context=client, timeout=5)
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200
    assert answer.getheader("connection") != "close"
    return connection


def _closed_by_the_server(connection: HTTPSConnection, within_s: float = 3.0) -> bool:
    """Whether the server closes `connection` within `within_s`: shorter than uvicorn's 5 s
    keep-alive timeout, so a connection closed only by that timeout does not count."""
    assert connection.sock is not None
    connection.sock.settimeout(within_s)
    try:
        return connection.sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_new_revocation_list_closes_the_connection_a_revoked_client_holds_open(
    pki, tmp_path, capfd
):
    """Not only new connections: the one the revoked client had open is closed at once, with no
    last request, and its client cannot connect again; a client the list does not name keeps
    the connection it holds, and is answered on it as before."""
    configure_logging()
    app = create_reference_app("health", _records(pki.dir, "health"))
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.ca.revocations("none-revoked-yet", []).read_bytes())
    files = ServerFiles(pki.connector.cert, pki.connector.key, pki.ca.ca_file, crl)
    tls = ReloadingContext(files, every_s=0)
    leaving = pki.ca.issue("leaving-holder", CLIENT)
    revoked = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(leaving)))
    with BackgroundServer(app, tls=tls) as server:
        held = _held_open(server.url, revoked)
        staying = _held_open(server.url, _portal(pki))
        crl.write_bytes(pki.ca.revocations("holder-revoked", [leaving]).read_bytes())
        assert tls.reload_if_changed()
        assert _closed_by_the_server(held, within_s=0.8 * LAST_CALL_S)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _held_open(server.url, revoked)
        staying.request("GET", "/healthz")
        answer = staying.getresponse()
        assert answer.status == 200
        assert answer.getheader("connection") != "close"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    [closed] = [line for line in lines if line.get("event") == "tls_connections_closed"]
    assert (closed["context"]["count"], closed["context"]["refused"]) == (1, 1)


def test_a_renewed_server_certificate_leaves_the_connections_open(pki, renewable, capfd):
    """The renewal changes nothing about the clients: a connection held open is not closed, not
    even once a last request's time is up, and is answered as before; new connections get the
    renewed certificate."""
    configure_logging()
    app = create_reference_app("health", _records(pki.dir, "health"))
    tls = ReloadingContext(ServerFiles(renewable.cert, renewable.key, pki.ca.ca_file), every_s=0)
    renewed = pki.ca.issue("renewed-under-a-held-connection", SERVER)
    with BackgroundServer(app, tls=tls) as server:
        held = _held_open(server.url, _portal(pki))
        _put(renewed, renewable)
        assert tls.reload_if_changed()
        assert not _closed_by_the_server(held, within_s=2 * LAST_CALL_S)
        held.request("GET", "/healthz")
        answer = held.getresponse()
        assert answer.status == 200
        assert answer.getheader("connection") != "close"
        assert _served_serial(server.url, _portal(pki)) == _serial(renewed)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    assert not [line for line in lines if line.get("event") == "tls_connections_closed"]


def _der(issued: Issued) -> bytes:
    certificate = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


def _crl(path: Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(path.read_bytes())


def test_what_new_files_make_of_a_client_already_connected(pki):
    federation = x509.load_pem_x509_certificate(pki.ca.ca_file.read_bytes())
    rogue = x509.load_pem_x509_certificate(pki.rogue.ca_file.read_bytes())
    portal = _der(pki.portal)
    unlisted = Admission.of([federation])
    listed = Admission.of([federation], [_crl(pki.ca.revocations("judged-none", []))])
    naming = Admission.of([federation], [_crl(pki.ca.revocations("judged-portal", [pki.portal]))])
    # The rogue CA's list names the portal's serial number: under another issuer, not it.
    rogue_list = _crl(pki.rogue.revocations("rogue-naming-the-portals-serial", [pki.portal]))
    assert [entry.serial_number for entry in rogue_list] == [_serial(pki.portal)]
    elsewhere = Admission.of(
        [federation, rogue], [_crl(pki.ca.revocations("judged-none-again", [])), rogue_list]
    )
    assert listed.judge(unlisted, portal) is Verdict.KEPT
    assert naming.judge(listed, portal) is Verdict.REFUSED
    assert Admission.of([federation], []).judge(listed, portal) is Verdict.REFUSED  # no list
    assert Admission.of([federation, rogue]).judge(unlisted, portal) is Verdict.UNSURE
    assert elsewhere.judge(Admission.of([federation, rogue]), portal) is Verdict.KEPT
    assert unlisted.judge(Admission(), None) is Verdict.REFUSED  # client certificates now asked
    assert Admission().judge(Admission(), None) is Verdict.KEPT
    assert unlisted.judge(unlisted, b"not a certificate") is Verdict.KEPT  # nothing to check it by
    assert listed.judge(listed, b"not a certificate") is Verdict.UNSURE


def test_an_idle_connection_retired_by_a_reload_answers_a_last_request_then_closes(pki, trusted):
    """Its client may not be trusted under the new CAs, though nothing says it is refused: a
    request it sends just as they are taken up is answered, with `Connection: close`, not lost
    to a connection closed under it."""
    app = create_reference_app("health", _records(pki.dir, "health"))
    tls = ReloadingContext(ServerFiles(pki.connector.cert, pki.connector.key, trusted), every_s=0)
    with BackgroundServer(app, tls=tls) as server:
        idle = _held_open(server.url, _portal(pki))
        _trust_another_ca(trusted, "ca-taken-on-under-an-idle-connection")
        assert tls.reload_if_changed()
        idle.request("GET", "/healthz")
        answer = idle.getresponse()
        assert (answer.status, answer.getheader("connection")) == (200, "close")


def test_a_connection_busy_when_new_files_are_taken_up_gets_its_answer_then_closes(pki, trusted):
    inside, finish = threading.Event(), threading.Event()

    async def slow(request: Request) -> PlainTextResponse:
        inside.set()
        await asyncio.to_thread(finish.wait, 10)
        return PlainTextResponse("answered")

    app = Starlette(routes=[Route("/slow", slow), Route("/healthz", slow)])
    tls = ReloadingContext(ServerFiles(pki.connector.cert, pki.connector.key, trusted), every_s=0)
    with BackgroundServer(app, tls=tls) as server:
        host, port = server.url.removeprefix("https://").split(":")
        busy = HTTPSConnection(host, int(port), context=_portal(pki), timeout=10)
        busy.request("GET", "/slow")
        assert inside.wait(10)
        _trust_another_ca(trusted, "ca-taken-on-under-a-busy-connection")
        assert tls.reload_if_changed()
        finish.set()
        answer = busy.getresponse()
        assert (answer.status, answer.read()) == (200, b"answered")
        assert answer.getheader("connection") == "close"  # and then it closes


class _ReloadingMidHandshake(ReloadingContext):
    """Takes up its changed files just after a handshake has begun with the old ones: the race
    between a reload and a connection arriving, made to happen every time."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        begun = super().wrap_bio(*args, **kwargs)
        self.reload_if_changed()
        return begun


def test_a_connection_whose_handshake_straddled_a_reload_answers_once_then_closes(pki, trusted):
    """The reload did not see it (it was not yet open), and its client did nothing wrong, but
    may not be trusted under the new CAs: its request is answered with `Connection: close`, and
    it is closed; it is not cut off."""
    files = ServerFiles(pki.connector.cert, pki.connector.key, trusted)
    tls = _ReloadingMidHandshake(files, every_s=0)
    app = create_reference_app("health", _records(pki.dir, "health"))
    _trust_another_ca(trusted, "ca-taken-on-mid-handshake")
    with BackgroundServer(app, tls=tls) as server:
        host, port = server.url.removeprefix("https://").split(":")
        straddling = HTTPSConnection(host, int(port), context=_portal(pki), timeout=5)
        straddling.request("GET", "/healthz")
        answer = straddling.getresponse()
        assert (answer.status, answer.getheader("connection")) == (200, "close")
        _trust_another_ca(trusted, "another-ca-taken-on-mid-handshake")
        idle = HTTPSConnection(host, int(port), context=_portal(pki), timeout=5)
        idle.connect()  # straddles the next reload, and sends nothing
        assert _closed_by_the_server(idle)  # after its grace, not at uvicorn's keep-alive
        assert httpx.get(f"{server.url}/healthz", verify=_portal(pki)).status_code == 200


def test_a_revoked_client_whose_handshake_straddled_the_reload_is_closed_at_once(pki, tmp_path):
    """The list that revokes it was taken up while it was connecting: judged as it opens, it is
    closed before it can send a request."""
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.ca.revocations("none-revoked-before-the-handshake", []).read_bytes())
    files = ServerFiles(pki.connector.cert, pki.connector.key, pki.ca.ca_file, crl)
    tls = _ReloadingMidHandshake(files, every_s=0)
    leaving = pki.ca.issue("leaving-mid-handshake", CLIENT)
    app = create_reference_app("health", _records(pki.dir, "health"))
    crl.write_bytes(pki.ca.revocations("revoked-mid-handshake", [leaving]).read_bytes())
    with BackgroundServer(app, tls=tls) as server:
        host, port = server.url.removeprefix("https://").split(":")
        revoked = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(leaving)))
        straddling = HTTPSConnection(host, int(port), context=revoked, timeout=5)
        straddling.connect()
        assert _closed_by_the_server(straddling, within_s=0.8 * LAST_CALL_S)


def test_unusable_new_files_leave_the_served_ones_in_place_and_say_why(pki, renewable, capfd):
    """A certificate written before its key: the old pair is still served, the fault is logged,
    and the files are taken up once the key follows."""
    configure_logging()
    app = create_reference_app("health", _records(pki.dir, "health"))
    tls = ReloadingContext(ServerFiles(renewable.cert, renewable.key), every_s=0)
    renewed = pki.ca.issue("connector-half-renewed", SERVER)
    with BackgroundServer(app, tls=tls) as server:
        renewable.cert.write_bytes(renewed.cert.read_bytes())
        assert not tls.reload_if_changed()
        assert _served_serial(server.url, _portal(pki)) == _serial(pki.connector)
        assert not tls.reload_if_changed()  # tried again only once the files change again
        renewable.key.write_bytes(renewed.key.read_bytes())
        assert tls.reload_if_changed()
        assert _served_serial(server.url, _portal(pki)) == _serial(renewed)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    [failed] = [line for line in lines if line.get("event") == "tls_reload_failed"]
    assert "does not match certificate file" in failed["context"]["reason"]


def test_a_blocking_server_wrapping_its_sockets_serves_the_loaded_files_too(pki, renewable):
    tls = ReloadingContext(ServerFiles(renewable.cert, renewable.key), every_s=0)
    renewed = pki.ca.issue("connector-socket-renewed", SERVER)
    _put(renewed, renewable)
    assert tls.reload_if_changed()
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        handshake = threading.Thread(
            target=lambda: tls.wrap_socket(server_end, server_side=True).close(), daemon=True
        )
        handshake.start()
        client = client_context(ClientTls(ca_file=pki.ca.ca_file))
        with client.wrap_socket(client_end, server_hostname="127.0.0.1") as wrapped:
            der = wrapped.getpeercert(binary_form=True)
        handshake.join(timeout=10)
    assert der is not None
    assert x509.load_der_x509_certificate(der).serial_number == _serial(renewed)


def test_the_gateways_renewed_client_certificate_is_presented_to_connectors(pki, tmp_path):
    """Its certificate revoked by the connector's CA, the gateway is refused; renewed in place,
    it is let in again, over the fan-out's own transport, with no restart, and
    childlookup_connector_tls_valid_until_timestamp_seconds gives the new expiry."""
    revoked = Issued(tmp_path / "gw-client.pem", tmp_path / "gw-client-key.pem")
    _put(pki.ca.issue("gateway-client-compromised", CLIENT), revoked)
    renewed = pki.ca.issue("gateway-client-renewed", CLIENT, valid_for=timedelta(days=2))
    crl = pki.ca.revocations("compromised", [revoked])
    connector = ReloadingContext(
        ServerFiles(pki.connector.cert, pki.connector.key, pki.ca.ca_file, crl), every_s=0
    )
    gateway = connector_client_context(
        ClientTls(ca_file=pki.ca.ca_file, **_files(revoked), reload_s=0), []
    )
    assert isinstance(gateway, ReloadingContext)

    async def status(url: str) -> int | str:
        async with httpx.AsyncClient(transport=ConnectorTransport(gateway)) as client:
            try:
                return (await client.get(f"{url}/healthz")).status_code
            except httpx.TransportError:
                return "refused"

    app = create_reference_app("health", _records(pki.dir, "health"))
    with BackgroundServer(app, tls=connector) as server:
        before = run(status(server.url))
        _put(renewed, revoked)
        assert gateway.reload_if_changed()
        after = run(status(server.url))
    assert (before, after) == ("refused", 200)
    metric = "childlookup_connector_tls_valid_until_timestamp_seconds"
    expiry = x509.load_pem_x509_certificate(renewed.cert.read_bytes()).not_valid_after_utc
    assert REGISTRY.get_sample_value(metric) == expiry.timestamp()


def test_the_gateway_counts_changed_tls_files_it_refused(pki, renewable):
    """For an alert: childlookup_tls_reloads_refused_total{side="server"} counts each refusal."""
    tls = server_context(ServerTls(**_files(renewable), reload_s=0))
    assert isinstance(tls, ReloadingContext)
    metric, labels = "childlookup_tls_reloads_refused_total", {"side": "server"}
    before = REGISTRY.get_sample_value(metric, labels) or 0.0
    renewable.key.write_bytes(pki.portal.key.read_bytes())  # not the certificate's key
    assert not tls.reload_if_changed()
    assert REGISTRY.get_sample_value(metric, labels) == before + 1


def test_the_gateway_looks_at_its_files_by_itself_and_its_metric_follows(pki, tmp_path):
    """CHILDLOOKUP_SERVER_TLS's reload_s: a fetched CRL with a later next update is taken up, and
    childlookup_tls_valid_until_timestamp_seconds moves with it."""
    crl = tmp_path / "gateway-crl.pem"
    crl.write_bytes(pki.ca.revocations("soon", [], next_update=timedelta(hours=2)).read_bytes())
    server_tls = ServerTls(
        **_files(pki.gateway_server),
        client_ca_file=pki.ca.ca_file,
        client_crl_file=crl,
        reload_s=0.1,
    )
    sources = [reference_source("health", f"https://127.0.0.1:{free_port()}")]

    def valid_until(url: str) -> float:
        text = httpx.get(f"{url}/metrics", verify=_portal(pki)).text
        [value] = re.findall(r"^childlookup_tls_valid_until_timestamp_seconds (\S+)$", text, re.M)
        return float(value)

    with running_gateway(tmp_path, sources, server_tls=server_tls) as gateway:
        first = valid_until(gateway.url)
        crl.write_bytes(
            pki.ca.revocations("later", [], next_update=timedelta(hours=5)).read_bytes()
        )
        deadline = time.monotonic() + 20
        while (now := valid_until(gateway.url)) == first and time.monotonic() < deadline:
            time.sleep(0.05)
    assert now - first == pytest.approx(3 * 3600, abs=5)


# --- configuration errors ----------------------------------------------------------------------


def test_a_client_certificate_needs_its_key():
    with pytest.raises(ValidationError, match="both cert_file and key_file"):
        ClientTls(cert_file=Path("gateway.pem"))


def test_mutual_tls_towards_an_http_source_is_refused(pki):
    tls = ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client))
    sources = [reference_source("health", "http://127.0.0.1:8101")]
    with pytest.raises(TlsError, match="not https: health"):
        connector_client_context(tls, sources)


def _garbage(pki: Pki) -> Path:
    path = pki.dir / "garbage.pem"
    path.write_text("not a certificate\n")
    return path


def _encrypted_key(pki: Pki) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    path = pki.dir / "encrypted-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return Issued(pki.connector.cert, path)


def _weak_rsa(pki: Pki) -> Issued:
    """A certificate and key OpenSSL's default security level refuses (RSA 1024)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return _write(pki.dir, "weak", cert, key)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            lambda pki: ServerTls(cert_file=pki.dir / "absent.pem", key_file=pki.connector.key),
            r"certificate file .*absent\.pem does not exist",
        ),
        (
            lambda pki: ServerTls(cert_file=_garbage(pki), key_file=pki.connector.key),
            r"certificate file .*garbage\.pem holds no PEM certificate",
        ),
        (
            lambda pki: ServerTls(cert_file=pki.connector.cert, key_file=_garbage(pki)),
            r"key file .*garbage\.pem holds no PEM private key",
        ),
        (
            lambda pki: ServerTls(cert_file=pki.connector.cert, key_file=pki.portal.key),
            r"key file .*portal-key\.pem does not match certificate file .*connector\.pem",
        ),
        (
            lambda pki: ServerTls(**_files(_encrypted_key(pki))),
            r"key file .*encrypted-key\.pem is encrypted",
        ),
        (
            lambda pki: ServerTls(
                **_files(pki.ca.issue("stale", SERVER, valid_from=timedelta(days=-3)))
            ),
            r"certificate file .*stale\.pem is valid only from .* UTC",
        ),
        (
            lambda pki: ServerTls(**_files(_weak_rsa(pki))),
            r"certificate file .*weak\.pem was refused by OpenSSL: EE_KEY_TOO_SMALL",
        ),
        (
            lambda pki: ServerTls(**_files(pki.connector), client_ca_file=pki.dir / "none.pem"),
            r"CA file .*none\.pem does not exist",
        ),
    ],
    ids=[
        "missing-cert",
        "cert-not-pem",
        "key-not-pem",
        "key-of-another-cert",
        "encrypted-key",
        "expired-cert",
        "weak-key",
        "missing-client-ca",
    ],
)
def test_unusable_tls_files_are_named_with_what_is_wrong(pki, config, message):
    with pytest.raises(TlsError, match=message):
        server_context(config(pki))


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(TlsError, match=r"CA file .* cannot be read: Is a directory"):
        client_context(ClientTls(ca_file=tmp_path))


# --- revoked client certificates ----------------------------------------------------------------


def test_a_connector_with_its_cas_revocation_list_refuses_a_revoked_gateway_certificate(pki):
    revoked = pki.ca.issue("revoked-gateway-client", CLIENT)
    crl = pki.ca.revocations("federation-revoked", [revoked])
    app = create_reference_app("health", _records(pki.dir, "health"))
    tls = server_context(
        ServerTls(**_files(pki.connector), client_ca_file=pki.ca.ca_file, client_crl_file=crl)
    )
    with BackgroundServer(app, tls=tls) as server:
        current = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client)))
        assert httpx.get(f"{server.url}/healthz", verify=current).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", verify=_attacker(pki.ca.ca_file, revoked))


def test_the_gateway_refuses_a_connector_whose_certificate_the_federation_revoked(pki, tmp_path):
    """A connector's server key stolen and its certificate revoked: with the CA's list in
    CHILDLOOKUP_CONNECTOR_TLS, whoever serves it is a failed source, not one to send a request to
    (the revoked certificate is health's here; the others' stand)."""
    stolen = pki.ca.issue("connector-stolen", SERVER)
    servers = {
        "health": server_context(ServerTls(**_files(stolen))),
        "education": server_context(ServerTls(**_files(pki.connector))),
    }
    crl = pki.ca.revocations("connector-stolen-revoked", [stolen])
    with _connectors(tmp_path, servers) as urls:
        sources = [reference_source(name, url) for name, url in urls.items()]
        with running_gateway(
            tmp_path, sources, connector_tls=ClientTls(ca_file=pki.ca.ca_file, crl_file=crl)
        ) as gw:
            lookup = gw.lookup("health_visitor", NHS)["data"]["child"]
    statuses = {s["source"]: (s["status"], s["errorCode"]) for s in lookup["sources"]}
    assert statuses == {
        "health": ("FAILED", "CONNECTION_FAILED"),
        "education": ("ANSWERED", None),
    }


def test_a_new_revocation_list_keeps_the_fan_out_from_reusing_a_connection_it_revokes(
    pki, tmp_path
):
    """A connection the pool holds was checked under the old list: once a new one is taken up,
    it is not reused, and the revoked connector is refused from the next request on."""
    crl = tmp_path / "connectors.crl.pem"
    crl.write_bytes(pki.ca.revocations("none-revoked-yet", []).read_bytes())
    revoked = pki.ca.issue("connector-revoked-later", SERVER)
    gateway = connector_client_context(
        ClientTls(ca_file=pki.ca.ca_file, crl_file=crl, reload_s=0), []
    )
    assert isinstance(gateway, ReloadingContext)
    app = create_reference_app("health", _records(pki.dir, "health"))

    async def statuses(url: str) -> list[int | str]:
        seen: list[int | str] = []
        async with httpx.AsyncClient(transport=ConnectorTransport(gateway)) as client:
            for step in range(3):
                if step == 2:
                    crl.write_bytes(pki.ca.revocations("revoked-now", [revoked]).read_bytes())
                    assert gateway.reload_if_changed()
                try:
                    seen.append((await client.get(f"{url}/healthz")).status_code)
                except httpx.ConnectError:
                    seen.append("refused")
        return seen

    tls = server_context(ServerTls(**_files(revoked)))
    with BackgroundServer(app, tls=tls) as server:
        assert run(statuses(server.url)) == [200, 200, "refused"]


def test_a_revocation_list_for_connectors_needs_their_ca():
    with pytest.raises(ValidationError, match=r"crl_file .* give ca_file"):
        ClientTls(crl_file=Path("connectors.crl.pem"))


@pytest.mark.parametrize(
    ("crl", "message"),
    [
        (
            lambda pki: pki.ca.revocations("stale", [], next_update=timedelta(hours=-1)),
            r"the list from CN=federation expired at .*; fetch a current one",
        ),
        (
            lambda pki: pki.rogue.revocations("rogue-list", []),
            r"the list from CN=rogue is not signed by a CA in .*federation-ca\.pem",
        ),
        (lambda pki: pki.ca.ca_file, r"CRL file .*federation-ca\.pem holds no PEM CRL"),
        (lambda pki: pki.dir / "none.crl.pem", r"CRL file .*none\.crl\.pem does not exist"),
    ],
    ids=["expired", "another-ca", "not-a-crl", "missing"],
)
def test_an_unusable_revocation_list_stops_start_up_saying_why(pki, crl, message):
    config = ServerTls(
        **_files(pki.connector), client_ca_file=pki.ca.ca_file, client_crl_file=crl(pki)
    )
    with pytest.raises(TlsError, match=message):
        server_context(config)


def test_a_client_ca_without_a_revocation_list_is_named_at_start_up(pki, tmp_path, capfd):
    """OpenSSL would refuse every client certificate such a CA issued: said, not refused, since
    a root that signs only other CAs needs no list."""
    configure_logging()
    authorities = tmp_path / "two-cas.pem"
    authorities.write_bytes(pki.ca.ca_file.read_bytes() + pki.rogue.ca_file.read_bytes())
    crl = pki.ca.revocations("federation-only", [])
    files = ServerFiles(pki.connector.cert, pki.connector.key, authorities, crl)
    ReloadingContext(files, every_s=0)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line[:1] == "{"]
    missing = [line["context"]["ca"] for line in lines if line.get("event") == "tls_crl_missing"]
    assert missing == ["CN=rogue"]


def test_a_revocation_list_without_the_client_ca_is_refused(pki):
    crl = pki.ca.revocations("alone", [])
    with pytest.raises(TlsError, match="give their CA too"):
        server_context(ServerTls(**_files(pki.connector), client_crl_file=crl))


# --- the command line --------------------------------------------------------------------------


def test_serve_with_a_missing_certificate_exits_with_a_clear_error(pki, tmp_path):
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "connector",
        "serve",
        "--agency",
        "health",
        "--records",
        str(_records(tmp_path, "health")),
        "--port",
        str(free_port()),
        "--tls-cert",
        str(tmp_path / "absent.pem"),
        "--tls-key",
        str(pki.connector.key),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "absent.pem does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_check_says_until_when_new_files_work_or_what_is_wrong_with_them(pki, tmp_path):
    """Run before putting renewed files in place; the gateway's and a connector's command both."""
    crl = pki.ca.revocations("check-list", [], next_update=timedelta(hours=7))
    good = [
        *("--tls-cert", str(pki.connector.cert), "--tls-key", str(pki.connector.key)),
        *("--tls-client-ca", str(pki.ca.ca_file), "--tls-client-crl", str(crl)),
    ]
    mismatched = ["--tls-cert", str(pki.connector.cert), "--tls-key", str(pki.portal.key)]
    checks = [
        subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=60, check=False)
        for command in (["tls-check", *good], ["connector", "tls-check", *mismatched])
    ]
    next_update = x509.load_pem_x509_crl(crl.read_bytes()).next_update_utc
    assert next_update is not None
    assert (checks[0].returncode, checks[1].returncode) == (0, 2)
    assert f"until {next_update.isoformat()}" in checks[0].stdout
    assert "does not match certificate file" in checks[1].stderr
    assert "Traceback" not in checks[1].stderr


def _serve_https(issued: Issued, ca: Authority) -> list[str]:
    """The --tls-* options serving `issued` and requiring client certificates from `ca`."""
    return [
        "--tls-cert",
        str(issued.cert),
        "--tls-key",
        str(issued.key),
        "--tls-client-ca",
        str(ca.ca_file),
    ]


def test_the_cli_serves_a_connector_and_the_gateway_over_mutual_tls(pki, tmp_path):
    """Both commands also given the CA's revocation list: the certificates it names are refused
    by both servers, the others let in."""
    revoked = pki.ca.issue("decommissioned-client", CLIENT)
    crl = ["--tls-client-crl", str(pki.ca.revocations("cli-revoked", [revoked]))]
    ensure_dev_keys(tmp_path)
    connector_port, gateway_port = free_port(), free_port()
    provides = ", ".join(f'"{f.value}"' for f in REFERENCE_AGENCIES["health"].provides)
    config = tmp_path / "sources.toml"
    config.write_text(
        f'[[sources]]\nname = "health"\nurl = "https://127.0.0.1:{connector_port}"\n'
        f"timeout_ms = 2000\nprovides = [{provides}]\n"
    )
    connector_tls = ClientTls(ca_file=pki.ca.ca_file, **_files(pki.gateway_client))
    env = os.environ | {
        "CHILDLOOKUP_STATE_DIR": str(tmp_path),
        "CHILDLOOKUP_CONNECTOR_TLS": connector_tls.model_dump_json(),
    }
    records = str(_records(tmp_path, "health"))
    commands = [
        [
            *("connector", "serve", "--agency", "health", "--records", records),
            *("--port", str(connector_port), *_serve_https(pki.connector, pki.ca), *crl),
        ],
        [
            *("serve", "--config", str(config), "--port", str(gateway_port)),
            *_serve_https(pki.gateway_server, pki.ca),
            *crl,
        ],
    ]
    processes = [
        subprocess.Popen(
            [*CLI, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    portal = client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(pki.portal)))
    gateway_url = f"https://127.0.0.1:{gateway_port}"
    token = issue_dev_token(
        (tmp_path / PRIVATE_KEY_FILE).read_bytes(),
        role="health_visitor",
        organisation="RR8",
        name="Hana Visitor",
        issuer="childlookup-dev",
        audience="childlookup-gateway",
    )
    try:
        _wait_until_up(f"https://127.0.0.1:{connector_port}/healthz", portal, processes[0])
        _wait_until_up(f"{gateway_url}/healthz", portal, processes[1])
        lookup = _lookup(gateway_url, token, portal).json()["data"]["child"]
        for url in (f"https://127.0.0.1:{connector_port}/healthz", f"{gateway_url}/healthz"):
            with pytest.raises(httpx.TransportError):
                httpx.get(url, verify=_attacker(pki.ca.ca_file, revoked), timeout=5)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
    assert [(s["source"], s["status"]) for s in lookup["sources"]] == [("health", "ANSWERED")]
    # The connector says until when its TLS files last (the gateway has a metric for it).
    lines = [
        json.loads(line) for line in processes[0].stderr.read().splitlines() if line[:1] == "{"
    ]
    [valid] = [line for line in lines if line.get("event") == "tls_valid_until"]
    crl_update = x509.load_pem_x509_crl(Path(crl[1]).read_bytes()).next_update_utc
    cert = x509.load_pem_x509_certificate(pki.connector.cert.read_bytes())
    assert crl_update is not None
    expected = min(crl_update, cert.not_valid_after_utc)
    assert datetime.fromisoformat(valid["context"]["at"]) == expected


def test_a_connector_takes_up_a_renewed_certificate_by_itself(pki, renewable, tmp_path):
    """`connector serve --tls-reload-s`: the renewal is served, and logged with its expiry."""
    renewed = pki.ca.issue("connector-cli-renewed", SERVER, valid_for=timedelta(days=3))
    port = free_port()
    command = [
        *("connector", "serve", "--agency", "health", "--port", str(port)),
        *("--records", str(_records(tmp_path, "health"))),
        *("--tls-cert", str(renewable.cert), "--tls-key", str(renewable.key)),
        *("--tls-reload-s", "0.1"),
    ]
    process = subprocess.Popen(
        [*CLI, *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"https://127.0.0.1:{port}"
    client = client_context(ClientTls(ca_file=pki.ca.ca_file))
    try:
        _wait_until_up(f"{url}/healthz", client, process)
        _put(renewed, renewable)
        deadline = time.monotonic() + 20
        while (served := _served_serial(url, client)) != _serial(renewed):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert served == _serial(renewed)
    assert process.stderr is not None
    lines = [json.loads(line) for line in process.stderr.read().splitlines() if line[:1] == "{"]
    loaded = [line["context"]["at"] for line in lines if line.get("event") == "tls_valid_until"]
    expiries = [
        x509.load_pem_x509_certificate(issued.cert.read_bytes()).not_valid_after_utc
        for issued in (pki.connector, renewed)
    ]
    # The first line at start; the renewal's at least once (a look between the two renames can
    # load the pair, then see the key's rename and load it again).
    assert datetime.fromisoformat(loaded[0]) == expiries[0]
    assert {datetime.fromisoformat(at) for at in loaded[1:]} == {expiries[1]}


def test_each_worker_takes_up_renewed_files_and_says_so(pki, renewable, tmp_path, redis_prefix):
    """`serve --workers 2`: each worker loads, watches and logs the files itself (the parent only
    checks them), new connections, whichever worker takes them, get the renewal, and one held
    open by a client the new revocation list names is closed by its worker."""
    renewed = pki.ca.issue("gateway-workers-renewed", SERVER, valid_for=timedelta(days=3))
    leaving = pki.ca.issue("workers-client-leaving", CLIENT)
    crl = tmp_path / "crl.pem"
    # Lists due after the certificates expire: the expiries logged are the certificates'.
    crl.write_bytes(pki.ca.revocations("workers-none-revoked", [], next_update=LATER).read_bytes())
    port = free_port()
    config = health_source_config(tmp_path / "sources.toml", free_port(), 800)
    command = [
        *("serve", "--config", str(config), "--port", str(port), "--workers", "2"),
        *("--tls-cert", str(renewable.cert), "--tls-key", str(renewable.key)),
        *("--tls-client-ca", str(pki.ca.ca_file), "--tls-client-crl", str(crl)),
        *("--tls-reload-s", "0.1"),
    ]
    env = os.environ | {
        "CHILDLOOKUP_STATE_DIR": str(tmp_path),
        "CHILDLOOKUP_REDIS_URL": redis_prefix[0],
        "CHILDLOOKUP_REDIS_PREFIX": redis_prefix[1],
    }
    log = tmp_path / "gateway.log"
    with log.open("w") as err:
        gateway = subprocess.Popen([*CLI, *command], env=env, stdout=subprocess.DEVNULL, stderr=err)
    url = f"https://127.0.0.1:{port}"
    client = _portal(pki)
    try:
        _wait_until_up(f"{url}/healthz", client, gateway)
        # Both workers started on the old files, not just one: a worker's start-up (policy, schema)
        # took over 30 s once on two cores shared with a full test run and a browser.
        deadline = time.monotonic() + 90
        while len(_loaded(log)) < 2:
            assert time.monotonic() < deadline, "the second worker never loaded its files"
            time.sleep(0.05)
        held = _held_open(url, client_context(ClientTls(ca_file=pki.ca.ca_file, **_files(leaving))))
        revoking = pki.ca.revocations("workers-client-revoked", [leaving], next_update=LATER)
        crl.write_bytes(revoking.read_bytes())
        _put(renewed, renewable)
        deadline = time.monotonic() + 20
        while {_served_serial(url, client) for _ in range(10)} != {_serial(renewed)}:
            assert time.monotonic() < deadline, "a worker kept serving the old certificate"
            time.sleep(0.05)
        assert _closed_by_the_server(held)
        time.sleep(1)  # ten looks more: both workers have logged, whichever took the connections
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    loaded = _loaded(log)
    expiries = [
        x509.load_pem_x509_certificate(issued.cert.read_bytes()).not_valid_after_utc.isoformat()
        for issued in (pki.connector, renewed)
    ]
    # Two workers, each once at start and (at least once) on renewal.
    counted = Counter(loaded)
    assert counted[expiries[0]] == 2
    assert counted[expiries[1]] >= 2
    assert set(counted) == set(expiries)
    # The held connection was closed by the worker that took it, not by a keep-alive timeout.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    assert any(line.get("event") == "tls_connections_closed" for line in lines)


LATER = timedelta(days=5)


def _loaded(log: Path) -> list[str]:
    """The `at` of every tls_valid_until line in a server's log so far."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    return [line["context"]["at"] for line in lines if line.get("event") == "tls_valid_until"]


def test_the_locator_serves_https_and_takes_up_a_renewed_certificate(pki, renewable, tmp_path):
    """`locator serve --tls-cert/--tls-key`: server certificate only (agencies' publishers present
    none), renewed in place like the others."""
    renewed = pki.ca.issue("locator-renewed", SERVER)
    port = free_port()
    command = [
        *("locator", "serve", "--port", str(port)),
        *("--tls-cert", str(renewable.cert), "--tls-key", str(renewable.key)),
        *("--tls-reload-s", "0.1"),
    ]
    env = os.environ | {"CHILDLOOKUP_LOCATOR_STATE_DIR": str(tmp_path)}
    locator = subprocess.Popen(
        [*CLI, *command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"https://127.0.0.1:{port}"
    client = client_context(ClientTls(ca_file=pki.ca.ca_file))
    try:
        _wait_until_up(f"{url}/healthz", client, locator)
        first = _served_serial(url, client)
        _put(renewed, renewable)
        deadline = time.monotonic() + 20
        while (served := _served_serial(url, client)) != _serial(renewed):
            assert time.monotonic() < deadline, "the locator kept serving the old certificate"
            time.sleep(0.05)
        assert httpx.get(f"{url}/healthz", verify=client).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        locator.terminate()
        locator.wait(timeout=30)
    assert (first, served) == (_serial(pki.connector), _serial(renewed))


def _wait_until_up(url: str, tls: ssl.SSLContext, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read() if process.stderr is not None else "(see its log)"
            raise AssertionError(f"{url}: server exited: {said}")
        try:
            httpx.get(url, verify=tls, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")
