"""Several gateway processes behind one listening socket: `childlookup serve --workers N`.

The parent builds what each worker will (settings, files, policy, audit store), so a fault is one
line and exit 2 as with one process (in production that runs the policy's own tests, once: the
workers take the parent's pass for the same policy files, gateway.policy.vetting), binds the
socket, then uvicorn's supervisor starts N worker processes that accept on it and restarts any
that dies - except one that failed to start, which would fail again each time: that stops them
all, and `serve` exits 2.
Each worker builds its own gateway from the same environment, so all
serve the same policy bundle (its revision is content-addressed: equal files, equal revision) and
write the same audit store. What must hold across them is shared, not copied: the limits live in
Redis (several workers need CHILDLOOKUP_REDIS_URL, or each would count alone), and the audit log
is one SQLite file on this host or, across hosts, PostgreSQL.

On SIGTERM with CHILDLOOKUP_SHUTDOWN_DRAIN_S, the parent tells every worker to drain (readiness
turns 503 while they keep serving) and stops them once the drain has run; SIGINT stops at once. A
worker started during the drain (one replacing a worker that died) drains from its start: it
must not tell the load balancer it is ready on a port about to close.
A parent killed outright takes its workers with it: each asks the kernel for SIGTERM when its
parent dies (Linux).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from connectors.serving import server_config
from gateway import metrics
from gateway.app import begin_draining, create_app
from gateway.components import Components, build_components
from gateway.config import ServerTls, Settings, load_sources_file
from gateway.logs import configure as configure_logging
from gateway.policy import hand_down_passes
from gateway.tls import server_context

WORKER_APP: Final = "gateway.workers:worker_app"
DRAIN_SIGNAL: Final = signal.SIGUSR1
"""Sent by the parent to each worker to begin draining; uvicorn leaves it unhandled."""
DRAINING_ENV: Final = "_CHILDLOOKUP_WORKERS_DRAINING"
"""Set by the parent, for the workers it starts from then on, once it has begun draining (not a
setting: no CHILDLOOKUP_ prefix)."""
_log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG: Final = 1
"""prctl(2) option: the signal a process gets when its parent dies (Linux)."""


def worker_app() -> Starlette:
    """One worker's app (a uvicorn app factory), built from the environment the parent set. The
    parent built the same before starting any worker; should a worker still fail to (a file
    gone since), it logs the one line and exits as failing to start, which stops the
    supervisor rather than have it restart the worker forever."""
    _stop_with_the_parent()
    configure_logging()
    try:
        components = worker_components()
    except (ValueError, OSError) as exc:
        _log.error("a worker cannot start: %s", exc, extra={"event": "worker_start_failed"})
        sys.exit(STARTUP_FAILURE)
    app = create_app(components, drain_signal=DRAIN_SIGNAL, settle_heap=True)
    if os.environ.get(DRAINING_ENV):
        _drain_from_the_start(app)
    return app


def worker_components(*, checking: bool = False) -> Components:
    """What each worker builds from the environment: checked in the parent too (`checking`: see
    `build_components`), before any worker starts, so what would stop one process stops
    `serve --workers` with the same line."""
    settings = Settings()
    if settings.sources_file is None:
        raise ValueError("the workers need CHILDLOOKUP_SOURCES_FILE")
    sources = load_sources_file(settings.sources_file)
    components = build_components(
        settings,
        sources.sources,
        postcode_districts=sources.postcode_districts,
        witnesses=sources.witnesses,
        checking=checking,
    )
    if checking:  # the policy's tests, run here in production, are not run again in each worker
        hand_down_passes()
    return components


def check_shared_limits(settings: Settings) -> None:
    """Several workers need limits they share (module notes): refused before anything starts."""
    if settings.redis_url is None:
        raise ValueError(
            "several workers need CHILDLOOKUP_REDIS_URL: without it each would keep its own"
            " rate limits and distinct-children counts, and together they would allow N times more"
        )


def _drain_from_the_start(app: Starlette) -> None:
    """A worker started while the others drain (module notes): draining once it has started."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with started(app):
            begin_draining(app)
            yield

    app.router.lifespan_context = lifespan


def _stop_with_the_parent() -> None:
    """Have the kernel send this worker SIGTERM (a graceful stop) when its parent dies. A parent
    killed outright (SIGKILL, the OOM killer) runs no shutdown, and its workers would otherwise go
    on accepting on the shared socket, orphaned: never restarted, drained or stopped, serving
    whatever configuration they started with beside the parent's replacement."""
    spawned_by = multiprocessing.parent_process()
    parent = os.getppid() if spawned_by is None else spawned_by.pid
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # Starting takes a second or two: the parent may have died meanwhile, before the request.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def serve_workers(settings: Settings, sock: socket.socket, workers: int) -> None:
    """Run `workers` gateway processes on `sock` until SIGINT or SIGTERM (see the module notes).
    Raises ValueError when a worker failed to start: the supervisor then stopped them all, since
    its replacement would fail the same way (a worker that dies after starting is replaced)."""
    check_shared_limits(settings)
    config = server_config(
        WORKER_APP,
        factory=True,
        workers=workers,
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=5,
        ssl_context_factory=None
        if settings.server_tls is None
        else partial(_tls_context, settings.server_tls),
    )
    # Counters from every worker add up in /metrics through files in one directory: the one
    # PROMETHEUS_MULTIPROC_DIR names, or a temporary one removed when the workers stop.
    configured = os.environ.get(metrics.MULTIPROC_DIR_ENV)
    directory = metrics.prepare_multiprocess()
    supervisor = _DrainingSupervisor(config, [sock], settings.shutdown_drain_s)
    try:
        supervisor.run()
    finally:
        if configured is None:
            shutil.rmtree(directory, ignore_errors=True)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise ValueError("a worker failed to start (its error is above), so every worker stopped")


def _tls_context(
    tls: ServerTls, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's TLS hook, module-level so it can be sent to spawned workers. It runs before the
    app factory, so logging is set up here first: the context logs what it loaded."""
    configure_logging()
    return server_context(tls)


class _DrainingSupervisor(Multiprocess):
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], drain_s: float):
        super().__init__(config, sockets)
        self._drain_s = drain_s
        self._draining = False

    def keep_subprocess_alive(self) -> None:
        """As uvicorn's, and a replaced worker's live gauges leave the metrics totals."""
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                metrics.worker_exited(pid)

    def handle_term(self) -> None:
        if self._drain_s <= 0 or self._draining:
            super().handle_term()
            return
        self._draining = True
        # Workers started from now on (one replacing a worker that dies) inherit it and drain.
        os.environ[DRAINING_ENV] = "1"
        for process in self.processes:
            if process.pid is not None:
                os.kill(process.pid, DRAIN_SIGNAL)
        timer = threading.Timer(self._drain_s, self.should_exit.set)
        timer.daemon = True
        timer.start()
