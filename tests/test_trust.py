"""Connector trust, attacked from outside: a connector requiring signed requests (served on
loopback) refuses every request the gateway did not sign - for it, just now, over these exact
bytes, and only once."""

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from connectors.app import create_connector_app
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
)
from connectors.serving import BackgroundServer
from connectors.trust import (
    BODY_HASH_CLAIM,
    TOKEN_TTL_S,
    MemoryReplayCache,
    ReplayCheckUnavailable,
    RequestVerifier,
    StaticKey,
    body_digest,
    key_id,
    request_authorization,
)
from gateway.signing import RequestSigner

GATEWAY = "childlookup-gateway"
GATEWAY_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNER = RequestSigner(GATEWAY_KEY, issuer=GATEWAY)


def _body() -> bytes:
    return (
        LookupRequest(
            request_id="req-1",
            deadline=datetime.now(UTC) + timedelta(seconds=5),
            purpose="DIRECT_CARE",
            caller=Caller(role="gp", organisation="A81001"),
            identifiers=Identifiers(nhs_number="9434765919"),
            fields=[FieldId.NAME],
        )
        .model_dump_json()
        .encode()
    )


def _token(body: bytes, key=GATEWAY_KEY, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": GATEWAY,
        "aud": "health",
        "jti": f"jti-{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 30,
        "body_sha256": body_digest(body),
    } | overrides
    headers = {"kid": key_id(GATEWAY_KEY.public_key())}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


class RecordingBackend:
    """No records; remembers every request that reached it."""

    def __init__(self):
        self.requests = []

    async def lookup(self, request):
        self.requests.append(request)
        return []


@pytest.fixture
def connector():
    """The health connector requiring requests signed by GATEWAY_KEY; yields (client, backend)."""
    backend = RecordingBackend()
    verifier = RequestVerifier(StaticKey(GATEWAY_KEY.public_key()), issuer=GATEWAY)
    app = create_connector_app(backend, source="health", verifier=verifier)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client, backend


def _post(client, body: bytes, authorization: str | None):
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return client.post(LOOKUP_PATH, content=body, headers=headers)


def _refused(response) -> str:
    assert response.status_code == 401, response.text
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.UNAUTHENTICATED
    return error.message


def test_a_request_the_gateway_signed_is_answered(connector):
    client, backend = connector
    body = _body()

    response = _post(client, body, SIGNER.authorization("health", body))

    assert response.status_code == 200, response.text
    assert len(backend.requests) == 1


def test_an_unsigned_request_is_refused_before_the_backend_sees_it(connector):
    client, backend = connector

    message = _refused(_post(client, _body(), None))

    assert "signed by the gateway" in message
    assert backend.requests == []


def test_a_request_signed_for_another_connector_is_refused(connector):
    client, backend = connector
    body = _body()

    message = _refused(_post(client, body, SIGNER.authorization("education", body)))

    assert "another connector" in message
    assert backend.requests == []


def test_an_expired_request_is_refused(connector):
    client, backend = connector
    body, now = _body(), int(time.time())

    token = _token(body, iat=now - 120, exp=now - 90)

    assert "expired" in _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []


@pytest.mark.parametrize(
    ("iat_offset", "exp_offset"),
    [(0, 3600), (-600, 60), (300, 320)],
    ids=["long-lived", "issued-long-ago", "issued-in-the-future"],
)
def test_a_stale_or_long_lived_request_is_refused(connector, iat_offset, exp_offset):
    client, backend = connector
    body, now = _body(), int(time.time())

    token = _token(body, iat=now + iat_offset, exp=now + exp_offset)

    _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []


def test_a_valid_token_with_a_different_body_is_refused(connector):
    client, backend = connector
    signed = _body()
    tampered = signed.replace(b"9434765919", b"9434765870")
    assert tampered != signed

    message = _refused(_post(client, tampered, SIGNER.authorization("health", signed)))

    assert "not the one that was signed" in message
    assert backend.requests == []


def test_a_replayed_request_is_refused(connector):
    client, backend = connector
    body = _body()
    authorization = SIGNER.authorization("health", body)

    first = _post(client, body, authorization)
    replay = _post(client, body, authorization)

    assert first.status_code == 200
    assert "replays are refused" in _refused(replay)
    assert len(backend.requests) == 1


def test_a_request_signed_with_another_key_is_refused(connector):
    client, backend = connector
    body = _body()
    forger = ec.generate_private_key(ec.SECP256R1())

    _refused(_post(client, body, f"Bearer {_token(body, key=forger)}"))

    assert backend.requests == []


def test_a_request_from_another_issuer_is_refused(connector):
    client, backend = connector
    body = _body()

    _refused(_post(client, body, f"Bearer {_token(body, iss='rogue-gateway')}"))

    assert backend.requests == []


def test_an_unsigned_alg_none_token_is_refused(connector):
    client, backend = connector
    body = _body()
    claims = jwt.decode(_token(body), options={"verify_signature": False})

    token = jwt.encode(claims, key=None, algorithm="none")

    _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []


def test_a_token_without_an_id_is_refused(connector):
    client, backend = connector
    body = _body()
    claims = jwt.decode(_token(body), options={"verify_signature": False})
    del claims["jti"]

    token = jwt.encode(claims, GATEWAY_KEY, algorithm="ES256")

    _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []


@pytest.mark.parametrize(
    "claim",
    [
        {"jti": "\ud800"},
        {"jti": "x" * 129},
        {"jti": "a b"},
        {"jti": "k:*"},
        {"body_sha256": "\u00e9" * 64},
        {"body_sha256": "\ud800"},
    ],
    ids=[
        "lone surrogate id",
        "long id",
        "id with a space",
        "id with a key pattern",
        "accented hash",
        "surrogate hash",
    ],
)
def test_a_signed_token_with_claims_of_the_wrong_text_is_refused_not_a_500(connector, claim):
    """A token the gateway's key signed whose id or body hash a replay store or a comparison
    could not handle as text (both were 500s)."""
    client, backend = connector
    body = _body()
    _refused(_post(client, body, f"Bearer {_token(body, **claim)}"))
    assert backend.requests == []


@pytest.mark.anyio
async def test_a_full_replay_cache_is_a_check_not_made_not_a_forgery():
    """Answered 503 (may be sent again), not 401 (which sends the gateway looking for a fault in
    its keys)."""
    cache = MemoryReplayCache(capacity=1)
    await cache.remember("a", time.time() + 30)
    with pytest.raises(ReplayCheckUnavailable):
        await cache.remember("b", time.time() + 30)


def _segments(token: str) -> list[str]:
    return token.split(".")


@pytest.mark.parametrize(
    "malform",
    [
        lambda header, payload, signature: f"{header}.{payload}!.{signature}",
        lambda header, payload, signature: f"{header}.{payload}.{signature}=",
        lambda header, payload, signature: f"{header}.{payload}.{signature[:-1]}_",
        lambda header, payload, signature: f"{header}.{payload}",
        lambda header, payload, signature: f"{header[:-2]}.{payload}.{signature}",
    ],
    ids=[
        "payload-not-base64url",
        "signature-padded-oddly",
        "signature-not-canonical",
        "two-segments",
        "header-cut-short",
    ],
)
def test_a_malformed_token_is_refused_as_such(connector, malform):
    client, backend = connector
    body = _body()

    token = malform(*_segments(_token(body)))

    assert "not a well-formed token" in _refused(_post(client, body, f"Bearer {token}"))
    assert backend.requests == []


def test_a_token_with_other_header_parameters_is_still_checked_in_full(connector):
    client, backend = connector
    body = _body()
    headers = {"kid": key_id(GATEWAY_KEY.public_key()), "cty": "lookup"}
    claims = jwt.decode(_token(body), options={"verify_signature": False})

    token = jwt.encode(claims, GATEWAY_KEY, algorithm="ES256", headers=headers)
    tampered = jwt.encode(claims | {"aud": "education"}, GATEWAY_KEY, "ES256", headers=headers)

    assert _post(client, body, f"Bearer {token}").status_code == 200
    assert "another connector" in _refused(_post(client, body, f"Bearer {tampered}"))
    assert len(backend.requests) == 1


def _utf16_token(body: bytes, **overrides) -> str:
    """A token whose header and claims are JSON in UTF-16 (with its byte-order mark): not what
    any signer here writes, but what PyJWT reads."""
    header = {"alg": "ES256", "kid": key_id(GATEWAY_KEY.public_key()), "typ": "JWT"}
    claims = jwt.decode(_token(body, **overrides), options={"verify_signature": False})
    signing_input = b".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode("utf-16")).rstrip(b"=")
        for part in (header, claims)
    )
    r, s = decode_dss_signature(GATEWAY_KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    signature = base64.urlsafe_b64encode(r.to_bytes(32) + s.to_bytes(32)).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def test_a_token_whose_json_is_not_utf8_gets_pyjwts_verdict(connector):
    """The usual token's JSON is read as UTF-8; any other encoding leaves the token to PyJWT,
    which reads it and judges it as it judges any other: accepted when valid, refused when not."""
    client, backend = connector
    body = _body()

    accepted = _post(client, body, f"Bearer {_utf16_token(body)}")
    refused = _post(client, body, f"Bearer {_utf16_token(body, aud='education')}")

    assert accepted.status_code == 200, accepted.text
    assert "another connector" in _refused(refused)
    assert len(backend.requests) == 1


def test_a_signed_token_is_a_standard_es256_jws_any_library_reads():
    """The gateway writes its tokens out itself (for speed): PyJWT, used here as an independent
    reader, must find a well-formed ES256 JWS with the key id, the claims and the body's hash."""
    key = ec.generate_private_key(ec.SECP256R1())
    body = b'{"request_id": "r-1"}'
    token = request_authorization(key, body, issuer="gw", audience="health").removeprefix("Bearer ")

    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "kid": key_id(key.public_key()),
        "typ": "JWT",
    }
    claims = jwt.decode(token, key.public_key(), algorithms=["ES256"], audience="health")
    assert claims["iss"] == "gw"
    assert claims[BODY_HASH_CLAIM] == hashlib.sha256(body).hexdigest()
    assert claims["exp"] - claims["iat"] == TOKEN_TTL_S
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["ES256"], audience="health")


_NOW = int(time.time())
_VARIANTS: dict[str, dict] = {
    "plain": {},
    "audiences listed": {"aud": ["education", "health"]},
    "another audience": {"aud": "education"},
    "other audiences listed": {"aud": ["education"]},
    "an audience that is a number": {"aud": ["health", 7]},
    "no audience": {"aud": None},
    "another issuer": {"iss": "someone"},
    "issued later": {"iat": _NOW + 60},
    "issued at a fraction of a second": {"iat": _NOW + 0.5},
    "issued at a string": {"iat": str(_NOW)},
    "expired": {"exp": _NOW - 10},
    "expiring at a string": {"exp": str(_NOW + 30)},
    "not before later": {"nbf": _NOW + 60},
    "not before now": {"nbf": _NOW},
    "a subject that is a number": {"sub": 5},
    "an id that is a number": {"jti": 5},
    "no body hash": {BODY_HASH_CLAIM: None},
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
@pytest.mark.parametrize("key", ["signer", "another key", "another curve"])
def test_the_fast_check_accepts_only_what_pyjwt_accepts(variant, key):
    """Tokens of the usual shape are checked without PyJWT (connectors.trust._plainly_valid);
    whatever it accepts, PyJWT must accept with the same options and read the same claims."""
    from connectors.trust import _plainly_valid, _unverified

    body = _body()
    claims = jwt.decode(_token(body), options={"verify_signature": False})
    for name, value in _VARIANTS[variant].items():
        claims.pop(name) if value is None else claims.__setitem__(name, value)
    headers = {"kid": key_id(GATEWAY_KEY.public_key())}
    token = jwt.encode(claims, GATEWAY_KEY, algorithm="ES256", headers=headers)
    public = {
        "signer": GATEWAY_KEY.public_key(),
        "another key": ec.generate_private_key(ec.SECP256R1()).public_key(),
        "another curve": ec.generate_private_key(ec.SECP384R1()).public_key(),
    }[key]
    required = ("iss", "iat", "exp", BODY_HASH_CLAIM, "aud", "jti")

    segments, _ = _unverified(token)
    fast = _plainly_valid(segments, public, GATEWAY, "health", 5, required)
    try:
        full = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            issuer=GATEWAY,
            audience="health",
            leeway=5,
            options={"require": list(required)},
        )
    except jwt.PyJWTError:
        full = None

    if fast is not None:
        assert fast == full
    if key == "signer" and variant in ("plain", "audiences listed"):
        assert fast is not None, "the usual token is checked on the fast path"
