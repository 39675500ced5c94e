"""Production identity: tokens from an OIDC issuer, verified against its JWKS served on loopback."""

import json
import time

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.serving import BackgroundServer
from connectors.trust import PublishedKeys
from gateway.auth import ClaimNames, JwksKeys, TokenVerifier
from gateway.errors import ErrorCode, GatewayError

ISSUER, AUDIENCE = "https://idp.example.test", "childlookup-gateway"


class Issuer:
    """A toy identity provider: RSA keys by kid, a JWKS endpoint, and a fetch counter."""

    def __init__(self):
        self.keys = {}
        self.published = []
        self.fetches = 0
        self.down = False
        self.slow_s = 0.0
        self.served = 0

    def new_key(self, kid, publish=True):
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def jwks(self):
        keys = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append(jwk | {"kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def app(self):
        async def jwks(request):
            self.fetches += 1
            await anyio.sleep(self.slow_s)
            self.served += 1
            if self.down:
                return JSONResponse({"error": "down"}, status_code=503)
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route("/jwks", jwks)])

    def token(self, kid, **claims):
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "iat": now, "exp": now + 300}
        body |= {"role": "social_worker", "org": "LA1", "acr": "aal2"} | claims
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp():
    issuer = Issuer()
    issuer.new_key("k1")
    with BackgroundServer(issuer.app()) as server:
        issuer.url = f"{server.url}/jwks"
        yield issuer


def _verifier(idp, **kwargs):
    keys = JwksKeys(
        PublishedKeys(
            idp.url,
            min_refresh_s=kwargs.pop("min_refresh_s", 30),
            max_age_s=kwargs.pop("max_age_s", 300),
            max_stale_s=kwargs.pop("max_stale_s", 3600),
        )
    )
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway_s=5, **kwargs)


async def _refused(verifier, token):
    with pytest.raises(GatewayError) as caught:
        await verifier.authenticate(f"Bearer {token}")
    return caught.value.message


@pytest.mark.anyio
async def test_a_token_signed_with_a_published_key_is_accepted_and_keys_are_cached(idp):
    verifier = _verifier(idp)
    caller = await verifier.authenticate(f"Bearer {idp.token('k1')}")
    await verifier.authenticate(f"Bearer {idp.token('k1', sub='u2')}")
    assert (caller.role, caller.organisation) == ("social_worker", "LA1")
    assert idp.fetches == 1


@pytest.mark.anyio
async def test_a_rotated_key_is_fetched_when_a_token_first_names_it(idp):
    verifier = _verifier(idp, min_refresh_s=0)
    await verifier.authenticate(f"Bearer {idp.token('k1')}")
    idp.new_key("k2")
    caller = await verifier.authenticate(f"Bearer {idp.token('k2', sub='rotated')}")
    assert caller.subject == "rotated"
    assert idp.fetches == 2


@pytest.mark.anyio
async def test_forged_key_ids_cannot_make_the_gateway_hammer_the_issuer(idp):
    verifier = _verifier(idp, min_refresh_s=30)
    idp.new_key("rogue", publish=False)
    for i in range(10):
        message = await _refused(verifier, idp.token("rogue", sub=f"x{i}"))
        assert "does not publish" in message
    assert idp.fetches == 1


@pytest.mark.anyio
async def test_a_key_the_issuer_withdraws_stops_being_accepted_remembered_tokens_too(idp):
    """A leaked key withdrawn from the JWKS: its tokens - a new one, and one already verified and
    remembered - are refused once the keys are fetched again (`max_age_s`); they had been
    accepted for as long as no token named an unknown key."""
    verifier = _verifier(idp, max_age_s=0.2)
    idp.new_key("k2")
    remembered = idp.token("k1")
    await verifier.authenticate(f"Bearer {remembered}")
    idp.published.remove("k1")
    await anyio.sleep(0.3)
    # The keys are stale: this check goes ahead with them, and starts their fetch behind it - a
    # slow or silent publisher holds no check.
    idp.slow_s = 1.0
    started = time.monotonic()
    await verifier.authenticate(f"Bearer {idp.token('k2', sub='meanwhile')}")
    waited_s = time.monotonic() - started
    await _until(lambda: idp.served == 2)
    await anyio.sleep(0.05)  # the answer read and the keys replaced

    assert waited_s < 0.5
    assert "does not publish" in await _refused(verifier, remembered)
    assert "does not publish" in await _refused(verifier, idp.token("k1", sub="fresh"))
    caller = await verifier.authenticate(f"Bearer {idp.token('k2', sub='still')}")
    assert caller.subject == "still"


@pytest.mark.anyio
async def test_keys_that_cannot_be_fetched_again_are_kept_and_tried_again_later(idp):
    verifier = _verifier(idp, max_age_s=0.2, min_refresh_s=30)
    await verifier.authenticate(f"Bearer {idp.token('k1')}")
    idp.down = True
    await anyio.sleep(0.3)

    caller = await verifier.authenticate(f"Bearer {idp.token('k1', sub='while-down')}")
    await _until(lambda: idp.fetches == 2)
    await anyio.sleep(0.1)
    await verifier.authenticate(f"Bearer {idp.token('k1', sub='again')}")

    assert caller.subject == "while-down"
    assert idp.fetches == 2  # one refresh tried; the next not before min_refresh_s


@pytest.mark.anyio
async def test_keys_not_fetched_again_for_max_stale_s_are_not_used_until_a_fetch_succeeds(idp):
    """Whoever can keep the gateway from its identity provider must not keep a withdrawn
    (leaked) key in use by doing so: past `max_stale_s` since the last fetch that succeeded,
    identity cannot be checked (IDENTITY_UNAVAILABLE), remembered tokens included."""
    verifier = _verifier(idp, max_age_s=0.2, max_stale_s=0.5, min_refresh_s=0.1)
    remembered = idp.token("k1")
    await verifier.authenticate(f"Bearer {remembered}")
    idp.down = True
    await anyio.sleep(0.3)
    caller = await verifier.authenticate(f"Bearer {idp.token('k1', sub='within')}")
    await anyio.sleep(0.4)

    with pytest.raises(GatewayError) as caught:
        await verifier.authenticate(f"Bearer {remembered}")
    assert caught.value.code is ErrorCode.IDENTITY_UNAVAILABLE
    idp.down = False
    await anyio.sleep(0.15)  # min_refresh_s since the failed try
    again = await verifier.authenticate(f"Bearer {idp.token('k1', sub='back')}")

    assert caller.subject == "within"
    assert again.subject == "back"


def test_keys_cannot_be_kept_unrefreshed_for_less_than_their_refresh_interval():
    with pytest.raises(ValueError, match="usable unrefreshed"):
        PublishedKeys("http://127.0.0.1:9/jwks", max_age_s=300, max_stale_s=60)


async def _until(condition, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_an_unreachable_issuer_fails_closed(idp):
    idp.down = True
    assert "identity provider" in await _refused(_verifier(idp), idp.token("k1"))


@pytest.mark.anyio
async def test_algorithms_off_the_allow_list_are_refused_before_any_key_lookup(idp):
    verifier = _verifier(idp, algorithms=("ES256",))
    assert "algorithm" in await _refused(verifier, idp.token("k1"))
    assert idp.fetches == 0


def test_a_symmetric_algorithm_cannot_be_allowed():
    with pytest.raises(ValueError, match="asymmetric"):
        TokenVerifier(
            JwksKeys(PublishedKeys("http://127.0.0.1:9/x")),
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway_s=0,
            algorithms=("HS256",),
        )


@pytest.mark.anyio
async def test_wrong_audience_wrong_issuer_and_expired_are_refused(idp):
    verifier = _verifier(idp)
    await _refused(verifier, idp.token("k1", aud="another-service"))
    await _refused(verifier, idp.token("k1", iss="https://evil.example"))
    assert "expired" in await _refused(verifier, idp.token("k1", exp=int(time.time()) - 60))


@pytest.mark.anyio
async def test_role_organisation_and_assurance_come_from_configured_claims(idp):
    claims = ClaimNames(role="x_role", organisation="x_org", assurance="acr")
    verifier = _verifier(idp, claims=claims)
    caller = await verifier.authenticate(f"Bearer {idp.token('k1', x_role='gp', x_org='A81001')}")
    assert (caller.role, caller.organisation) == ("gp", "A81001")
    without_assurance = idp.token("k1", x_role="gp", x_org="A81001", acr="")
    await _refused(verifier, without_assurance)
    await _refused(verifier, idp.token("k1"))  # role and org under the default names only
