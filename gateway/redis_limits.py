"""The anti-harvesting limits kept in Redis, exact across every gateway process that shares it.

`RedisLimits` implements `gateway.limits.AccessLimits`: each lookup is checked against, and counted
under, the per-user and per-organisation per-minute limits and the user's daily distinct-children
cap by one Lua script, which Redis runs alone, so no two processes can both pass a check before
either is counted. The script reads Redis's own clock (TIME), so the processes' clocks do not
matter.

What Redis holds (under `CHILDLOOKUP_REDIS_PREFIX`), and never any child data - a child is named
only by its keyed pseudonym (`Pseudonymiser.child_ref`, an HMAC), and the answer cache stays in
each process's memory:

- `{{prefix}}:limits:user:{subject}` and `{{prefix}}:limits:org:{organisation}`: sorted sets of
  the last 60 s of lookups (member: a random reservation id, score: Redis time in microseconds);
  expire once nothing in them is younger than a minute.
- `{{prefix}}:limits:children-by-ref:{day}:{subject}`: a hash of the pseudonyms the user looked up
  on that UTC day (`day`: days since 1970-01-01 by Redis's clock), and those the records reached
  link them to, each to the one pseudonym standing for its child (`gateway.limits.ChildrenSeen`),
  with the marker field `SEEDED` holding the number of children; expires an hour after that day
  ends. A lookup's links are added once it is audited (`link`, a second script, to the day map of
  the day Redis last gave this process).

The prefix in braces is a Redis Cluster hash tag: every limits key hashes to the one slot, as the
script, which touches three at once, needs there (one server ignores it). So in a cluster the
limits live on one master; they are a few small keys a user.

Redis here keeps nothing on disk, so a day map can vanish (a restart, an eviction). The marker
lives in the map itself, so map and marker vanish together: a missing map is read again from the
audit log (`AuditStore.children_seen`) and added by the script that then makes the check, the
seed used only if the map is still missing - concurrent reservers seed it once. Redis unreachable,
failing, or the audit log unreadable while seeding: the lookup is refused (`LIMITS_UNAVAILABLE`),
never let through uncounted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from string import Template
from typing import Final
from urllib.parse import urlsplit

from connectors import redis_clients
from connectors.protocol import random_id
from connectors.redis_clients import REDIS_FAILURES, RedisClient
from gateway.audit import AuditStore
from gateway.limits import LIMITS_UNAVAILABLE, WINDOW_S, ChildrenSeen, LimitSettings
from gateway.types import Caller

SCHEMES: Final = (
    "redis",
    "rediss",
    "unix",
    redis_clients.SENTINEL_SCHEME,
    *redis_clients.CLUSTER_SCHEMES,
)
"""The URL schemes CHILDLOOKUP_REDIS_URL may have (connectors.redis_clients)."""
TIMEOUT_S: Final = 1.0
"""Longest a lookup waits on Redis (to connect, or for a reply) before it is refused."""
SEED_TIMEOUT_S: Final = 2.0
"""Longest a lookup waits for the audit log to give the day's children when Redis has no day map
(the first lookup of a day, or after Redis lost it) before it is refused LIMITS_UNAVAILABLE."""
DAY_S: Final = 86_400
DAY_SET_GRACE_S: Final = 3_600
"""A day map is kept this long after its UTC day ends."""
SEEDED: Final = "seeded-from-audit-log"
"""The marker field of every day map, holding its number of children: present, the map holds
everything the log held."""

_logger = logging.getLogger("childlookup.limits")

# KEYS: user window, organisation window, the user's day map.
# ARGV: day, child, per-user limit, per-organisation limit, cap, reservation id, seeded flag
# ("1": the seed follows), then the seed: the number of children, and pairs of a pseudonym and the
# one standing for its child.
# Replies {status, day}: OK; RATE_LIMITED (the user's); ORGANISATION_RATE_LIMITED;
# DISTINCT_CHILDREN_CAP; SEED (the day map is missing: call again with the audit log's
# children); DAY (Redis's day is another: call again for it).
_RESERVE: Final = Template("""
local time = redis.call('TIME')
local seconds = tonumber(time[1])
local now = seconds * 1000000 + tonumber(time[2])
local day = math.floor(seconds / 86400)
if day ~= tonumber(ARGV[1]) then
  return {'DAY', day}
end
local user, organisation, children = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', children) == 0 then
  if ARGV[7] ~= '1' then
    return {'SEED', day}
  end
  redis.call('HSET', children, '$seeded', ARGV[8])
  for i = 9, #ARGV, 2 do
    redis.call('HSET', children, ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIREAT', children, (day + 1) * 86400 + $grace_s)
end
local expired = now - $window_us
redis.call('ZREMRANGEBYSCORE', user, '-inf', expired)
redis.call('ZREMRANGEBYSCORE', organisation, '-inf', expired)
if redis.call('ZCARD', user) >= tonumber(ARGV[3]) then
  return {'RATE_LIMITED', day}
end
if redis.call('ZCARD', organisation) >= tonumber(ARGV[4]) then
  return {'ORGANISATION_RATE_LIMITED', day}
end
local child = ARGV[2]
if redis.call('HEXISTS', children, child) == 0 then
  if tonumber(redis.call('HGET', children, '$seeded')) >= tonumber(ARGV[5]) then
    return {'DISTINCT_CHILDREN_CAP', day}
  end
  redis.call('HSET', children, child, child)
  redis.call('HINCRBY', children, '$seeded', 1)
end
for _, window in ipairs({user, organisation}) do
  redis.call('ZADD', window, now, ARGV[6])
  redis.call('PEXPIRE', window, $window_ms + 1000)
end
return {'OK', day}
""").substitute(
    seeded=SEEDED,
    grace_s=DAY_SET_GRACE_S,
    window_us=WINDOW_S * 1_000_000,
    window_ms=WINDOW_S * 1000,
)

# KEYS: the user's day map. ARGV: the pseudonym a lookup was counted under, then pseudonyms naming
# its child too. A pseudonym of another child counted apart joins this one's child, with every
# pseudonym of its own, and the count falls by one. Without the map nothing is done: the next
# reservation seeds it from the audit log, which holds the lookup and its links by now. A map
# without the first pseudonym was seeded while the lookup ran, or is the next day's: the child is
# counted there, one more than it should be rather than one less.
_LINK: Final = Template("""
local children = KEYS[1]
if redis.call('EXISTS', children) == 0 then
  return 0
end
local child = redis.call('HGET', children, ARGV[1])
if not child then
  child = ARGV[1]
  redis.call('HSET', children, child, child)
  redis.call('HINCRBY', children, '$seeded', 1)
end
for i = 2, #ARGV do
  local other = redis.call('HGET', children, ARGV[i])
  if not other then
    redis.call('HSET', children, ARGV[i], child)
  elseif other ~= child then
    local all = redis.call('HGETALL', children)
    for j = 1, #all, 2 do
      if all[j + 1] == other and all[j] ~= '$seeded' then
        redis.call('HSET', children, all[j], child)
      end
    end
    redis.call('HINCRBY', children, '$seeded', -1)
  end
end
return 1
""").substitute(seeded=SEEDED)


def redis_client(url: str) -> RedisClient:
    """A client over a connection pool for `url` (one server, or Sentinels:
    `connectors.redis_clients`); connects when first used, not here. One retry, at once, so a
    connection Redis dropped (a restart, a failover) is replaced rather than failing a lookup.
    A URL that cannot be used is a ValueError naming CHILDLOOKUP_REDIS_URL and never the URL
    (it may hold a password); redis-py's own listed only its three schemes."""
    if urlsplit(url).scheme not in SCHEMES:
        raise ValueError(
            "CHILDLOOKUP_REDIS_URL: a Redis URL starts redis://, rediss://, unix://,"
            f" {redis_clients.SENTINEL_SCHEME}:// or {redis_clients.CLUSTER_SCHEMES[0]}://"
            f" ({redis_clients.CLUSTER_SCHEMES[1]}:// over TLS)"
        )
    try:
        return redis_clients.redis_client(url, timeout_s=TIMEOUT_S, retries=1)
    except ValueError as exc:
        raise ValueError(f"CHILDLOOKUP_REDIS_URL: {exc}") from None


async def answers(client: RedisClient) -> bool:
    """For readiness probes: does Redis answer a PING now?"""
    try:
        return bool(await client.ping())
    except REDIS_FAILURES:
        return False


class RedisLimits:
    """The limits of every gateway process sharing one Redis, exact across them (module notes)."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        settings: LimitSettings,
        audit: AuditStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._prefix = f"{{{prefix}}}:limits"  # one hash tag (module notes)
        self._clock = clock
        self._settings = settings
        self._audit = audit
        self._script = client.register_script(_RESERVE)
        self._link = client.register_script(_LINK)
        self._day: int | None = None
        """The day by Redis's clock at this process's last reservation: a lookup's links go to
        its reservation's day map, which the process's own clock may not name."""

    async def reserve(self, caller: Caller, child_ref: str) -> str | None:
        day = int(self._clock()) // DAY_S  # a guess: Redis's clock decides, and says if it differs
        seed: list[str] | None = None
        for _ in range(4):  # at most: another day, a seed, another day again, the reservation
            try:
                status, redis_day = await self._run(caller, child_ref, day, seed)
            except REDIS_FAILURES as error:
                return _unavailable("redis", error)
            self._day = redis_day
            if status == "DAY":
                day, seed = redis_day, None
            elif status == "SEED":
                since = datetime.fromtimestamp(day * DAY_S, UTC)
                try:
                    # Bounded: a stalled database must refuse the lookup, not hold it past its
                    # deadline (the read goes on in its thread until the store gives up).
                    logged = await asyncio.wait_for(
                        asyncio.to_thread(self._audit.children_seen, caller.subject, since),
                        SEED_TIMEOUT_S,
                    )
                except Exception as error:  # whatever the store raises, the cap is not known
                    return _unavailable("audit", error)
                children = ChildrenSeen.of(logged)
                seed = [str(len(children))]
                for pair in sorted(children.children().items()):
                    seed.extend(pair)
            else:
                return None if status == "OK" else status
        return _unavailable("redis", None)

    async def link(self, caller: Caller, child_ref: str, linked_refs: Sequence[str]) -> None:
        day = int(self._clock()) // DAY_S if self._day is None else self._day
        try:
            await self._link(keys=[self._children_key(day, caller)], args=[child_ref, *linked_refs])
        except REDIS_FAILURES as error:
            _logger.warning(
                "limits: a child's other pseudonyms were not linked",
                extra={"event": "limits_link_failed", "context": {"error": type(error).__name__}},
            )

    def _children_key(self, day: int, caller: Caller) -> str:
        return f"{self._prefix}:children-by-ref:{day}:{caller.subject}"

    async def _run(
        self, caller: Caller, child_ref: str, day: int, seed: list[str] | None
    ) -> tuple[str, int]:
        keys = [
            f"{self._prefix}:user:{caller.subject}",
            f"{self._prefix}:org:{caller.organisation}",
            self._children_key(day, caller),
        ]
        args = [
            day,
            child_ref,
            self._settings.minute_limit(caller),
            self._settings.per_organisation_per_minute,
            self._settings.daily_cap(caller),
            random_id(),
            "0" if seed is None else "1",
            *(seed or ()),
        ]
        status, redis_day = await self._script(keys=keys, args=args)
        return status.decode() if isinstance(status, bytes) else str(status), int(redis_day)


def _unavailable(store: str, error: Exception | None) -> str:
    _logger.error(
        "limits unavailable: lookup refused",
        extra={
            "event": "limits_unavailable",
            "context": {"store": store, "error": type(error).__name__ if error else None},
        },
    )
    return LIMITS_UNAVAILABLE
