"""Redis clients from a URL: one server, the master a set of Sentinels names, or a Redis Cluster.

`redis://`, `rediss://` and `unix://` URLs are redis-py's own. With Redis Sentinel, the URL names
the Sentinels and the service they watch, and the client asks them which server is the master
- when it connects, and again whenever a connection fails - so a failover moves it to the new
master with no restart or configuration change:

    redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB][?sentinel_password=...]

PASSWORD is the master's (its `requirepass`); `sentinel_password` the Sentinels' own, if they
ask for one. Between a master's failure and the Sentinels' promotion of a replica (their
`down-after-milliseconds` plus the election), nothing answers and callers fail closed as with one
server down.

A Redis Cluster is named by some of its nodes (`rediss+cluster` over TLS); the client learns the
rest, and which node serves which hash slot, from them, and again when the cluster moves slots:

    redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]

A cluster has one database. A command, or a script, whose keys hash to different slots is
refused by the cluster, so callers that touch several keys at once give them one hash tag
(gateway.redis_limits). While a slot has no master (between a master's failure and its replica's
promotion, or for good without one) the commands on its keys fail, and callers fail closed.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

RedisClient = Redis | RedisCluster
"""What `redis_client` gives: the commands callers use are the same on both."""

REDIS_FAILURES: Final = (RedisError, OSError, RuntimeError)
"""What a command raises when Redis cannot be used now - for callers to fail closed on. Besides
redis-py's errors and the socket's, uvloop's RuntimeError ('unable to perform operation on
<TCPTransport closed=True>') when a command is written to a connection the peer had reset (a NAT
or load balancer dropping an idle connection): redis-py closes that connection but lets the
error through as it is."""

_RETRIED: Final = (ConnectionError, TimeoutError, RuntimeError)
"""Retried on a fresh connection: the connection failed, not the command (see REDIS_FAILURES)."""


def redis_client(url: str, *, timeout_s: float, retries: int = 1) -> RedisClient:
    """A client over a connection pool for `url`, connecting when first used, not here; each
    command (and each connection) given `timeout_s`, and retried at once on another connection
    up to `retries` times when its own failed - so a connection Redis or the network dropped (a
    restart, a failover, an idle connection reset) is replaced rather than failing a request.
    Raises ValueError for a Sentinel or Cluster URL that names no node, or a Sentinel URL that
    names no service."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), retries, supported_errors=_RETRIED),  # type: ignore[arg-type]
    }
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return _cluster(url, options)
    if parts.scheme != SENTINEL_SCHEME:
        return Redis.from_url(url, **options)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = [_host_port(host, url, "Sentinel") for host in hosts.split(",") if host]
    path = [segment for segment in parts.path.split("/") if segment]
    if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(
            f"{_redacted(url)}: a Sentinel URL is {SENTINEL_SCHEME}://HOST:PORT[,HOST:PORT...]"
            "/SERVICE[/DB]"
        )
    password = unquote(userinfo.partition(":")[2]) or None
    sentinel_password = parse_qs(parts.query).get("sentinel_password", [None])[0]
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        sentinels,
        sentinel_kwargs={**options, "password": sentinel_password},
        **options,
    )
    db = int(path[1]) if len(path) == 2 else 0
    master: Redis = sentinel.master_for(unquote(path[0]), db=db, password=password)
    return master


def _cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = [_host_port(host, url, "node") for host in hosts.split(",") if host]
    if not nodes or parts.path.strip("/") or parts.query:
        raise ValueError(
            f"{_redacted(url)}: a Cluster URL is {CLUSTER_SCHEMES[0]}://HOST:PORT[,HOST:PORT...]"
            " (a cluster has one database)"
        )
    username, _, password = userinfo.partition(":")
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=parts.scheme == CLUSTER_SCHEMES[1],
        **options,
    )


def _host_port(text: str, url: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{_redacted(url)}: each {what} is HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _redacted(url: str) -> str:
    """`url` without its password, for an error message."""
    parts = urlsplit(url)
    _, at, hosts = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"***{at}{hosts}" if at else hosts, query="").geturl()
