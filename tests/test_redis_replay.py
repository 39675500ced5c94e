"""Replay protection across a connector's replicas: two replicas sharing one Redis refuse a signed
request either of them has already accepted, and refuse to read any request when Redis is down."""

import contextlib
import socket
import time

import httpx
import redis

from connectors.app import create_connector_app
from connectors.protocol import LOOKUP_PATH, ErrorCode, ErrorResponse
from connectors.redis_replay import CLOCK_MARGIN_S, RedisReplayCache
from connectors.serving import BackgroundServer
from connectors.trust import TOKEN_TTL_S, RequestVerifier, StaticKey
from gateway.cli import main
from tests.stack import GATEWAY_ISSUER, GATEWAY_KEY
from tests.stack import GATEWAY_SIGNER as SIGNER
from tests.test_trust import RecordingBackend
from tests.test_trust import _body as lookup_body


@contextlib.contextmanager
def replica(backend, replay_cache=None):
    """One replica of the health connector requiring requests signed by GATEWAY_KEY."""
    verifier = RequestVerifier(
        StaticKey(GATEWAY_KEY.public_key()), issuer=GATEWAY_ISSUER, replay_cache=replay_cache
    )
    app = create_connector_app(backend, source="health", verifier=verifier)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _post(client, body, authorization):
    headers = {"content-type": "application/json", "authorization": authorization}
    return client.post(LOOKUP_PATH, content=body, headers=headers)


def _error(response):
    return ErrorResponse.model_validate_json(response.content).error


def test_a_request_accepted_by_one_replica_is_refused_as_a_replay_by_another(redis_prefix):
    url, prefix = redis_prefix
    backend = RecordingBackend()
    body = lookup_body()
    authorization = SIGNER.authorization("health", body)
    with (
        replica(backend, RedisReplayCache.from_url(url, prefix)) as one,
        replica(backend, RedisReplayCache.from_url(url, prefix)) as two,
    ):
        first = _post(one, body, authorization)
        replay = _post(two, body, authorization)

    assert first.status_code == 200, first.text
    assert replay.status_code == 401
    assert _error(replay).code is ErrorCode.UNAUTHENTICATED
    assert "replays are refused" in _error(replay).message
    assert len(backend.requests) == 1


def test_an_accepted_request_is_remembered_only_as_long_as_its_token_lives(redis_prefix):
    url, prefix = redis_prefix
    body = lookup_body()
    with replica(RecordingBackend(), RedisReplayCache.from_url(url, prefix)) as one:
        assert _post(one, body, SIGNER.authorization("health", body)).status_code == 200

    client = redis.Redis.from_url(url)
    [key] = client.keys(f"{prefix}:jti:*")
    ttl_s = client.pttl(key) / 1000
    client.close()
    leeway_s = 5  # RequestVerifier's default
    assert 0 < ttl_s <= TOKEN_TTL_S + leeway_s + CLOCK_MARGIN_S


def test_replicas_each_remembering_alone_would_both_accept_the_replay():
    """Why the ids are shared: with each replica's own memory, the replay is accepted."""
    backend = RecordingBackend()
    body = lookup_body()
    authorization = SIGNER.authorization("health", body)
    with replica(backend) as one, replica(backend) as two:
        assert _post(one, body, authorization).status_code == 200
        assert _post(two, body, authorization).status_code == 200
    assert len(backend.requests) == 2


def test_redis_down_means_no_request_is_read():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    backend = RecordingBackend()
    body = lookup_body()
    with replica(backend, RedisReplayCache.from_url(closed, "p")) as one:
        started = time.monotonic()
        refused = _post(one, body, SIGNER.authorization("health", body))
    assert refused.status_code == 503
    assert _error(refused).code is ErrorCode.UNAVAILABLE
    assert backend.requests == []
    assert time.monotonic() - started < 5


def test_the_connector_command_refuses_a_replay_store_without_signed_requests(tmp_path, capsys):
    code = main(
        [
            "connector",
            "serve",
            "--agency",
            "health",
            "--records",
            str(tmp_path / "none.jsonl"),
            "--port",
            "0",
            "--redis-url",
            "redis://127.0.0.1:6379/0",
        ]
    )
    assert code == 2
    assert "--gateway-jwks" in capsys.readouterr().err
