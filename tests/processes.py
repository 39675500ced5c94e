"""The `childlookup` command run as real processes, for tests about what a user or an orchestrator
sees: fresh interpreters, real ports, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from connectors.reference import REFERENCE_AGENCIES

CLI = [sys.executable, "-m", "gateway.cli"]


def wait_for(url: str, process: subprocess.Popen[str], timeout: float = 30) -> httpx.Response:
    """The first answer from `url`, failing at once if `process` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> int:
    process.send_signal(sig)
    return process.wait(timeout=20)


def health_source_config(path: Path, connector_port: int, timeout_ms: int) -> Path:
    """A connector config naming the reference health connector at that port."""
    provides = ", ".join(f'"{f.value}"' for f in REFERENCE_AGENCIES["health"].provides)
    path.write_text(
        f'[[sources]]\nname = "health"\nurl = "http://127.0.0.1:{connector_port}"\n'
        f"timeout_ms = {timeout_ms}\nprovides = [{provides}]\n"
    )
    return path


def serve_gateway(config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def serve_health_connector(records: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *CLI,
            "connector",
            "serve",
            "--agency",
            "health",
            "--records",
            str(records),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def dev_token(state_dir: Path, role: str = "gp", org: str = "A81001") -> str:
    """A token from `childlookup token`, as a user would get one."""
    return subprocess.run(
        [*CLI, "token", "--role", role, "--org", org, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def graphql(port: int, query: str, token: str) -> Any:
    return httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    ).json()


def full_pipe() -> tuple[int, IO[str]]:
    """A real pipe already full, as a stdout whose reader has stalled: its read end, and its write
    end as a text stream, blocking (stdout's default)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, os.fdopen(write_end, "w")


def drain(fd: int, into: bytearray, *, pause_s: float = 0.0) -> None:
    """Read the pipe `fd` to its end into `into`, pausing `pause_s` after each read: a slow
    reader, or with no pause a reader come back."""
    while chunk := os.read(fd, 1024):
        into += chunk
        time.sleep(pause_s)
