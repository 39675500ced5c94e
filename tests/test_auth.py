import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth import StaticKey, TokenVerifier
from gateway.config import Settings
from gateway.errors import ErrorCode, GatewayError
from gateway.tokens import DEV_TOKEN_TTL_S, PUBLIC_KEY_FILE, ensure_dev_keys, issue_dev_token
from tests.factories import NHS, health_record
from tests.stack import LOOKUP, reference_stack

ISSUER, AUDIENCE = "childlookup-dev", "childlookup-gateway"


def _verifier(state_dir, leeway_s=5, **settings):
    """A verifier of the dev tokens signed with the key pair in `state_dir`."""
    key = StaticKey.from_pem_file(state_dir / PUBLIC_KEY_FILE)
    return TokenVerifier(key, issuer=ISSUER, audience=AUDIENCE, leeway_s=leeway_s, **settings)


@pytest.fixture
def keys(tmp_path):
    private = ensure_dev_keys(tmp_path)
    return private.read_bytes(), _verifier(tmp_path), tmp_path


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
    verifier = _verifier(tmp_path, leeway_s=0)
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


def _signed(private, **claims):
    """A token with exactly `claims` on top of the usual ones, signed with the dev key."""
    key = serialization.load_pem_private_key(private, password=None)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "role": "gp", "org": "X"}
    body |= {"iat": now, "exp": now + 600} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="ES256")


@pytest.mark.anyio
async def test_a_token_valid_for_ten_years_is_refused(keys):
    private, verifier, _ = keys
    now = int(time.time())
    token = _signed(private, iat=now, exp=now + 10 * 365 * 24 * 3600)
    assert "longer than" in await _reject(verifier, f"Bearer {token}")


@pytest.mark.anyio
async def test_a_token_without_an_issue_time_is_refused(keys):
    private, verifier, _ = keys
    await _reject(verifier, "Bearer " + _signed(private, iat=None))


@pytest.mark.anyio
async def test_a_token_issued_in_the_future_beyond_the_leeway_is_refused_clearly(keys):
    private, verifier, _ = keys
    now = int(time.time())
    token = _signed(private, iat=now + 600, exp=now + 1200)
    assert "clock" in await _reject(verifier, f"Bearer {token}")


@pytest.mark.anyio
async def test_the_maximum_lifetime_is_the_verifiers_setting(tmp_path):
    private = ensure_dev_keys(tmp_path).read_bytes()
    verifier = _verifier(tmp_path, max_lifetime_s=3600)
    assert (await verifier.authenticate("Bearer " + _token(private, ttl_s=3600))).role == "gp"
    assert "1 hour" in await _reject(verifier, "Bearer " + _token(private, ttl_s=3601))


def test_the_default_maximum_is_a_shift_and_dev_tokens_fit_it():
    assert Settings().token_max_lifetime_s == 12 * 3600
    assert Settings().token_max_lifetime_s >= DEV_TOKEN_TTL_S


def test_the_dev_token_issuer_refuses_a_lifetime_the_gateway_would_refuse(keys):
    private, _, _ = keys
    with pytest.raises(ValueError, match="12 hours"):
        _token(private, ttl_s=12 * 3600 + 1)
    with pytest.raises(ValueError, match="2 hours"):
        _token(private, ttl_s=3 * 3600, max_lifetime_s=2 * 3600)


def test_a_gateway_set_to_a_shorter_maximum_refuses_longer_tokens(tmp_path):
    with reference_stack(tmp_path, {"health": [health_record()]}, token_max_lifetime_s=600) as gw:
        private = (tmp_path / "dev-signing-key.pem").read_bytes()
        long, short = (
            issue_dev_token(
                private,
                role="gp",
                organisation="A81001",
                name="Dr Dev",
                issuer=ISSUER,
                audience=AUDIENCE,
                ttl_s=ttl,
                max_lifetime_s=12 * 3600,
            )
            for ttl in (601, 600)
        )
        body = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "DIRECT_CARE"}}
        assert gw.post(body, long).status_code == 401
        assert gw.post(body, short).json()["data"]["child"]["outcome"] == "FOUND"


def test_a_token_the_identity_provider_cannot_be_asked_about_is_unavailable_not_refused(tmp_path):
    """The token names a key the gateway has not fetched yet, and the provider's JWKS is out of
    reach: 503 IDENTITY_UNAVAILABLE, so a portal keeps the practitioner signed in and says to try
    again, where 401 would sign them out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{s.getsockname()[1]}/jwks.json"
    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "dr-dev", "iat": now, "exp": now + 600}
    claims |= {"role": "gp", "org": "A81001", "name": "Dr Dev"}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "rotated-in"})
    body = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "DIRECT_CARE"}}
    with reference_stack(tmp_path, {"health": [health_record()]}, jwks_url=unreachable) as gw:
        answer = gw.post(body, token)

    assert answer.status_code == 503
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "IDENTITY_UNAVAILABLE"
    assert "try again shortly" in error["message"]
