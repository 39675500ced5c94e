"""Short-lived, in-memory cache of connector answers.

Keys are HMACs under a secret generated per process, so neither the cache's keys nor a memory dump
of them reveals which children were looked up, and nothing survives a restart. Policy is always
applied after the cache: a cached answer is raw connector output, never a released view.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiocache import SimpleMemoryCache

from connectors.protocol import ConnectorRecord, FieldId, LookupRequest


class AnswerCache:
    """Connector answers keyed by the whole question the agency answered: source, identifiers and
    demographics, requested fields, purpose and caller (role and organisation). An agency may
    refuse a purpose or a caller (docs/connector-protocol.md): its answer to one is no answer to
    another, who would otherwise be given records the agency refused them, the agency never
    asked. And kept for the one user who asked (`subject`): a colleague answered from it would
    learn - from `cached`, or an answer in no time - that someone looked the child up, which
    only the child's owners and the auditors may learn (accessHistory, auditTrail)."""

    def __init__(self, ttl_s: int) -> None:
        self._ttl = ttl_s
        self._secret = secrets.token_bytes(32)
        self._cache = SimpleMemoryCache()

    def key(
        self,
        source: str,
        request: LookupRequest,
        fields: frozenset[FieldId],
        *,
        subject: str,
    ) -> str | None:
        """The same question to the same source by the same user (`subject`, the caller's
        account): the same answer. None when answers are not kept
        (`ttl_s` 0): there is nothing to find or keep."""
        if self._ttl == 0:
            return None
        demographics = request.demographics
        material = b"\n".join(
            (
                source.encode(),
                request.identifiers.model_dump_json().encode(),
                b"null" if demographics is None else demographics.model_dump_json().encode(),
                ",".join(sorted(fields)).encode(),
                request.purpose.encode(),
                request.caller.model_dump_json().encode(),
                subject.encode(),
            )
        )
        return hmac.new(self._secret, material, hashlib.sha256).hexdigest()

    async def get(self, key: str | None) -> tuple[ConnectorRecord, ...] | None:
        if key is None:
            return None
        value = await self._cache.get(key)
        return value if isinstance(value, tuple) else None

    async def put(self, key: str | None, records: tuple[ConnectorRecord, ...]) -> None:
        if key is not None:
            await self._cache.set(key, records, ttl=self._ttl)
