"""Redis Cluster, for real: three masters and three replicas started here on loopback (the
redis-server the machine has, joined by redis-cli). The gateway's limits - one script touching
three keys - run there through one hash tag; replay ids and persisted queries are single keys; a
master's failure fails the limits closed until its replica is promoted, then they go on with no
restart."""

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection

from connectors.redis_clients import redis_client
from connectors.redis_replay import RedisReplayCache
from connectors.serving import free_port
from connectors.trust import ReplayRefused
from gateway import redis_limits
from gateway.limits import LIMITS_UNAVAILABLE, LimitSettings
from gateway.query_store import RedisQueryStore
from gateway.redis_limits import RedisLimits
from gateway.types import Caller
from tests.factories import NHS, health_record, synthetic_nhs
from tests.redis_servers import REDIS_SERVER, start_redis, until
from tests.stack import reference_connectors, running_gateway

REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None, reason="needs redis-server and redis-cli"
)
PREFIX = "test"
CALLER = Caller("dev:ORG:Worker", "Worker", "social_worker", "ORG")


@dataclass
class Cluster:
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s hash slot now."""
        node = redis.Redis(port=self._alive())
        slot = node.cluster("keyslot", key)
        for start, end, master, *_ in node.cluster("slots"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(timeout=10)

    def _alive(self) -> int:
        return next(port for port, process in self.processes.items() if process.poll() is None)


def _settled(ports: list[int]) -> bool:
    """Every node says the cluster is ok and knows every node, and every replica has its
    master's data (a replica that never synced is not promoted)."""
    for port in ports:
        node = redis.Redis(port=port)
        info = node.cluster("info")
        if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(ports):
            return False
        replication = node.info("replication")
        if replication["role"] == "slave" and replication.get("master_link_status") != "up":
            return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    assert REDIS_CLI is not None
    directory = tmp_path_factory.mktemp("redis-cluster")
    ports = [free_port() for _ in range(6)]
    processes: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for port in ports:
            processes[port] = start_redis(
                [
                    *("--port", str(port), "--bind", "127.0.0.1"),
                    *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                    *("--cluster-node-timeout", "500", "--repl-diskless-sync-delay", "0"),
                    *("--save", "", "--appendonly", "no"),
                ],
                port,
                directory,
            )
        subprocess.run(
            [
                *(REDIS_CLI, "--cluster", "create"),
                *(f"127.0.0.1:{port}" for port in ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        until(lambda: _settled(ports), "the cluster is ok on every node")
        yield Cluster(ports, processes)
    finally:
        for process in processes.values():
            process.kill()
            process.wait(timeout=10)


class _NoLookups:
    def children_seen(self, subject, since):
        return {}


def _limits(client, *, per_user=1000, per_day=1000) -> RedisLimits:
    settings = LimitSettings(
        per_user_per_minute=per_user,
        per_organisation_per_minute=1_000_000,
        distinct_children_per_day=per_day,
    )
    return RedisLimits(client, PREFIX, settings, _NoLookups())


@pytest.mark.anyio
async def test_a_cluster_url_gives_a_cluster_client_and_the_limits_are_exact_across_clients(
    cluster,
):
    """Two clients as two gateway processes: the per-minute limit and the distinct-children cap
    hold between them, though the cluster spreads other keys over three masters."""
    one, two = redis_limits.redis_client(cluster.url), redis_limits.redis_client(cluster.url)
    assert isinstance(one, RedisCluster)
    subject = f"dev:ORG:Minute-{time.monotonic_ns()}"
    caller = Caller(subject, "Worker", "social_worker", "ORG")
    try:
        by_minute = [
            await _limits(client, per_user=3).reserve(caller, f"child-{i}")
            for i, client in enumerate([one, two] * 3)
        ]
        capped = Caller(f"{subject}-capped", "Worker", "social_worker", "ORG")
        by_child = [
            await _limits(client, per_day=2).reserve(capped, child)
            for client, child in [(one, "a"), (two, "b"), (one, "c"), (two, "a")]
        ]
    finally:
        await one.aclose()
        await two.aclose()
    assert Counter(by_minute) == {None: 3, "RATE_LIMITED": 3}
    assert by_child == [None, None, "DISTINCT_CHILDREN_CAP", None]


@pytest.mark.anyio
async def test_replay_ids_and_persisted_queries_are_shared_through_the_cluster(cluster):
    one, two = redis_client(cluster.url, timeout_s=1), redis_client(cluster.url, timeout_s=1)
    token = f"token-{time.monotonic_ns()}"
    try:
        await RedisReplayCache(one, PREFIX).remember(token, time.time() + 60)
        with pytest.raises(ReplayRefused):
            await RedisReplayCache(two, PREFIX).remember(token, time.time() + 60)
        await RedisQueryStore(one, PREFIX, ttl_s=60).put("a" * 64, "{ __typename }")
        assert await RedisQueryStore(two, PREFIX, ttl_s=60).get("a" * 64) == "{ __typename }"
    finally:
        await one.aclose()
        await two.aclose()


def test_a_gateway_on_a_cluster_is_ready_and_counts_lookups_there(cluster, tmp_path):
    with (
        reference_connectors(tmp_path, {"health": [health_record()]}) as sources,
        running_gateway(
            tmp_path,
            sources,
            redis_url=cluster.url,
            redis_prefix=f"gw-{time.monotonic_ns()}",
            lookups_per_user_per_minute=2,
        ) as gateway,
    ):
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
        bodies = [gateway.lookup("gp", nhs, "DIRECT_CARE") for nhs in (NHS, synthetic_nhs(5), NHS)]
    assert ready["checks"]["limits"] is True
    codes = [b["errors"][0]["extensions"]["code"] if b.get("errors") else None for b in bodies]
    assert codes == [None, None, "RATE_LIMITED"]


@pytest.mark.anyio
async def test_the_limits_fail_closed_while_their_master_is_down_then_follow_its_replica(
    cluster,
):
    """Last in this module: it leaves the cluster with a master fewer."""
    client = redis_limits.redis_client(cluster.url)
    limits = _limits(client)
    try:
        assert await limits.reserve(CALLER, "child-1") is None
        dead = cluster.master_of(f"{{{PREFIX}}}")
        cluster.kill(dead)
        started = time.monotonic()
        assert await limits.reserve(CALLER, "child-2") == LIMITS_UNAVAILABLE
        refused_within_s = time.monotonic() - started
        deadline = time.monotonic() + 30
        while await limits.reserve(CALLER, "child-3") is not None:
            assert time.monotonic() < deadline, "the limits never reached the promoted replica"
            await asyncio.sleep(0.1)
        assert cluster.master_of(f"{{{PREFIX}}}") != dead
    finally:
        with contextlib.suppress(redis.RedisError):
            await client.aclose()
    assert refused_within_s < 10  # refused, not left waiting on a dead node


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://:s3cret@127.0.0.1:7000/1",
        "redis+cluster://:s3cret@127.0.0.1:7000?db=1",
        "rediss+cluster://:s3cret@node-a",
    ],
)
def test_a_cluster_url_missing_a_part_or_naming_a_database_says_what_it_should_be(url):
    with pytest.raises(ValueError, match=r"a Cluster URL is|each node is HOST:PORT") as raised:
        redis_client(url, timeout_s=1)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "connection"), [("redis+cluster", Connection), ("rediss+cluster", SSLConnection)]
)
def test_a_cluster_url_gives_its_password_and_tls_to_every_node(url, connection):
    client = redis_client(f"{url}://:pw@127.0.0.1:7000,127.0.0.1:7001", timeout_s=1)
    assert isinstance(client, RedisCluster)
    options = client.nodes_manager.connection_kwargs
    assert (options["connection_class"], options["password"]) == (connection, "pw")
    assert [(n.host, n.port) for n in client.startup_nodes] == [
        ("127.0.0.1", 7000),
        ("127.0.0.1", 7001),
    ]
