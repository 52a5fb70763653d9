"""Who may pass the edge, and how often: JWT verification (libs/common's TokenVerifier), token
revocation and the rate limits, in one Redis round trip per request.

While Redis is unreachable the rate limits fail open to a per-replica in-memory limiter (the API
stays usable, with limits per gateway instance), but a token's revocation cannot be checked, so
requests with a token get 503, the same fail-closed rule as libs/common's auth.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from quimbi_common.auth import Principal, RevocationStore, TokenVerifier
from quimbi_common.errors import (
    ProblemError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)

from .domain import (
    Bucket,
    IncomingRequest,
    Quota,
    bearer,
    counter_key,
    current_window,
    is_open,
)
from .settings import Settings

log = logging.getLogger(__name__)

REJECTED = Counter("gateway_rejected_total", "Requests refused at the edge", ["reason"])

# KEYS[1]: the bucket's counter for the current window. For tokens also KEYS[2], KEYS[3]:
# libs/common's revoked-jti and void-before keys, read in the same round trip.
_COUNT_AND_CHECK = """
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if #KEYS == 1 then return {used} end
return {used, redis.call('EXISTS', KEYS[2]), redis.call('GET', KEYS[3])}
"""


class LocalLimiter:
    """Per-replica counters, used only while Redis is unreachable."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str, window_index: int) -> int:
        if window_index != self._window or len(self._counts) >= self.max_keys:
            self._counts.clear()
            self._window = window_index
        used = self._counts.get(key, 0) + 1
        self._counts[key] = used
        return used


class RateLimiter:
    """Fixed-window counters in Redis (INCR + EXPIRE in one Lua call, so atomic)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._script = redis.register_script(_COUNT_AND_CHECK)
        self.prefix = settings.rate_limit_prefix
        self.window_seconds = settings.rate_limit_window_seconds
        self.retry_after = settings.redis_retry_after_seconds
        self.local = LocalLimiter()
        self._redis_down_until = 0.0

    @property
    def redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        if self.redis_usable:
            log.warning("redis unavailable for rate limits (%s); using the local limiter", exc)
        self._redis_down_until = time.monotonic() + self.retry_after

    async def _run(self, keys: list[str]) -> list[Any]:
        result: list[Any] = await self._script(keys=keys, args=[self.window_seconds + 1])
        return result

    async def hit(self, bucket: Bucket, identity: str, limit: int) -> Quota:
        """Count a request against its bucket; fails open to the local limiter."""
        window = current_window(time.time(), self.window_seconds)
        key = counter_key(self.prefix, bucket, identity, window)
        if self.redis_usable:
            try:
                used = (await self._run([key]))[0]
                return Quota(limit, int(used), window.reset_seconds)
            except RedisError as exc:
                self._redis_failed(exc)
        return Quota(limit, self.local.hit(key, window.index), window.reset_seconds)

    async def hit_agent(self, principal: Principal, limit: int) -> tuple[Quota, bool]:
        """Count an agent's request and read its token's revocation in the same round trip.
        Fails closed: without Redis the revocation is unknown, so 503."""
        window = current_window(time.time(), self.window_seconds)
        agent_id = principal.agent_id or ""
        keys = [
            counter_key(self.prefix, Bucket.AGENT, agent_id, window),
            # libs/common keeps these key names private; see the README (needs a public API).
            RevocationStore.jti_key(principal.jti or ""),
            RevocationStore.void_key(agent_id),
        ]
        if self.redis_usable:
            try:
                used, revoked, void_before = await self._run(keys)
            except RedisError as exc:
                self._redis_failed(exc)
            else:
                quota = Quota(limit, int(used), window.reset_seconds)
                return quota, RevocationStore.decide(revoked, void_before, principal.issued_at)
        REJECTED.labels("revocation_unavailable").inc()
        raise ServiceUnavailableError(
            "Token revocation store unavailable",
            headers={"Retry-After": str(max(1, round(self.retry_after)))},
        )


class EdgeGuard:
    """Admits a request or raises the problem to answer with (401, 429, 503)."""

    def __init__(self, tokens: TokenVerifier, limiter: RateLimiter, settings: Settings) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.api_key = settings.api_key.get_secret_value()
        self.per_agent = settings.rate_limit_per_agent
        self.per_api_key = settings.rate_limit_per_api_key
        self.per_ip = settings.rate_limit_per_ip
        self.window_seconds = settings.rate_limit_window_seconds

    async def admit(
        self, method: str, path: str, request: IncomingRequest, client_ip: str
    ) -> Quota:
        """The caller's quota after counting this request. Open routes are counted per IP and
        never look at credentials (a stale token must not block a login)."""
        if not is_open(method, path):
            token = bearer(request.authorization)
            if token is not None:
                return await self._admit_agent(token, client_ip)
            if request.api_key is not None:
                return await self._admit_integration(request.api_key, client_ip)
        quota = await self._hit_ip(client_ip)
        if not is_open(method, path):
            raise self._unauthorized("Missing credentials: a Bearer token or X-API-Key", quota)
        return quota

    async def _admit_agent(self, token: str, client_ip: str) -> Quota:
        try:
            principal = await self.tokens.verify(token)
        except UnauthorizedError as exc:
            raise self._unauthorized(exc.detail, await self._hit_ip(client_ip)) from exc
        quota, revoked = await self.limiter.hit_agent(principal, self.per_agent)
        if revoked:
            raise self._unauthorized("Token has been revoked", quota)
        if quota.exceeded:
            raise self._too_many(quota, "agent")
        return quota

    async def _admit_integration(self, api_key: str, client_ip: str) -> Quota:
        if not secrets.compare_digest(api_key.encode(), self.api_key.encode()):
            raise self._unauthorized("Invalid API key", await self._hit_ip(client_ip))
        quota = await self.limiter.hit(Bucket.API_KEY, "integration", self.per_api_key)
        if quota.exceeded:
            raise self._too_many(quota, "integration key")
        return quota

    async def _hit_ip(self, client_ip: str) -> Quota:
        quota = await self.limiter.hit(Bucket.IP, client_ip, self.per_ip)
        if quota.exceeded:
            raise self._too_many(quota, "client address")
        return quota

    @staticmethod
    def _unauthorized(detail: str, quota: Quota) -> ProblemError:
        REJECTED.labels("unauthorized").inc()
        return UnauthorizedError(
            detail, headers={**quota.header_dict(), "WWW-Authenticate": "Bearer"}
        )

    def _too_many(self, quota: Quota, who: str) -> ProblemError:
        REJECTED.labels("rate_limited").inc()
        return TooManyRequestsError(
            f"Rate limit of {quota.limit} requests per {self.window_seconds} s exceeded "
            f"for this {who}; retry in {quota.reset_seconds} s",
            headers=quota.header_dict(),
        )
