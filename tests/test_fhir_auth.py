"""Authenticating to the FHIR server for real: a bearer token, and OAuth 2.0 client credentials
with an RS512-signed JWT assertion exchanged at the sandbox's token endpoint."""

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.fhir import (
    PDS_PATH,
    TOKEN_PATH,
    BearerToken,
    SandboxClient,
    SignedJwtAuth,
    SpineError,
)
from connectors.fhir.auth import ASSERTION_TYPE
from connectors.fhir.outcomes import outcome_code
from connectors.protocol import ErrorCode, ErrorResponse, FieldId, LookupResponse
from connectors.serving import BackgroundServer
from tests.fhir_population import AMELIA, running_stack, sandbox

CLIENT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CLIENT = SandboxClient(
    client_id="childlookup-test", key_id="test-1", public_key=CLIENT_KEY.public_key()
)
NHS = AMELIA.identifiers.nhs_number


def answered(response: httpx.Response) -> bool:
    return bool(LookupResponse.model_validate_json(response.content).records)


def error_code(response: httpx.Response) -> ErrorCode:
    return ErrorResponse.model_validate_json(response.content).error.code


def test_the_sandbox_refuses_a_call_without_a_token():
    with BackgroundServer(sandbox(bearer_tokens=["opensesame"]).app) as server:
        response = httpx.get(f"{server.url}{PDS_PATH}/Patient/{NHS}")

    assert (response.status_code, outcome_code(response.json())) == (
        401,
        SpineError.ACCESS_DENIED,
    )


def test_a_connector_without_the_token_is_unavailable_never_no_record():
    with running_stack(sandbox(bearer_tokens=["opensesame"])) as stack:
        response = stack.lookup(nhs=NHS)

    assert (response.status_code, error_code(response)) == (503, ErrorCode.UNAVAILABLE)


def test_a_connector_with_the_bearer_token_is_answered():
    with running_stack(
        sandbox(bearer_tokens=["opensesame"]), auth=BearerToken("opensesame")
    ) as stack:
        response = stack.lookup(nhs=NHS)

    assert answered(response)


def signed_jwt(url: str, key: rsa.RSAPrivateKey = CLIENT_KEY) -> SignedJwtAuth:
    return SignedJwtAuth(
        token_url=url + TOKEN_PATH, client_id=CLIENT.client_id, private_key=key, key_id="test-1"
    )


def test_the_signed_jwt_flow_gets_a_token_once_and_reuses_it():
    fhir = sandbox(clients=[CLIENT])
    with (
        BackgroundServer(fhir.app) as server,
        running_stack(fhir, auth=signed_jwt(server.url)) as stack,
    ):
        responses = [stack.lookup(nhs=NHS) for _ in range(3)]

    assert all(answered(response) for response in responses)
    assert fhir.calls.count(f"POST {TOKEN_PATH}") == 1


def test_a_token_near_expiry_is_replaced_before_use():
    fhir = sandbox(clients=[CLIENT], token_lifetime_s=60)  # within the refresh margin at once
    with (
        BackgroundServer(fhir.app) as server,
        running_stack(fhir, auth=signed_jwt(server.url)) as stack,
    ):
        first = stack.lookup(nhs=NHS, fields=[FieldId.NAME])  # one PDS call each
        second = stack.lookup(nhs=NHS, fields=[FieldId.NAME])

    assert answered(first)
    assert answered(second)
    assert fhir.calls.count(f"POST {TOKEN_PATH}") == 2


def test_a_token_the_server_stops_accepting_is_replaced_once():
    fhir = sandbox(clients=[CLIENT])
    with (
        BackgroundServer(fhir.app) as server,
        running_stack(fhir, auth=signed_jwt(server.url)) as stack,
    ):
        stack.lookup(nhs=NHS)
        fhir.revoke_tokens()
        response = stack.lookup(nhs=NHS, fields=[])

    assert answered(response)
    assert fhir.calls.count(f"POST {TOKEN_PATH}") == 2


def test_an_assertion_signed_with_an_unregistered_key_gets_no_token():
    fhir = sandbox(clients=[CLIENT])
    with (
        BackgroundServer(fhir.app) as server,
        running_stack(fhir, auth=signed_jwt(server.url, OTHER_KEY)) as stack,
    ):
        response = stack.lookup(nhs=NHS)

    assert (response.status_code, error_code(response)) == (503, ErrorCode.UNAVAILABLE)
    assert not any(call.startswith("GET") for call in fhir.calls)


@pytest.mark.parametrize("problem", ["replayed", "wrong audience", "too long-lived", "HS256"])
def test_the_token_endpoint_refuses_bad_assertions(problem):
    fhir = sandbox(clients=[CLIENT])
    with BackgroundServer(fhir.app) as server:
        token_url = server.url + TOKEN_PATH
        now = int(time.time())
        claims = {
            "iss": CLIENT.client_id,
            "sub": CLIENT.client_id,
            "aud": token_url,
            "jti": "one-time",
            "exp": now + 300,
        }
        headers = {"kid": CLIENT.key_id}
        if problem == "wrong audience":
            claims["aud"] = "https://elsewhere.example/oauth2/token"
        if problem == "too long-lived":
            claims["exp"] = now + 3600
        if problem == "HS256":
            assertion = jwt.encode(claims, "guessed-secret-long-enough-for-hs256", "HS256", headers)
        else:
            assertion = jwt.encode(claims, CLIENT_KEY, "RS512", headers)
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        if problem == "replayed":
            assert httpx.post(token_url, data=form).status_code == 200
        response = httpx.post(token_url, data=form)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
