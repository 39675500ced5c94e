"""The gateway's side of connector trust: its request tokens, its published key, and answers from
connectors on loopback that are unsigned, signed by another key or altered on the way."""

import asyncio
import hashlib

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from connectors.app import create_connector_app
from connectors.cli import _connector_app, _signer, build_parser
from connectors.protocol import LookupResponse
from connectors.serving import BackgroundServer, bind_socket, socket_url
from connectors.trust import (
    JWKS_PATH,
    SIGNATURE_HEADER,
    AnswerSigner,
    ensure_key_pair,
    key_id,
    load_public_key,
)
from gateway.audit import ensure_checkpoint_key
from gateway.cache import AnswerCache
from gateway.config import Settings, SourceConfig
from gateway.demo import reference_source
from gateway.fanout import FanOut
from gateway.signing import DEV_PUBLIC_KEY_FILE, RequestSigner, answer_verifiers
from gateway.transport import ConnectorTransport
from gateway.types import LookupQuery, Plan, Purpose, SourceStatus
from tests.factories import NHS, health_record, lookup_context, school_record
from tests.stack import connector_key, reference_apps, running_gateway, serving, write_records

QUERY = LookupQuery(nhs_number=NHS, purpose=Purpose.DIRECT_CARE)


class Backend:
    async def lookup(self, request):
        return [health_record()]


def _source(url, **answer_key):
    return SourceConfig(name="health", url=url, provides=("name",), **answer_key)


async def _ask(source):
    plan = Plan(True, None, frozenset({"name"}), (source.name,), "d1")
    async with ConnectorTransport() as transport:
        verifiers = answer_verifiers([source])
        fanout = FanOut([source], transport, AnswerCache(0), answer_verifiers=verifiers)
        (answer,) = await fanout.ask(lookup_context(QUERY), plan)
        return answer


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The health connector's answer key pair and a stranger's, as (private, public) paths."""
    tmp = tmp_path_factory.mktemp("answer-keys")
    return connector_key(tmp, "health"), connector_key(tmp, "stranger")


def test_each_request_token_is_addressed_fresh_and_bound_to_its_body():
    key = ec.generate_private_key(ec.SECP256R1())
    signer = RequestSigner(key, issuer="gw-1")
    body = b'{"request_id": "r"}'

    first = signer.authorization("health", body).removeprefix("Bearer ")
    second = signer.authorization("health", body).removeprefix("Bearer ")

    claims = jwt.decode(first, key.public_key(), algorithms=["ES256"], audience="health")
    assert claims["iss"] == "gw-1"
    assert claims["exp"] - claims["iat"] == 30
    assert claims["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]
    assert jwt.get_unverified_header(first) == {
        "alg": "ES256",
        "typ": "JWT",
        "kid": key_id(key.public_key()),
    }


def test_a_signed_answer_is_data(keys):
    (private, public), _ = keys
    signer = AnswerSigner.from_pem_file(private)
    app = create_connector_app(Backend(), source="health", signer=signer)

    with BackgroundServer(app) as server:
        answer = asyncio.run(_ask(_source(server.url, answer_key_file=public)))

    assert answer.status is SourceStatus.ANSWERED
    assert len(answer.records) == 1


def test_an_answer_is_checked_against_the_connectors_published_keys(keys):
    (private, _), _ = keys
    signer = AnswerSigner.from_pem_file(private)
    app = create_connector_app(Backend(), source="health", signer=signer)

    with BackgroundServer(app) as server:
        source = _source(server.url, answer_jwks_url=server.url + JWKS_PATH)
        answer = asyncio.run(_ask(source))

    assert answer.status is SourceStatus.ANSWERED


def test_an_unsigned_answer_is_not_trusted(keys):
    (_, public), _ = keys
    app = create_connector_app(Backend(), source="health")

    with BackgroundServer(app) as server:
        answer = asyncio.run(_ask(_source(server.url, answer_key_file=public)))

    assert (answer.status, answer.error_code) == (SourceStatus.FAILED, "ANSWER_NOT_TRUSTED")
    assert answer.records == ()


@pytest.mark.parametrize(
    ("signing_as", "key"),
    [("health", "stranger"), ("education", "health")],
    ids=["another-key", "as-another-source"],
)
def test_an_answer_signed_with_another_key_or_as_another_source_is_not_trusted(
    keys, signing_as, key
):
    (health_private, public), (stranger_private, _) = keys
    private = {"health": health_private, "stranger": stranger_private}[key]
    signer = AnswerSigner.from_pem_file(private)
    app = create_connector_app(Backend(), source=signing_as, signer=signer)

    with BackgroundServer(app) as server:
        answer = asyncio.run(_ask(_source(server.url, answer_key_file=public)))

    assert (answer.status, answer.error_code) == (SourceStatus.FAILED, "ANSWER_NOT_TRUSTED")


def test_an_answer_key_file_listing_the_old_and_new_keys_trusts_both_during_a_rotation(
    keys, tmp_path
):
    """An agency switching answer keys: the gateway's file lists both (by key id), so answers
    signed with either are data, and one signed with a key not listed is still refused."""
    (old_private, old_public), (new_private, new_public) = keys
    both = tmp_path / "health-answer-keys.pem"
    both.write_bytes(old_public.read_bytes() + new_public.read_bytes())
    stray_private, _ = connector_key(tmp_path, "stray")
    outcomes = []
    for private in (old_private, new_private, stray_private):
        signer = AnswerSigner.from_pem_file(private)
        app = create_connector_app(Backend(), source="health", signer=signer)
        with BackgroundServer(app) as server:
            answer = asyncio.run(_ask(_source(server.url, answer_key_file=both)))
        outcomes.append((answer.status, answer.error_code))

    assert outcomes == [
        (SourceStatus.ANSWERED, None),
        (SourceStatus.ANSWERED, None),
        (SourceStatus.FAILED, "ANSWER_NOT_TRUSTED"),
    ]


def test_an_answer_altered_after_signing_is_not_trusted(keys):
    (private, public), _ = keys
    signer = AnswerSigner.from_pem_file(private)

    async def lookup(request):
        genuine = LookupResponse(request_id="req-1", source="health", records=[health_record()])
        body = genuine.model_dump_json().encode()
        altered = body.replace(b"NT1", b"ZZ9")
        assert altered != body
        headers = {SIGNATURE_HEADER: signer.sign(body, source="health")}
        return Response(altered, media_type="application/json", headers=headers)

    app = Starlette(routes=[Route("/v1/lookup", lookup, methods=["POST"])])
    with BackgroundServer(app) as server:
        answer = asyncio.run(_ask(_source(server.url, answer_key_file=public)))

    assert (answer.status, answer.error_code) == (SourceStatus.FAILED, "ANSWER_NOT_TRUSTED")
    assert answer.records == ()


def test_a_gateway_and_connectors_with_trust_on_answer_a_lookup_end_to_end(tmp_path):
    gateway_sock = bind_socket("127.0.0.1", 0)
    jwks_url = socket_url(gateway_sock) + JWKS_PATH
    health_key, health_public = connector_key(tmp_path, "health")
    school_key, school_public = connector_key(tmp_path, "education")
    apps = reference_apps(
        tmp_path,
        {"health": [health_record()], "education": [school_record()]},
        gateway_jwks=jwks_url,
        signing_keys={"health": health_key, "education": school_key},
    )
    with serving(apps) as urls:
        sources = [
            reference_source("health", urls["health"], answer_key_file=health_public),
            reference_source("education", urls["education"], answer_key_file=school_public),
        ]
        with running_gateway(tmp_path, sources, sock=gateway_sock) as gateway:
            published = httpx.get(jwks_url).json()["keys"]
            body = gateway.lookup("health_visitor", NHS)
            unsigned = httpx.post(urls["health"] + "/v1/lookup", content=b"{}")

    lookup = body["data"]["child"]
    assert {(s["source"], s["status"]) for s in lookup["sources"]} == {
        ("health", "ANSWERED"),
        ("education", "ANSWERED"),
    }
    assert lookup["complete"] is True
    gateway_public = load_public_key(tmp_path / DEV_PUBLIC_KEY_FILE)
    assert [key["kid"] for key in published] == [key_id(gateway_public)]
    assert unsigned.status_code == 401


def test_a_tampering_connector_is_a_failed_source_end_to_end(tmp_path):
    health_key, _ = connector_key(tmp_path, "health")
    _, stranger_public = connector_key(tmp_path, "stranger")
    apps = reference_apps(
        tmp_path, {"health": [health_record()]}, signing_keys={"health": health_key}
    )
    with serving(apps) as urls:
        sources = [reference_source("health", urls["health"], answer_key_file=stranger_public)]
        with running_gateway(tmp_path, sources) as gateway:
            body = gateway.lookup("health_visitor", NHS)

    lookup = body["data"]["child"]
    assert [(s["source"], s["status"], s["errorCode"]) for s in lookup["sources"]] == [
        ("health", "FAILED", "ANSWER_NOT_TRUSTED")
    ]
    assert (lookup["child"], lookup["records"], lookup["complete"]) == (None, [], False)


def test_production_refuses_to_start_without_a_request_signing_key(tmp_path):
    sources_file = tmp_path / "sources.json"
    sources_file.write_text("{}")
    production = {
        "mode": "production",
        "issuer": "https://idp.example.test",
        "audit_key": "k" * 40,
        "jwks_url": "https://idp.example.test/jwks",
        "sources_file": sources_file,
    }

    with pytest.raises(ValueError, match="CHILDLOOKUP_REQUEST_SIGNING_KEY_FILE"):
        Settings(**production)
    key = ensure_key_pair(tmp_path / "gw.pem", tmp_path / "gw.pub.pem")
    checkpoint_key = ensure_checkpoint_key(tmp_path / "keys" / "checkpoint.pem")
    settings = Settings(
        **production, request_signing_key_file=key, audit_checkpoint_key_file=checkpoint_key
    )
    assert settings.request_signing_key_file == key


def test_a_request_signing_key_rotates_with_gateways_signing_with_both_at_once(tmp_path):
    """The middle of a rolling rotation: one gateway still signs with the old key and publishes
    the new one, the other signs with the new key and publishes the old. A connector that fetched
    its keys from the first (as through a load balancer) trusts both gateways' requests; a
    gateway signing with a key nobody published is still refused."""
    old = ensure_key_pair(tmp_path / "old.pem", tmp_path / "old.pub.pem")
    new = ensure_key_pair(tmp_path / "new.pem", tmp_path / "new.pub.pem")
    stray = ensure_key_pair(tmp_path / "stray.pem", tmp_path / "stray.pub.pem")
    first_sock = bind_socket("127.0.0.1", 0)
    apps = reference_apps(
        tmp_path,
        {"health": [health_record()]},
        gateway_jwks=socket_url(first_sock) + JWKS_PATH,
    )
    with serving(apps) as urls:
        sources = [reference_source("health", urls["health"])]
        with (
            running_gateway(
                tmp_path / "first",
                sources,
                sock=first_sock,
                request_signing_key_file=old,
                request_signing_published_keys_file=tmp_path / "new.pub.pem",
            ) as first,
            running_gateway(
                tmp_path / "second",
                sources,
                request_signing_key_file=new,
                request_signing_published_keys_file=tmp_path / "old.pub.pem",
            ) as second,
            running_gateway(tmp_path / "stray", sources, request_signing_key_file=stray) as third,
        ):
            published = httpx.get(first.url + JWKS_PATH).json()["keys"]
            answers = [g.lookup("health_visitor", NHS)["data"]["child"] for g in (first, second)]
            refused = third.lookup("health_visitor", NHS)["data"]["child"]

    old_kid, new_kid = (key_id(load_public_key(tmp_path / f"{n}.pub.pem")) for n in ("old", "new"))
    assert [[(s["source"], s["status"]) for s in a["sources"]] for a in answers] == [
        [("health", "ANSWERED")],
        [("health", "ANSWERED")],
    ]
    assert [key["kid"] for key in published] == [old_kid, new_kid]  # the signing key first
    assert [(s["status"], s["errorCode"]) for s in refused["sources"]] == [
        ("FAILED", "UNAUTHENTICATED")
    ]


def test_published_keys_must_be_p256_public_keys(tmp_path):
    ensure_checkpoint_key(tmp_path / "checkpoint.pem")  # an Ed25519 pair
    with pytest.raises(ValueError, match="must be a P-256 EC public key"):
        RequestSigner.from_settings(
            Settings(
                state_dir=tmp_path,
                request_signing_published_keys_file=tmp_path / "checkpoint.pub.pem",
            )
        )
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ValueError, match="holds no public key"):
        RequestSigner.from_settings(
            Settings(state_dir=tmp_path, request_signing_published_keys_file=tmp_path / "empty.pem")
        )


def test_a_connectors_replicas_change_answer_keys_publishing_both_meanwhile(tmp_path):
    """Replicas mid-rotation, set up through `connector serve`'s options: the one still on the
    old key publishes the new one, so a gateway that fetched the keys from it trusts answers
    from the replica already on the new key."""
    old = ensure_key_pair(tmp_path / "old.pem", tmp_path / "old.pub.pem")
    new = ensure_key_pair(tmp_path / "new.pem", tmp_path / "new.pub.pem")
    records = write_records(tmp_path / "health.jsonl", [health_record()])

    def replica(*options: str) -> Starlette:
        serve = ["serve", "--agency", "health", "--records", str(records), "--port", "1"]
        args = build_parser().parse_args([*serve, *options])
        return _connector_app(args, None, _signer(args))

    old_replica = replica(
        "--signing-key", str(old), "--published-keys", str(tmp_path / "new.pub.pem")
    )
    with serving({"old": old_replica, "new": replica("--signing-key", str(new))}) as urls:
        answer = asyncio.run(_ask(_source(urls["new"], answer_jwks_url=urls["old"] + JWKS_PATH)))
        published = httpx.get(urls["old"] + JWKS_PATH).json()["keys"]

    assert answer.status is SourceStatus.ANSWERED
    kids = [key_id(load_public_key(tmp_path / f"{name}.pub.pem")) for name in ("old", "new")]
    assert [key["kid"] for key in published] == kids


def test_published_keys_without_a_signing_key_are_refused():
    args = build_parser().parse_args(
        [
            *("serve", "--agency", "health", "--records", "r.jsonl", "--port", "1"),
            *("--published-keys", "next.pub.pem"),
        ]
    )
    with pytest.raises(ValueError, match="name it too"):
        _signer(args)
