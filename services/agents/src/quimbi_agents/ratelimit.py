"""Login throttling: failed attempts counted per email and per client IP in fixed Redis windows.

Only failures count, so a team logging in from one office IP at shift start is not blocked,
while guessing (one account, or many accounts from one address) is. The check runs before any
bcrypt work, so a throttled caller costs no CPU. Redis down → 503 (fails closed, like auth).
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from quimbi_common.errors import ServiceUnavailableError, TooManyRequestsError


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        window_seconds: int,
        max_failures_per_email: int,
        max_failures_per_ip: int,
    ) -> None:
        self.redis = redis
        self.window = window_seconds
        self.limits = {"email": max_failures_per_email, "ip": max_failures_per_ip}

    @staticmethod
    def _key(kind: str, value: str) -> str:
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"agents:login-failures:{kind}:{digest}"

    def _keys(self, email: str, ip: str) -> dict[str, str]:
        return {"email": self._key("email", email), "ip": self._key("ip", ip)}

    async def check(self, email: str, ip: str) -> None:
        """Raise 429 (with Retry-After) when either counter is at its limit."""
        keys = self._keys(email, ip)
        try:
            counts = await self.redis.mget(list(keys.values()))
            for (kind, key), count in zip(keys.items(), counts, strict=True):
                if count is not None and int(count) >= self.limits[kind]:
                    retry_after = max(1, int(await self.redis.ttl(key)))
                    raise TooManyRequestsError(
                        f"Too many failed login attempts; try again in {retry_after} s",
                        headers={"Retry-After": str(retry_after)},
                    )
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc

    async def record_failure(self, email: str, ip: str) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in self._keys(email, ip).values():
                    pipe.set(key, 0, ex=self.window, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc

    async def forget_email(self, email: str) -> None:
        """A successful login clears that account's failures (the IP's stay)."""
        try:
            await self.redis.delete(self._key("email", email))
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc
