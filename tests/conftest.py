"""Shared pytest configuration and fixtures: async tests run on asyncio through anyio's pytest
plugin; production settings and real OPA for the tests that need them."""

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.serving import BackgroundServer
from connectors.trust import ensure_key_pair
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
