"""Replay protection shared by a connector's replicas: accepted request token ids kept in Redis.

A connector run as several replicas behind one address must refuse a signed request that another
replica has already accepted; each replica's own memory (`connectors.trust.MemoryReplayCache`)
cannot. `RedisReplayCache` keeps each token id under `{prefix}:jti:{id}`, set only if absent
(SET NX) and expiring when the token can no longer be accepted anyway, so one atomic command both
checks and remembers. Redis down: the request is not read (`ReplayCheckUnavailable`, answered
UNAVAILABLE), never accepted unchecked.

Each check stores a value of its own: a SET that Redis ran but answered too late is sent again by
the client (`redis_clients`), and the id it then finds is the one this check stored, not a replay.

Optional for agencies: this module needs the `redis` package (`pip install 'childlookup[redis]'`)
and nothing else in the SDK imports it.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import Final

from connectors.redis_clients import REDIS_FAILURES, RedisClient, redis_client
from connectors.trust import ReplayCheckUnavailable, ReplayRefused

TIMEOUT_S: Final = 1.0
"""Longest a request waits on Redis (to connect, or for a reply) before it is refused."""
CLOCK_MARGIN_S: Final = 5.0
"""Each id is kept this much longer than this replica thinks its token lives, so a replica whose
clock runs a little behind still finds it."""


class RedisReplayCache:
    """Token ids accepted by any replica sharing this Redis and prefix, until the tokens expire."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:jti"

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisReplayCache:
        """Over a connection pool for `url` (redis://..., or Sentinels: `redis_clients`),
        connecting when first used."""
        return cls(redis_client(url, timeout_s=TIMEOUT_S), prefix)

    async def remember(self, jti: str, forget_after: float) -> None:
        ttl_ms = max(1, math.ceil((forget_after - time.time() + CLOCK_MARGIN_S) * 1000))
        key, mine = f"{self._prefix}:{jti}", secrets.token_bytes(16)
        try:
            fresh = await self._client.set(key, mine, nx=True, px=ttl_ms)
            # Not set: another request stored the id - or this one did, on an attempt whose
            # reply came too late and was sent again (module notes).
            if not fresh and await self._client.get(key) != mine:
                raise ReplayRefused()
        except REDIS_FAILURES as error:
            raise ReplayCheckUnavailable() from error

    async def aclose(self) -> None:
        await self._client.aclose()
