"""The whole suite for the end-to-end tests: real servers, real services, one gateway.

The servers come from testcontainers when a Docker API is available (`DOCKER_HOST`), else from
`deploy/local` (the native PostgreSQL, Redis and Kafka `make test` starts). The services run as
the launcher runs them for `make run`, on ports offset by 10000, with their own databases and
Kafka topic prefix, so the suite never touches a developer's `make run` data.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from quimbi_common.testing import unique

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(Path(__file__).parent)]

from launcher import Options, Suite  # noqa: E402
from support import ADMIN, PASSWORD, Agent, ExternalStack, Servers, login  # noqa: E402


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    if os.environ.get("E2E_GATEWAY_URL"):  # a running stack: only its Kafka is read directly
        yield Servers("", "", os.environ.get("E2E_KAFKA", "127.0.0.1:19092"))
        return
    if os.environ.get("DOCKER_HOST"):
        from containers import infrastructure_from_containers  # tests/e2e/containers.py

        with infrastructure_from_containers() as infra:
            yield Servers(infra.postgres_dsn, infra.redis_url, infra.kafka_bootstrap)
        return
    # Redis database 2 is the e2e suite's own, emptied per run (login limits, caches, revocations);
    # E2E_REDIS_DB and E2E_PORT_OFFSET let two e2e runs share one machine.
    redis_url = f"redis://127.0.0.1:6379/{os.environ.get('E2E_REDIS_DB', '2')}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield Servers("postgresql://quimbi:quimbi@127.0.0.1:5432/postgres", redis_url, "127.0.0.1:9092")


@pytest.fixture(scope="session")
def infra() -> Iterator[Servers]:
    with servers() as found:
        yield found


@contextlib.asynccontextmanager
async def running_suite(
    infra: Servers, port_offset: int, replicas: dict[str, int] | None = None
) -> AsyncIterator[Suite]:
    """The services as `make run` starts them, with databases and topics of their own."""
    namespace = unique("_e2e")
    opts = Options(
        port_offset=port_offset,
        namespace=namespace,
        postgres_dsn=infra.postgres_dsn,
        redis_url=infra.redis_url,
        kafka=infra.kafka_bootstrap,
        log_dir=ROOT / ".local" / "logs" / namespace.strip("_"),
        seed=False,
        echo_logs=False,
        extra_env={
            "AUTO_ASSIGN": "false",
            "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
            "RATE_LIMIT_PER_AGENT": "100000",
            "RATE_LIMIT_PER_IP": "100000",
            # Read-your-writes waits: 2 s by default; this shared 2-core machine (load 9-17 while
            # six people test) has event-pipeline tails past 2 s (see the root README).
            "READ_YOUR_WRITES_WAIT_SECONDS": os.environ.get("E2E_RYW_WAIT_SECONDS", "5"),
            "TICKETS_TIMEOUT": "10",  # ai-proxy reads tickets: above that wait (ai-proxy README)
        },
        replicas=replicas or {},
    )
    suite = Suite(opts)
    await suite.prepare_databases()
    await suite.start()
    try:
        await suite.wait_ready(timeout=180)
        yield suite
    finally:
        await suite.stop()
        conn = await asyncpg.connect(infra.postgres_dsn)
        try:
            for service in suite.services:
                if service.database:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{service.database}" WITH (FORCE)')
        finally:
            await conn.close()


def port_offset() -> int:
    return int(os.environ.get("E2E_PORT_OFFSET", "10000"))


@pytest.fixture(scope="session")
async def suite(infra: Servers) -> AsyncIterator[Suite | ExternalStack]:
    if external := os.environ.get("E2E_GATEWAY_URL"):
        yield ExternalStack(external, os.environ.get("E2E_TOPIC_PREFIX", ""))
        return
    async with running_suite(infra, port_offset()) as suite:
        yield suite


@pytest.fixture(scope="session")
def topic_prefix(suite: Suite | ExternalStack) -> str:
    if isinstance(suite, ExternalStack):
        return suite.topic_prefix
    return suite.services[0].env["KAFKA_TOPIC_PREFIX"]


@pytest.fixture(scope="session")
async def gateway(suite: Suite | ExternalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=suite.gateway_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="session")
async def admin(gateway: httpx.AsyncClient) -> Agent:
    token = await login(gateway, ADMIN["email"], ADMIN["password"])
    me = (await gateway.get("/api/agents/me", headers={"Authorization": f"Bearer {token}"})).json()
    return Agent(me["id"], ADMIN["email"], "admin", token)


@pytest.fixture
def make_agent(gateway: httpx.AsyncClient, admin: Agent):  # type: ignore[no-untyped-def]
    """Create an agent of a role (online, with specializations) and log it in."""

    async def create(role: str = "agent", **fields: object) -> Agent:
        email = f"{unique(role.replace('_', '-') + '-')}@example.com"
        body = {
            "email": email,
            "password": PASSWORD,
            "name": f"E2E {role}",
            "role": role,
            "department": "support",
            "specializations": ["billing"],
            "max_concurrent_tickets": 50,
            **fields,
        }
        response = await gateway.post("/api/agents", json=body, headers=admin.headers)
        assert response.status_code == 201, response.text
        token = await login(gateway, email, PASSWORD)
        return Agent(response.json()["id"], email, role, token)

    return create
