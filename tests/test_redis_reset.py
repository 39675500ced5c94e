"""A connection to Redis reset by the network (a NAT or load balancer dropping an idle
connection: the peer's RST) is replaced, not a failed request. Under uvloop, as every server here
runs, writing a command to such a connection raised RuntimeError, which redis-py let through
unretried: a lookup was INTERNAL_ERROR and unaudited, /readyz a 500, a connector's replay check a
traceback. Run under uvloop, through a loopback proxy to the real Redis that resets its clients'
connections on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvloop

from connectors.protocol import random_id
from connectors.redis_clients import RedisClient, redis_client
from connectors.redis_replay import RedisReplayCache
from connectors.trust import ReplayCheckUnavailable
from gateway.query_store import RedisQueryStore
from gateway.redis_limits import answers
from tests.fault_proxy import FaultProxy

REDIS = ("127.0.0.1", 6379)


def _after_a_reset(use: Callable[[RedisClient], Awaitable[object]], retries: int = 1) -> object:
    """`use(client)` with a client through the proxy, then again after every connection of it
    was reset."""

    async def scenario() -> object:
        with FaultProxy(*REDIS) as proxy:
            client = redis_client(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=1, retries=retries)
            try:
                await use(client)
                proxy.reset()
                await asyncio.sleep(0.2)  # the RST has arrived; the client has not written since
                return await use(client)
            finally:
                await client.aclose()

    return uvloop.run(scenario())


def test_a_reset_connection_is_replaced_for_a_command(redis_prefix):
    async def ping(client: RedisClient) -> object:
        return await client.ping()

    assert _after_a_reset(ping) is True


def test_the_readiness_probe_and_persisted_queries_read_on_after_a_reset(redis_prefix):
    _, prefix = redis_prefix

    async def probe_and_query(client: RedisClient) -> object:
        store = RedisQueryStore(client, prefix, ttl_s=60)
        ready = await answers(client)  # after the reset, the first to meet the dead connection
        await store.put("a" * 64, "{ __typename }")
        return (ready, await store.get("a" * 64))

    assert _after_a_reset(probe_and_query) == (True, "{ __typename }")


def test_a_connectors_replay_check_reads_on_after_a_reset(redis_prefix):
    _, prefix = redis_prefix
    ids = iter(["first", "second"])

    async def remember(client: RedisClient) -> object:
        await RedisReplayCache(client, prefix).remember(next(ids), forget_after=9e9)
        return "remembered"

    assert _after_a_reset(remember) == "remembered"


def test_with_no_retry_left_a_reset_connection_fails_closed_not_with_a_runtime_error(redis_prefix):
    """Were the retry to meet a reset connection too, callers see Redis unavailable."""
    _, prefix = redis_prefix

    async def probe_and_remember(client: RedisClient) -> object:
        ready = await answers(client)
        try:
            await RedisReplayCache(client, prefix).remember(random_id(), forget_after=9e9)
        except ReplayCheckUnavailable:
            return (ready, "unavailable")
        return (ready, "remembered")

    assert _after_a_reset(probe_and_remember, retries=0) == (False, "remembered")
