"""A published key set (JWKS) of an odd shape - a key whose `kid` or `alg` is a JSON list, or
whose `alg` is "none" - is a set that could not be read (KeysUnavailable), never an exception out
of the check: PyJWT fails such a set with TypeError or NotImplementedError, which had failed a
whole lookup (INTERNAL_ERROR, nothing from any agency) for one agency's answer-signing keys, and
answered sign-in with a bare 500 for the identity provider's, where the documented answer is 503
IDENTITY_UNAVAILABLE.
"""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.demo import reference_source
from tests.factories import NHS, health_record, social_care_record
from tests.stack import (
    LOOKUP,
    connector_key,
    reference_apps,
    reference_stack,
    running_gateway,
    serving,
)
from tests.test_auth import AUDIENCE, ISSUER

ODD_KEYS = [{"kid": ["k1"]}, {"kid": "k1", "alg": ["ES256"]}, {"kid": "k1", "alg": "none"}]


def _odd_jwks_app(odd: dict | None = None) -> Starlette:
    """A JWKS whose one key is a well-formed P-256 key but for `odd` (a list-valued `kid`)."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public)) | {"use": "sig"}
    key |= ODD_KEYS[0] if odd is None else odd

    async def jwks(request):
        return JSONResponse({"keys": [key]})

    return Starlette(routes=[Route("/jwks.json", jwks)])


def test_one_agencys_odd_answer_jwks_fails_only_that_source_not_the_lookup(tmp_path):
    private, _ = connector_key(tmp_path, "health")
    apps = reference_apps(
        tmp_path,
        {"health": [health_record()], "social_care": [social_care_record()]},
        signing_keys={"health": private},
    )
    apps["jwks"] = _odd_jwks_app()
    with serving(apps) as urls:
        health = reference_source("health", urls["health"]).model_copy(
            update={"answer_jwks_url": f"{urls['jwks']}/jwks.json"}
        )
        sources = [health, reference_source("social_care", urls["social_care"])]
        with running_gateway(tmp_path, sources) as gateway:
            body = gateway.lookup("social_worker", NHS)
            audit = gateway.components.audit.records()

    assert body.get("errors") is None, body["errors"]
    lookup = body["data"]["child"]
    statuses = {s["source"]: (s["status"], s["errorCode"]) for s in lookup["sources"]}
    assert statuses["health"] == ("FAILED", "ANSWER_NOT_TRUSTED")
    assert statuses["social_care"] == ("ANSWERED", None)
    assert lookup["complete"] is False
    assert audit[-1]["outcome"] != "ERROR"


@pytest.mark.parametrize("odd", ODD_KEYS, ids=["kid a list", "alg a list", "alg none"])
def test_an_identity_providers_odd_jwks_is_identity_unavailable_not_a_500(tmp_path, odd):
    with serving({"idp": _odd_jwks_app(odd)}) as urls:
        key = ec.generate_private_key(ec.SECP256R1())
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "dr-dev", "iat": now, "exp": now + 600}
        claims |= {"role": "gp", "org": "A81001", "name": "Dr Dev"}
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
        body = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "DIRECT_CARE"}}
        jwks_url = f"{urls['idp']}/jwks.json"
        with reference_stack(tmp_path, {"health": [health_record()]}, jwks_url=jwks_url) as gw:
            answer = gw.post(body, token)

    assert answer.status_code == 503, (answer.status_code, answer.text)
    assert answer.json()["errors"][0]["extensions"]["code"] == "IDENTITY_UNAVAILABLE"
