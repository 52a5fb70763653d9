"""What the use cases need besides a session, built once per app in `main.build_app`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.exceptions import RedisError

from quimbi_common.auth import RevocationStore
from quimbi_common.errors import ServiceUnavailableError
from quimbi_common.runtime import Runtime
from quimbi_common.uow import UnitsOfWork

from .keys import KeyRing
from .passwords import Passwords
from .ratelimit import LoginThrottle
from .settings import Settings


@dataclass(frozen=True)
class Context:
    settings: Settings
    keyring: KeyRing
    passwords: Passwords
    throttle: LoginThrottle
    revocations: RevocationStore
    runtime: Runtime

    @property
    def units(self) -> UnitsOfWork:
        assert self.runtime.units is not None
        return self.runtime.units

    async def void_tokens(self, agent_id: str) -> None:
        """Every token issued to the agent until now stops working, everywhere."""
        try:
            await self.revocations.void_agent_tokens(
                agent_id, max_token_ttl_seconds=self.settings.access_token_ttl_seconds
            )
        except RedisError as exc:
            raise ServiceUnavailableError("Token revocation store unavailable") from exc


def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]
