"""The Redis cache: JSON values with TTLs, and the per-ticket set of keys a new message drops.

Every operation swallows RedisError (logged, counted): with Redis down the proxy answers
uncached instead of failing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from .domain import ticket_keys_key

log = logging.getLogger(__name__)

# Atomic, so a key added while dropping is either dropped too or still indexed.
_DROP_INDEXED = """
local keys = redis.call('SMEMBERS', KEYS[1])
for _, key in ipairs(keys) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return #keys
"""

CACHE_LOOKUPS = Counter("ai_cache_lookups_total", "ai-proxy cache lookups", ["kind", "outcome"])


class Cache:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def get(self, key: str, *, kind: str = "other") -> dict[str, Any] | None:
        try:
            raw = await self.redis.get(key)
        except RedisError as exc:
            log.warning("cache read of %s failed: %s", key, exc)
            CACHE_LOOKUPS.labels(kind, "error").inc()
            return None
        CACHE_LOOKUPS.labels(kind, "hit" if raw is not None else "miss").inc()
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def put(
        self, entries: Mapping[str, tuple[dict[str, Any], int]], *, ticket_id: str | None = None
    ) -> None:
        """Store `{key: (value, ttl)}` in one round trip; with `ticket_id`, remember the keys so
        `drop_ticket` can find them (the set lives as long as the longest entry)."""
        if not entries:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, (value, ttl) in entries.items():
                    pipe.set(key, json.dumps(value, default=str), ex=ttl)
                if ticket_id is not None:
                    index = ticket_keys_key(ticket_id)
                    pipe.sadd(index, *entries)
                    pipe.expire(index, max(ttl for _, ttl in entries.values()))
                await pipe.execute()
        except RedisError as exc:
            log.warning("cache write of %s failed: %s", ", ".join(entries), exc)

    async def drop_ticket(self, ticket_id: str) -> int:
        """Forget every answer built from this ticket's conversation; how many keys went."""
        index = ticket_keys_key(ticket_id)
        try:
            dropped = await self.redis.eval(_DROP_INDEXED, 1, index)
        except RedisError as exc:
            log.warning("dropping cached answers of ticket %s failed: %s", ticket_id, exc)
            return 0
        return int(dropped)
