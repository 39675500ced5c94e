"""Shared pytest configuration and fixtures: async tests run on asyncio through anyio's pytest
plugin; production settings and real OPA for the tests that need them."""

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.backend import ENGLAND, today_in_england
from connectors.serving import BackgroundServer
from connectors.trust import ensure_key_pair
from gateway.audit import ensure_checkpoint_key
from tests.factories import POLICY_DIR
from tests.stack import Behaviour, RealOpa, build_archive, opa_rest_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Tests that run the CLI in-process configure the `childlookup` logger as the real process
    would (its own stderr handler, no propagation); undo that, or later tests log to a closed
    capture stream and caplog sees nothing."""
    logger = logging.getLogger("childlookup")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


@pytest.fixture
def zone_apart(monkeypatch: pytest.MonkeyPatch) -> Iterator[date]:
    """The process's local zone set, as on a server not kept in UK time, so that its date is not
    England's date right now; yields the local date. Restored afterwards."""
    england_hour = datetime.now(ENGLAND).hour
    # POSIX TZ offsets are west-positive: "UTC+12" is twelve hours behind UTC.
    monkeypatch.setenv("TZ", "AHEAD-14" if england_hour >= 12 else "BEHIND+12")
    time.tzset()
    try:
        assert date.today() != today_in_england()
        yield date.today()
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.fixture(scope="session")
def production_settings() -> Callable[[Path], dict[str, Any]]:
    """Settings that put a test gateway (see tests.stack.running_gateway) in production mode: a
    real issuer name, an audit key and a request-signing key, with tokens still minted by the
    stack's dev key so tests can sign in."""

    def settings(tmp: Path) -> dict[str, Any]:
        sources_file = tmp / "sources.json"
        sources_file.write_text("{}")
        return {
            "mode": "production",
            "issuer": "https://idp.example.test",
            "audit_key": "k" * 40,
            "token_public_key_file": tmp / "dev-signing-key.pub.pem",
            "sources_file": sources_file,
            "request_signing_key_file": ensure_key_pair(
                tmp / "gateway-key.pem", tmp / "gateway-key.pub.pem"
            ),
            "audit_checkpoint_key_file": ensure_checkpoint_key(tmp / "keys" / "checkpoint.pem"),
        }

    return settings


@pytest.fixture(scope="module")
def real_opa(tmp_path_factory: pytest.TempPathFactory) -> RealOpa:
    """Real OPA holding the project's policy bundle, as `childlookup policy bundle` ships it."""
    pytest.importorskip(
        "opa_bindings",
        reason="real OPA (opa-golib-python-bindings) is not installed; `./dev test` installs it",
    )
    return RealOpa(build_archive(POLICY_DIR, tmp_path_factory.mktemp("bundle") / "b.tar.gz"))


@pytest.fixture
def opa_server(real_opa: RealOpa) -> Iterator[Callable[[Behaviour | None], str]]:
    """Start an OPA server over `real_opa` with the given behaviour, and get its URL; all are
    stopped after the test."""
    servers: list[BackgroundServer] = []

    def start(behaviour: Behaviour | None = None) -> str:
        server = BackgroundServer(opa_rest_app(real_opa, behaviour or Behaviour())).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


# --- the shared services a multi-instance deployment uses: PostgreSQL and Redis ----------------

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _service(name: str, port: int) -> None:
    """Reachable, or the test is skipped with one line saying why - unless CI requires the
    services (`.ci/run` sets CHILDLOOKUP_TEST_SERVICES=required), where a missing one fails."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        message = f"{name} is not reachable on 127.0.0.1:{port}"
        if os.environ.get("CHILDLOOKUP_TEST_SERVICES") == "required":
            pytest.fail(f"{message}, and CI requires it", pytrace=False)
        pytest.skip(f"{message}: start it to run this test")


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """(database URL, a schema of this test's own in it), the schema dropped afterwards, and with
    it the cluster-wide `<schema>_writer` role its migration creates (gateway.audit.migrations):
    tests running at once never see each other's tables."""
    _service("PostgreSQL", 5432)
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield POSTGRES_URL, schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'DROP ROLE IF EXISTS "{schema}_writer"')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database of this test's own for the SQL connector (SQLAlchemy URL): a SQLite
    file, or a PostgreSQL schema (dropped afterwards, by `postgres_schema`)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'case-records.db'}"
        return
    url, schema = request.getfixturevalue("postgres_schema")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{url.replace('postgresql://', 'postgresql+psycopg://')}?options=-csearch_path%3D{schema}"


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(Redis URL, a key prefix of this test's own), its keys deleted afterwards."""
    _service("Redis", 6379)
    import redis

    prefix = f"test:{uuid.uuid4().hex[:12]}"
    yield REDIS_URL, prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{prefix}*"):  # some keys are {prefix}:... (hash tags)
        client.delete(key)
    client.close()
