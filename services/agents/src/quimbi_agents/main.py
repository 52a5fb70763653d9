"""The agents app: Runtime (verifying its own tokens with its own keys) + handlers + routes."""

from __future__ import annotations

from fastapi import FastAPI

from quimbi_common.auth import StaticKeySet
from quimbi_common.runtime import Runtime, create_app

from . import handlers
from .api import routers
from .keys import KeyRing, load_keyring
from .passwords import Passwords
from .ratelimit import LoginThrottle
from .reports import handlers as reports_handlers
from .safety import production_problems
from .service.agents import Context, bootstrap_admin
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    problems = production_problems(settings)
    if problems:
        raise RuntimeError("refusing to start: " + "; ".join(problems))
    keyring = keyring_from_settings(settings)
    runtime = Runtime(settings, keys=StaticKeySet(keyring.jwks))
    context = Context(
        settings=settings,
        keyring=keyring,
        passwords=Passwords(settings.bcrypt_rounds),
        throttle=LoginThrottle(runtime.redis, settings),
        revocations=runtime.revocations,
        runtime=runtime,
    )
    runtime.provide(context)
    handlers.register(runtime, settings)
    reports_handlers.register(runtime)  # the report projection and CSAT (reports/)
    runtime.watch_projections()  # assignment routes wait for a ticket that was just created

    async def create_first_admin() -> None:
        await context.units.run(lambda unit: bootstrap_admin(unit, context))

    runtime.on_startup.append(create_first_admin)
    app = create_app(
        runtime,
        title="Quimbi agents",
        description="Agents, login and tokens, roles, assignments and auto-assignment.",
        routers=routers,
    )
    return app


def keyring_from_settings(settings: Settings) -> KeyRing:
    private_key = settings.jwt_private_key.get_secret_value() if settings.jwt_private_key else None
    return load_keyring(
        private_key, settings.jwt_key_id, settings.jwt_additional_public_keys, settings.jwt_keys_dir
    )
