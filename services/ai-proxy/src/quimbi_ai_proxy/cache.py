"""The Redis cache: JSON values with TTLs.

Every operation swallows RedisError (logged, counted): with Redis down the proxy answers
uncached instead of failing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

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

    async def exist(self, keys: Sequence[str], *, kind: str = "other") -> set[str]:
        """Which of `keys` hold a value (one round trip); none when Redis fails."""
        if not keys:
            return set()
        try:
            values = await self.redis.mget(keys)
        except RedisError as exc:
            log.warning("cache read of %d keys failed: %s", len(keys), exc)
            CACHE_LOOKUPS.labels(kind, "error").inc(len(keys))
            return set()
        found = {key for key, value in zip(keys, values, strict=True) if value is not None}
        CACHE_LOOKUPS.labels(kind, "hit").inc(len(found))
        CACHE_LOOKUPS.labels(kind, "miss").inc(len(keys) - len(found))
        return found

    async def put(self, entries: Mapping[str, tuple[dict[str, Any], int]]) -> None:
        """Store `{key: (value, ttl)}` in one round trip."""
        if not entries:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, (value, ttl) in entries.items():
                    pipe.set(key, json.dumps(value, default=str), ex=ttl)
                await pipe.execute()
        except RedisError as exc:
            log.warning("cache write of %s failed: %s", ", ".join(entries), exc)
