"""A process serving until it stops keeps the garbage collector off what start-up built."""

import gc
import os
import signal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from connectors.serving import ServedApp, bind_socket, run, serve_all, settle_heap
from gateway.app import create_app
from gateway.components import build_components
from gateway.config import Settings
from gateway.demo import reference_source
from gateway.tokens import ensure_dev_keys


def test_settling_collects_then_freezes_what_is_left():
    gc.unfreeze()
    garbage = [[]]
    garbage[0].append(garbage)  # a cycle only the collector can free
    del garbage
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.collect() == 0  # the cycle went before the freeze, not into it
    finally:
        gc.unfreeze()


async def _started_frozen(tmp_path, settle_heap: bool) -> int:
    ensure_dev_keys(tmp_path)
    source = reference_source("health", "http://127.0.0.1:9")
    components = build_components(Settings(state_dir=tmp_path, cache_ttl_s=0), [source])
    app = create_app(components, settle_heap=settle_heap)
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                assert (await client.get("/healthz")).status_code == 200
            return gc.get_freeze_count()
    finally:
        gc.unfreeze()
        components.audit.close()
        components.decision_log.close()


@pytest.mark.anyio
async def test_the_gateway_settles_its_heap_only_when_asked(tmp_path):
    assert await _started_frozen(tmp_path / "served", settle_heap=True) > 0
    assert await _started_frozen(tmp_path / "test", settle_heap=False) == 0


def test_a_served_process_is_settled_before_it_says_it_has_started():
    """connectors.serving.serve_all, which every `serve` command runs, settles the heap once its
    apps have started - before `on_started` (the demo's banner) runs."""
    frozen: list[int] = []

    def started() -> None:
        frozen.append(gc.get_freeze_count())
        os.kill(os.getpid(), signal.SIGINT)  # serve_all's own way to stop

    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    gc.unfreeze()
    try:
        run(serve_all([ServedApp("app", app, bind_socket("127.0.0.1", 0))], on_started=started))
    finally:
        gc.unfreeze()
    assert frozen
    assert frozen[0] > 0
