"""`childlookup serve --workers N`: N gateway processes on one port, as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from connectors.serving import free_port
from tests.factories import NHS, health_record
from tests.processes import (
    CLI,
    dev_token,
    graphql,
    health_source_config,
    serve_health_connector,
    wait_for,
)
from tests.stack import eventually, write_records

LOOKUP = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'


def _workers(parent: int) -> set[int]:
    """The worker processes of a supervisor (not multiprocessing's own helper processes)."""
    found = set()
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.add(int(child))
    return found


def _two_workers(parent: int, not_: set[int] | None = None) -> set[int] | None:
    """The supervisor's two workers, once it has two (and they are not `not_`)."""
    workers = _workers(parent)
    return workers if len(workers) == 2 and workers != not_ else None


def _start(tmp_path: Path, redis: tuple[str, str] | None, workers: int, **env: str):
    records = write_records(tmp_path / "health.jsonl", [health_record()])
    connector_port, port = free_port(), free_port()
    config = health_source_config(tmp_path / "sources.toml", connector_port, 800)
    environment = os.environ | {"CHILDLOOKUP_STATE_DIR": str(tmp_path), **env}
    if redis is not None:
        environment |= {"CHILDLOOKUP_REDIS_URL": redis[0], "CHILDLOOKUP_REDIS_PREFIX": redis[1]}
    connector = serve_health_connector(records, connector_port, environment)
    gateway = subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--port", str(port), "--workers", str(workers)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return connector, gateway, port


def _stop_all(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_workers_share_the_port_and_a_killed_one_is_replaced(tmp_path, redis_prefix):
    connector, gateway, port = _start(tmp_path, redis_prefix, workers=2)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
        token = dev_token(tmp_path)
        workers = eventually(lambda: _two_workers(gateway.pid))
        answers = [graphql(port, LOOKUP, token) for _ in range(6)]

        os.kill(next(iter(workers)), signal.SIGKILL)
        replaced = eventually(lambda: _two_workers(gateway.pid, not_=workers), timeout_s=30)
        after = eventually(
            lambda: graphql(port, LOOKUP, token) if _ready(port) else None, timeout_s=30
        )
    finally:
        _stop_all(gateway, connector)
    assert [a["data"]["child"]["outcome"] for a in answers] == ["FOUND"] * 6
    assert len(replaced & workers) == 1
    assert after["data"]["child"]["outcome"] == "FOUND"
    # The supervisor was killed outright (SIGKILL, as the OOM killer would): its workers stop too,
    # rather than go on serving the port orphaned.
    assert eventually(lambda: not any(_alive(pid) for pid in replaced), timeout_s=30)


def _alive(pid: int) -> bool:
    """Whether `pid` is a running process (not a zombie waiting for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_several_workers_without_shared_limits_refuse_to_start(tmp_path):
    connector, gateway, _ = _start(tmp_path, None, workers=2)
    try:
        code = gateway.wait(timeout=30)
        error = gateway.stderr.read() if gateway.stderr else ""
    finally:
        _stop_all(gateway, connector)
    assert code == 2
    assert "CHILDLOOKUP_REDIS_URL" in error
    assert "Traceback" not in error


def test_sigterm_drains_every_worker_before_they_stop(tmp_path, redis_prefix):
    connector, gateway, port = _start(
        tmp_path, redis_prefix, workers=2, CHILDLOOKUP_SHUTDOWN_DRAIN_S="3"
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
        token = dev_token(tmp_path)
        eventually(lambda: len(_workers(gateway.pid)) == 2)
        gateway.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        draining = [httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5) for _ in range(6)]
        answered = graphql(port, LOOKUP, token)
        code = gateway.wait(timeout=30)
    finally:
        _stop_all(gateway, connector)
    assert {r.status_code for r in draining} == {503}
    assert {r.json()["status"] for r in draining} == {"shutting down"}
    assert answered["data"]["child"]["outcome"] == "FOUND"
    assert code == 0


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
