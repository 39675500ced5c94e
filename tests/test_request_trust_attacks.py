"""A connector requiring the gateway's signature, attacked on loopback with requests
existing tests do not send - the signed body altered in ways JSON readers forgive, JSON members
given twice, key ids and key URLs the signer never published - each refused 401 UNAUTHENTICATED
with no record returned and the backend never asked."""

import base64
import gzip
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.app import create_connector_app
from connectors.protocol import LOOKUP_PATH, ErrorCode, ErrorResponse
from connectors.serving import BackgroundServer
from connectors.trust import (
    PublishedKeys,
    RequestVerifier,
    StaticKey,
    _plainly_valid,
    _unverified,
    body_digest,
    jwks_document,
    key_id,
)
from gateway.signing import RequestSigner
from tests.factories import NHS, health_record
from tests.test_trust import _body

GATEWAY = "childlookup-gateway"
GATEWAY_KEY = ec.generate_private_key(ec.SECP256R1())
FORGER_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNER = RequestSigner(GATEWAY_KEY, issuer=GATEWAY)
KID = key_id(GATEWAY_KEY.public_key())


class HoldingBackend:
    """Holds the child's record; remembers every request that reached it."""

    def __init__(self):
        self.requests = []

    async def lookup(self, request):
        self.requests.append(request)
        return [health_record()]


class Hits:
    """A loopback server counting GETs: the gateway's JWKS, or a URL a forger names."""

    def __init__(self, document):
        self.count = 0

        async def serve(request):
            self.count += 1
            return JSONResponse(document)

        self.server = BackgroundServer(Starlette(routes=[Route("/keys", serve)]))

    def __enter__(self):
        self.server.__enter__()
        self.url = self.server.url + "/keys"
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)


def _connector(keys):
    backend = HoldingBackend()
    app = create_connector_app(
        backend, source="health", verifier=RequestVerifier(keys, issuer=GATEWAY)
    )
    return backend, BackgroundServer(app)


@pytest.fixture
def connector():
    backend, server = _connector(StaticKey(GATEWAY_KEY.public_key()))
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client, backend


def _post(client, body, authorization, **headers):
    headers = {"content-type": "application/json", "authorization": authorization} | headers
    return client.post(LOOKUP_PATH, content=body, headers=headers)


def _refused(response) -> str:
    assert response.status_code == 401, response.text
    assert NHS.encode() not in response.content  # nothing of the record
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.UNAUTHENTICATED
    return error.message


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _raw_token(header: str, payload: str, key=GATEWAY_KEY) -> str:
    """A token over exactly this header and payload text (members given twice, say)."""
    signing_input = _b64(header.encode()) + b"." + _b64(payload.encode())
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return (signing_input + b"." + _b64(signature)).decode()


def _claims(body: bytes, **overrides) -> dict:
    now = int(time.time())
    return {
        "iss": GATEWAY,
        "aud": "health",
        "jti": f"jti-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 30,
        "body_sha256": body_digest(body),
    } | overrides


_ALTERED = {
    "keys reordered": lambda body: json.dumps(dict(reversed(json.loads(body).items()))).encode(),
    "trailing whitespace": lambda body: body + b"\n",
    "leading whitespace": lambda body: b" " + body,
    "a second document after it": lambda body: body + body,
    "one byte changed": lambda body: body.replace(b"DIRECT_CARE", b"DIRECT_CARF"),
}


@pytest.mark.parametrize("alter", sorted(_ALTERED))
def test_a_body_a_json_reader_would_read_alike_is_not_the_body_signed(connector, alter):
    client, backend = connector
    body = _body()
    altered = _ALTERED[alter](body)
    assert altered != body

    message = _refused(_post(client, altered, SIGNER.authorization("health", body)))

    assert "not the one that was signed" in message
    assert backend.requests == []


def test_a_gzip_encoded_body_is_hashed_as_sent_never_decompressed_first(connector):
    client, backend = connector
    body = _body()

    refused = _post(
        client,
        gzip.compress(body),
        SIGNER.authorization("health", body),
        **{"content-encoding": "gzip"},
    )

    assert "not the one that was signed" in _refused(refused)
    assert backend.requests == []


@pytest.mark.parametrize(
    ("header", "payload_tail"),
    [
        ('{"alg":"ES256","kid":"%s","alg":"none"}', ""),
        ('{"alg":"ES256","kid":"%s"}', ', "aud": "education"'),
        ('{"alg":"ES256","kid":"%s"}', ', "iss": "rogue-gateway"'),
        ('{"alg":"ES256","kid":"%s"}', ', "exp": 1'),
    ],
    ids=["alg none given last", "another audience last", "another issuer last", "expired last"],
)
def test_a_member_given_twice_is_read_as_its_last_value_as_pyjwt_reads_it(
    connector, header, payload_tail
):
    """A JSON member given twice counts by its last value, on the fast path and in PyJWT alike:
    the signer's token with a refusing value given last is refused."""
    client, backend = connector
    body = _body()
    payload = json.dumps(_claims(body))[:-1] + payload_tail + "}"
    token = _raw_token(header % KID, payload)

    _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []

    parts, read_header = _unverified(token)
    assert read_header == jwt.get_unverified_header(token)  # the header the caller checks `alg` in
    if payload_tail:
        required = ("iss", "iat", "exp", "body_sha256", "aud", "jti")
        fast = _plainly_valid(parts, GATEWAY_KEY.public_key(), GATEWAY, "health", 5, required)
        assert fast is None


def test_forged_key_ids_and_key_urls_are_refused_without_fetching_anything_more(connector):
    """A connector checking against the gateway's published keys: tokens naming key ids the
    gateway never published (path-like, SQL-like, empty, very long), or carrying a key, a key URL
    or a certificate URL of the forger's, are 401 - never a 503 - and cost no fetch of the
    forger's URL and at most the one fetch of the gateway's keys its first request made."""
    body = _body()
    with (
        Hits(jwks_document([GATEWAY_KEY.public_key()])) as gateway_keys,
        Hits(jwks_document([FORGER_KEY.public_key()])) as forger_keys,
    ):
        backend, server = _connector(PublishedKeys(gateway_keys.url))
        with server, httpx.Client(base_url=server.url, timeout=10) as client:
            first = _post(client, body, SIGNER.authorization("health", body))
            assert first.status_code == 200, first.text
            forged_jwk = jwt.algorithms.ECAlgorithm.to_jwk(FORGER_KEY.public_key(), as_dict=True)
            forged_kid = key_id(FORGER_KEY.public_key())
            headers = [
                *({"kid": kid} for kid in ("../../etc/passwd", "' OR '1'='1", "", "k" * 4000)),
                {"kid": forged_kid, "jwk": forged_jwk},
                {"kid": forged_kid, "jku": forger_keys.url},
                {"kid": forged_kid, "x5u": forger_keys.url},
                {"kid": KID, "jku": forger_keys.url},  # the gateway's key id, the forger's key
            ]
            for header in headers:
                token = jwt.encode(_claims(body), FORGER_KEY, algorithm="ES256", headers=header)
                _refused(_post(client, body, f"Bearer {token}"))

    assert len(backend.requests) == 1
    assert forger_keys.count == 0
    assert gateway_keys.count == 1


@pytest.mark.parametrize(
    ("iat", "exp", "accepted"),
    [(-33, -3, True), (-36, -6, False), (4, 34, True), (7, 37, False)],
    ids=["expired within leeway", "expired past leeway", "early within leeway", "early past it"],
)
def test_the_clock_leeway_is_five_seconds_either_way(connector, iat, exp, accepted):
    client, backend = connector
    body, now = _body(), int(time.time())
    token = jwt.encode(
        _claims(body, iat=now + iat, exp=now + exp),
        GATEWAY_KEY,
        algorithm="ES256",
        headers={"kid": KID},
    )

    response = _post(client, body, f"Bearer {token}")

    if accepted:
        assert response.status_code == 200, response.text
    else:
        _refused(response)
    assert len(backend.requests) == int(accepted)
