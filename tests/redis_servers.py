"""Throwaway redis-server processes on loopback, for the Sentinel and Cluster tests."""

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")


def start_redis(args: list[str], port: int, directory: Path) -> subprocess.Popen[bytes]:
    """redis-server with `args` (listening on `port`), once it answers."""
    assert REDIS_SERVER is not None
    process = subprocess.Popen(
        [REDIS_SERVER, *args],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    until(lambda: answers(port), f"redis on {port} answers")
    return process


def answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def until(check: Callable[[], bool], what: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {within_s} s: {what}")
        time.sleep(0.05)
