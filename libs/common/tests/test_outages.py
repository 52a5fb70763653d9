"""What a service answers while a dependency is out (issue #16, items 2 and 3): a valid token
is never 401 because the agents service is down, and a database that is briefly unreachable
gets 503 + Retry-After, never 500, with the pool recovering by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from fastapi import APIRouter

from quimbi_common.auth import CurrentAgent, RemoteKeySet, TokenVerifier
from quimbi_common.errors import ServiceUnavailableError, UnauthorizedError
from quimbi_common.faultproxy import FaultProxy
from quimbi_common.runtime import Runtime, SessionDep, create_app
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import (
    ADMIN_DSN,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    SigningKeys,
    running_app,
    unique,
)

pytestmark = pytest.mark.service
KEYS = SigningKeys()


@contextlib.asynccontextmanager
async def jwks_server(document: dict[str, Any]) -> AsyncIterator[str]:
    """A plain HTTP server answering every GET with the JWKS (the agents service's role)."""
    body = json.dumps(document).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        writer.write(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/.well-known/jwks.json"
    finally:
        server.close()
        await server.wait_closed()


def verifier(keys: RemoteKeySet) -> TokenVerifier:
    return TokenVerifier(keys, None, issuer=TEST_ISSUER, audience=TEST_AUDIENCE)


async def test_a_restarted_service_checks_tokens_while_the_key_server_is_down() -> None:
    cache = aioredis.from_url(REDIS_URL)
    token = KEYS.token()
    try:
        async with jwks_server(KEYS.jwks) as url:
            first = await verifier(RemoteKeySet(url, cache=cache)).verify(token)
        # The agents service is gone; a freshly started service (empty memory) still verifies.
        restarted = await verifier(RemoteKeySet(url, cache=cache)).verify(token)
        assert restarted.agent_id == first.agent_id
        await cache.delete(f"auth:jwks:{url}")
    finally:
        await cache.aclose()


async def test_a_key_that_cannot_be_fetched_is_503_with_retry_after_not_401() -> None:
    dead_url = f"http://127.0.0.1:9/{unique('jwks-')}.json"  # discard port: nothing listens
    with pytest.raises(ServiceUnavailableError) as raised:
        await verifier(RemoteKeySet(dead_url)).verify(KEYS.token())
    assert raised.value.status == 503
    assert int((raised.value.headers or {})["Retry-After"]) > 0


async def test_a_key_the_key_server_does_not_know_is_still_401() -> None:
    async with jwks_server(SigningKeys().jwks) as url:
        with pytest.raises(UnauthorizedError):
            await verifier(RemoteKeySet(url)).verify(KEYS.token())


async def test_an_app_answers_503_problem_json_while_the_key_server_is_down() -> None:
    settings = CommonSettings(
        service_name="probe",
        redis_url=REDIS_URL,
        jwt_issuer=TEST_ISSUER,
        jwt_audience=TEST_AUDIENCE,
        jwks_url=f"http://127.0.0.1:9/{unique('jwks-')}.json",
    )
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(agent: CurrentAgent) -> dict[str, str | None]:
        return {"agent_id": agent.agent_id}

    app = create_app(Runtime(settings, database=False, kafka=False), title="p", routers=[router])
    async with running_app(app) as client:
        answer = await client.get("/whoami", headers=KEYS.headers())
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) > 0


async def test_a_database_cut_answers_503_and_the_pool_recovers_by_itself() -> None:
    host_port = ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    async with FaultProxy((host, int(port))) as proxy:
        url = f"postgresql+asyncpg://quimbi:quimbi@127.0.0.1:{proxy.port}/postgres"
        settings = CommonSettings(service_name="probe", redis_url=REDIS_URL, database_url=url)
        router = APIRouter()

        @router.get("/now")
        async def now(session: SessionDep) -> dict[str, str]:
            return {"now": str(await session.scalar(sa.text("SELECT now()")))}

        app = create_app(Runtime(settings, kafka=False), title="p", routers=[router])
        async with running_app(app) as client:
            assert (await client.get("/now")).status_code == 200  # a pooled connection exists
            proxy.cut()  # pooled connections reset, new ones refused: PostgreSQL "restarting"
            for _ in range(3):
                answer = await client.get("/now")
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert int(answer.headers["retry-after"]) > 0
            proxy.heal()
            statuses = [(await client.get("/now")).status_code for _ in range(5)]
    # At most the first request after the cut may still meet a dead pooled connection.
    assert statuses[1:] == [200] * 4, statuses
    assert statuses[0] in (200, 503)


def test_a_database_starting_up_is_an_outage_not_a_bad_message() -> None:
    """The consumer retried "the database system is not yet accepting connections" only three
    times and dead-lettered the event (seen in the fault suite's PostgreSQL crash)."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from quimbi_common.consumer import _transient
    from quimbi_common.db import is_database_outage

    starting = asyncpg.CannotConnectNowError("the database system is not yet accepting connections")
    wrapped = DBAPIError("SELECT 1", {}, Exception("adapted"))
    wrapped.__cause__ = wrapped.orig
    wrapped.orig.__cause__ = starting
    assert _transient(wrapped) == "outage"
    assert is_database_outage(wrapped)
    assert not is_database_outage(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert _transient(IntegrityError("INSERT", {}, Exception("duplicate key"))) is None
    assert not is_database_outage(ValueError("a bug"))


async def test_readiness_pings_a_lost_broker_when_asked_and_says_degraded_within_its_bound() -> (
    None
):
    """The background ping is slow while the broker answered last (`KAFKA_PING_INTERVAL_SECONDS`,
    10 s; taken out here), so readiness pings on demand: a broker reached once and lost since is
    `degraded` (200) at the first probe, inside the check's 2 s, not `ok` and not a 503."""
    settings = CommonSettings(
        service_name="probe",
        redis_url=REDIS_URL,
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing listens: the broker is gone
        retry_backoff_initial_seconds=5.0,
    )
    runtime = Runtime(settings, database=False, kafka=True)
    runtime._with_consumers.remove(runtime.watch_kafka)
    app = create_app(runtime, title="p")
    async with running_app(app) as client:
        assert (await client.get("/health/ready")).status_code == 503  # never reached yet
        runtime.kafka_connected = True  # reached once (the broker went away after start-up)
        answer = await client.get("/health/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "degraded", answer.text
    assert answer.json()["checks"]["kafka"]["degraded"] is True
    assert runtime.kafka_lost_since is not None
