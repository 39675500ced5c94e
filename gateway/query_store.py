"""Where automatic persisted queries (Apollo's APQ) are kept: query text by its SHA-256.

`InProcessQueryStore` is a bounded LRU in one process's memory; `RedisQueryStore` shares the texts
between every gateway using one Redis (`CHILDLOOKUP_REDIS_URL`), so a query registered through one
instance runs by its hash on any other.

Only query text is stored - never variables, which carry children's identifiers - and the layer in
front of the view (resolvers.persisted_queries) stores no text that holds a string literal, where
an identifier typed into the query itself would be. In Redis, under `{prefix}:apq:{sha256}`, each
text expires `ttl_s` after it was last used.

A store that fails is a miss, not an outage: the client sends the full text again, and the query
runs without being stored.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

from connectors.redis_clients import REDIS_FAILURES, RedisClient

_logger = logging.getLogger("childlookup.persisted_queries")


class QueryStore(Protocol):
    async def get(self, sha256: str) -> str | None:
        """The text stored under this hash, or None."""
        ...

    async def put(self, sha256: str, text: str) -> None:
        """Keep `text` under its hash (the caller has checked the hash is the text's)."""
        ...


class InProcessQueryStore:
    """The `max_entries` most recently used texts of this process."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._texts: OrderedDict[str, str] = OrderedDict()

    async def get(self, sha256: str) -> str | None:
        text = self._texts.get(sha256)
        if text is not None:
            self._texts.move_to_end(sha256)
        return text

    async def put(self, sha256: str, text: str) -> None:
        self._texts[sha256] = text
        self._texts.move_to_end(sha256)
        while len(self._texts) > self._max:
            self._texts.popitem(last=False)


class RedisQueryStore:
    """The texts of every gateway sharing one Redis; each expires `ttl_s` after its last use."""

    def __init__(self, client: RedisClient, prefix: str, ttl_s: int) -> None:
        self._client = client
        self._prefix = f"{prefix}:apq"
        self._ttl = ttl_s

    async def get(self, sha256: str) -> str | None:
        try:
            text = await self._client.getex(f"{self._prefix}:{sha256}", ex=self._ttl)
        except REDIS_FAILURES as error:
            _unavailable("get", error)
            return None
        return text.decode() if isinstance(text, bytes) else text

    async def put(self, sha256: str, text: str) -> None:
        try:
            await self._client.set(f"{self._prefix}:{sha256}", text, ex=self._ttl)
        except REDIS_FAILURES as error:
            _unavailable("put", error)


def _unavailable(operation: str, error: Exception) -> None:
    _logger.warning(
        "persisted query store unavailable: the client sends the full text",
        extra={
            "event": "persisted_queries_unavailable",
            "context": {"operation": operation, "error": type(error).__name__},
        },
    )
