"""Redis behind Sentinel, for real: a master, a replica and a Sentinel started here on loopback
(the redis-server the machine has, in Sentinel mode for the Sentinel). Clients name the Sentinels
and the service; when the master dies, the limits fail closed until the Sentinel has promoted the
replica, then follow it with no restart."""

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from connectors.redis_clients import redis_client
from connectors.redis_replay import RedisReplayCache
from connectors.serving import free_port
from connectors.trust import ReplayRefused
from gateway import redis_limits
from gateway.limits import LIMITS_UNAVAILABLE, LimitSettings
from gateway.redis_limits import RedisLimits
from gateway.types import Caller
from tests.redis_servers import REDIS_SERVER, start_redis, until

SERVICE = "childlookup-test"
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server")


@dataclass
class Group:
    master: int
    replica: int
    sentinel: int
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}"

    def kill_master(self) -> None:
        self.processes[self.master].kill()
        self.processes[self.master].wait(timeout=10)


@pytest.fixture
def group(tmp_path) -> Iterator[Group]:
    master, replica, sentinel = free_port(), free_port(), free_port()
    plain = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    processes = {}
    try:
        processes[master] = start_redis(["--port", str(master), *plain], master, tmp_path)
        replica_args = ["--port", str(replica), "--replicaof", "127.0.0.1", str(master), *plain]
        processes[replica] = start_redis(replica_args, replica, tmp_path)
        until(
            lambda: redis.Redis(port=replica).info("replication").get("master_link_status") == "up",
            "the replica follows the master",
        )
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 300\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
        )
        processes[sentinel] = start_redis([str(conf), "--sentinel"], sentinel, tmp_path)
        until(
            lambda: bool(redis.Redis(port=sentinel).sentinel_slaves(SERVICE)),
            "the Sentinel knows the replica",
        )
        yield Group(master, replica, sentinel, processes)
    finally:
        for process in processes.values():
            process.kill()
            process.wait(timeout=10)


async def _port(client: redis.asyncio.Redis) -> int:
    return int((await client.info("server"))["tcp_port"])


@pytest.mark.anyio
async def test_a_sentinel_url_reaches_the_master_the_sentinels_name(group):
    client = redis_client(group.url, timeout_s=1)
    replay = RedisReplayCache(client, "test")
    try:
        assert await _port(client) == group.master
        await replay.remember("token-1", time.time() + 60)
        with pytest.raises(ReplayRefused):
            await replay.remember("token-1", time.time() + 60)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_the_limits_fail_closed_while_the_master_is_down_then_follow_the_promoted_replica(
    group,
):
    client = redis_limits.redis_client(group.url)
    settings = LimitSettings(
        per_user_per_minute=1000, per_organisation_per_minute=1000, distinct_children_per_day=1000
    )
    limits = RedisLimits(client, "test", settings, _NoLookups())
    caller = Caller("dev:ORG:Worker", "Worker", "social_worker", "ORG")
    try:
        assert await limits.reserve(caller, "child-1") is None
        group.kill_master()
        assert await limits.reserve(caller, "child-2") == LIMITS_UNAVAILABLE
        deadline = time.monotonic() + 30
        while await limits.reserve(caller, "child-3") is not None:
            assert time.monotonic() < deadline, "the limits never reached the promoted replica"
            await asyncio.sleep(0.1)
        assert await _port(client) == group.replica
    finally:
        await client.aclose()


class _NoLookups:
    def children_seen(self, subject, since):
        return {}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://127.0.0.1:26379", "a Sentinel URL is"),
        ("redis+sentinel:///service", "a Sentinel URL is"),
        ("redis+sentinel://127.0.0.1:26379/service/zero", "a Sentinel URL is"),
        ("redis+sentinel://:s3cret@sentinel-a/service", "each Sentinel is HOST:PORT"),
    ],
)
def test_a_sentinel_url_missing_a_part_says_what_it_should_be(url, message):
    with pytest.raises(ValueError, match=message) as raised:
        redis_client(url, timeout_s=1)
    assert "s3cret" not in str(raised.value)
