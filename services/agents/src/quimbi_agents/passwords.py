"""bcrypt through passlib's API (from `libpass`), off the event loop.

An unknown email is checked against a dummy hash of the same cost, so it costs the same time
as a wrong password and the two cannot be told apart.
"""

from __future__ import annotations

import asyncio
import secrets

from passlib.context import CryptContext

from quimbi_common.inputs import NUL

from .domain import BCRYPT_MAX_BYTES


class Passwords:
    def __init__(self, rounds: int) -> None:
        self.context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        self._dummy_hash = self.context.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.context.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when `password` matches; always does one bcrypt check, even with no hash."""
        if len(password.encode()) > BCRYPT_MAX_BYTES or NUL in password:
            # such a password was never accepted (bcrypt would raise on it), so spend the same work
            await asyncio.to_thread(self.context.verify, "x", self._dummy_hash)
            return False
        target = hashed or self._dummy_hash
        matched = await asyncio.to_thread(self.context.verify, password, target)
        return matched and hashed is not None

    def needs_rehash(self, hashed: str) -> bool:
        """True when the hash's cost differs from BCRYPT_ROUNDS (rehashed at the next login)."""
        return bool(self.context.needs_update(hashed))
