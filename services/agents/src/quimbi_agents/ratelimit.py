"""Login throttling, after OWASP's authentication guidance: growing delays rather than lockouts,
so guessing is slowed to a crawl while one address's typos cannot shut out a whole office.

Three counters of failed logins, all in Redis (see the README's "Login throttling"):
- per (account, address): after a few failures, each further one doubles the wait; never waived;
- per account, from anywhere: the same, after more failures;
- per address, over all accounts: a ceiling per window, high enough for an office behind one NAT.
The last two are waived for a correct password from an address that has logged in to that
account before (known-good), so someone guessing at an agent's account, or a colleague's typos,
cannot keep the agent out. Refusals that need no password check come before any bcrypt work.
Redis down → 503 (fails closed, like auth).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from quimbi_common.errors import ServiceUnavailableError, TooManyRequestsError

from .domain import login_delay_seconds
from .settings import Settings


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def too_many_attempts(retry_after: float) -> TooManyRequestsError:
    seconds = max(1, math.ceil(retry_after))
    return TooManyRequestsError(
        f"Too many failed login attempts; try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


@dataclass(frozen=True)
class LoginGate:
    """What `check` decided: open, or open only to a correct password (known-good address)."""

    waived_wait: float = 0.0

    @property
    def only_correct_password(self) -> bool:
        return self.waived_wait > 0


@dataclass(frozen=True)
class _Keys:
    pair: str
    account: str
    address: str
    known: str

    @classmethod
    def of(cls, prefix: str, email: str, ip: str) -> _Keys:
        return cls(
            pair=f"{prefix}:pair:{_digest(email, ip)}",
            account=f"{prefix}:account:{_digest(email)}",
            address=f"{prefix}:address:{_digest(ip)}",
            known=f"{prefix}:known:{_digest(email, ip)}",
        )


class LoginThrottle:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = settings.login_throttle_prefix
        self.window = settings.login_window_seconds
        self.free_per_pair = settings.login_free_failures_per_account_address
        self.free_per_account = settings.login_free_failures_per_account
        self.delay_base = settings.login_delay_base_seconds
        self.delay_max = settings.login_delay_max_seconds
        self.max_per_address = settings.login_max_failures_per_ip
        self.known_seconds = settings.login_known_address_days * 86400

    def keys(self, email: str, ip: str) -> _Keys:
        return _Keys.of(self.prefix, email, ip)

    async def check(self, email: str, ip: str) -> LoginGate:
        """Before the password check: 429 when no password could pass, else the gate."""
        keys = self.keys(email, ip)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.pair, "until")
                pipe.hget(keys.account, "until")
                pipe.get(keys.address)
                pipe.ttl(keys.address)
                pipe.exists(keys.known)
                (
                    pair_until,
                    account_until,
                    address_failures,
                    address_ttl,
                    known,
                ) = await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc
        now = time.time()
        pair_wait = float(pair_until or 0) - now
        if pair_wait > 0:
            raise too_many_attempts(pair_wait)
        waits = [float(account_until or 0) - now]
        if address_failures is not None and int(address_failures) >= self.max_per_address:
            waits.append(float(max(address_ttl, 1)))
        wait = max(waits)
        if wait <= 0:
            return LoginGate()
        if not known:
            raise too_many_attempts(wait)
        return LoginGate(waived_wait=wait)

    async def record_failure(self, email: str, ip: str) -> None:
        keys = self.keys(email, ip)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(keys.pair, "failures", 1)
                pipe.hincrby(keys.account, "failures", 1)
                pipe.set(keys.address, 0, ex=self.window, nx=True)
                pipe.incr(keys.address)
                pair_failures, account_failures, *_ = await pipe.execute()
            now = time.time()
            async with self.redis.pipeline(transaction=True) as pipe:
                for key, failures, free in (
                    (keys.pair, pair_failures, self.free_per_pair),
                    (keys.account, account_failures, self.free_per_account),
                ):
                    delay = login_delay_seconds(
                        int(failures), free=free, base=self.delay_base, cap=self.delay_max
                    )
                    if delay > 0:
                        pipe.hset(key, "until", now + delay)
                    pipe.expire(key, self.window + math.ceil(delay))
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc

    async def record_success(self, email: str, ip: str) -> None:
        """A successful login clears the account's failures (the address's ceiling stays) and
        makes the address known-good for this account."""
        keys = self.keys(email, ip)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.pair, keys.account)
                pipe.set(keys.known, 1, ex=self.known_seconds)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailableError("Login throttle unavailable") from exc
