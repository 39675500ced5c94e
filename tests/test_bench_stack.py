"""The benchmarks' shared usage limits (bench.stack.redis_limits), on the machine's real Redis:
a run's keys live under a prefix of its own and are gone when it ends, and nobody else's are
touched."""

from __future__ import annotations

import redis

from bench.stack import REDIS_URL, redis_limits


def test_a_runs_limits_are_under_its_own_prefix_and_deleted_when_it_ends():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.set("not-bench:kept", "1")
        with redis_limits() as first, redis_limits() as second:
            assert first["CHILDLOOKUP_REDIS_URL"] == REDIS_URL
            prefix = first["CHILDLOOKUP_REDIS_PREFIX"]
            other = second["CHILDLOOKUP_REDIS_PREFIX"]
            assert prefix != other
            client.set(f"{prefix}window:user-1", "3")
            client.set(f"{other}window:user-1", "5")

        assert list(client.scan_iter(match=f"{prefix}*")) == []
        assert list(client.scan_iter(match=f"{other}*")) == []
        assert client.get("not-bench:kept") == b"1"
    finally:
        client.delete("not-bench:kept")
        client.close()
