import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth import StaticKey, TokenVerifier
from gateway.errors import ErrorCode, GatewayError
from gateway.tokens import PUBLIC_KEY_FILE, ensure_dev_keys, issue_dev_token

ISSUER, AUDIENCE = "childlookup-dev", "childlookup-gateway"


@pytest.fixture
def keys(tmp_path):
    private = ensure_dev_keys(tmp_path)
    verifier = TokenVerifier(
        StaticKey.from_pem_file(tmp_path / PUBLIC_KEY_FILE),
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_s=5,
    )
    return private.read_bytes(), verifier, tmp_path


def _token(private, **overrides):
    args = {"role": "gp", "organisation": "A81001", "name": "Dr Dev", "issuer": ISSUER}
    args.update(overrides)
    return issue_dev_token(private, audience=args.pop("audience", AUDIENCE), **args)


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _reject(verifier, header):
    with pytest.raises(GatewayError) as caught:
        await verifier.authenticate(header)
    assert caught.value.code is ErrorCode.UNAUTHENTICATED
    return caught.value.message


@pytest.mark.anyio
async def test_a_dev_token_becomes_a_caller(keys):
    private, verifier, _ = keys
    caller = await verifier.authenticate("Bearer " + _token(private))
    assert (caller.role, caller.organisation, caller.name) == ("gp", "A81001", "Dr Dev")
    assert caller.subject == "dev:A81001:Dr Dev"


@pytest.mark.anyio
async def test_private_key_is_owner_only_and_kept_across_calls(keys):
    private, _, state = keys
    assert (state / "dev-signing-key.pem").stat().st_mode & 0o077 == 0
    assert ensure_dev_keys(state).read_bytes() == private


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer not-a-jwt"])
@pytest.mark.anyio
async def test_missing_or_malformed_headers_are_refused(keys, header):
    await _reject(keys[1], header)


@pytest.mark.anyio
async def test_expired_token_is_refused_with_a_clear_message(keys):
    private, verifier, _ = keys
    old = _token(private, ttl_s=60, now=time.time() - 3600)
    assert "expired" in await _reject(verifier, f"Bearer {old}")


@pytest.mark.anyio
async def test_wrong_audience_and_issuer_are_refused(keys):
    private, verifier, _ = keys
    await _reject(verifier, "Bearer " + _token(private, audience="someone-else"))
    await _reject(verifier, "Bearer " + _token(private, issuer="evil"))


@pytest.mark.anyio
async def test_token_from_another_key_is_refused(keys, tmp_path_factory):
    _, verifier, _ = keys
    other = ensure_dev_keys(tmp_path_factory.mktemp("other")).read_bytes()
    await _reject(verifier, "Bearer " + _token(other))


@pytest.mark.anyio
async def test_unsigned_alg_none_token_is_refused(keys):
    _, verifier, _ = keys
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "x",
        "role": "social_worker",
        "org": "X",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    await _reject(verifier, f"Bearer {unsigned}")


@pytest.mark.anyio
async def test_hmac_signed_with_the_public_key_is_refused(keys):
    _, verifier, state = keys
    public_pem = (state / PUBLIC_KEY_FILE).read_bytes()
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "gp", "org": "X"}
    claims |= {"iat": int(time.time()), "exp": int(time.time()) + 600}
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    await _reject(verifier, f"Bearer {forged}")


@pytest.mark.anyio
async def test_token_without_role_claim_is_refused(keys):
    private, verifier, _ = keys
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "org": "X", "iat": now, "exp": now + 60},
        key,
        algorithm="ES256",
    )
    await _reject(verifier, f"Bearer {token}")


@pytest.mark.anyio
async def test_a_remembered_token_still_stops_working_when_it_expires(tmp_path):
    private = ensure_dev_keys(tmp_path).read_bytes()
    verifier = TokenVerifier(
        StaticKey.from_pem_file(tmp_path / PUBLIC_KEY_FILE),
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_s=0,
    )
    token = _token(private, ttl_s=1)
    assert (await verifier.authenticate(f"Bearer {token}")).role == "gp"
    assert (await verifier.authenticate(f"Bearer {token}")).role == "gp"  # from memory
    await asyncio.sleep(1.2)
    assert "expired" in await _reject(verifier, f"Bearer {token}")


@pytest.mark.anyio
async def test_a_tampered_copy_of_a_remembered_token_is_refused(keys):
    private, verifier, _ = keys
    token = _token(private)
    await verifier.authenticate(f"Bearer {token}")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "social_worker"
    await _reject(verifier, f"Bearer {header}.{_b64(claims)}.{signature}")
