"""The whole suite for the end-to-end tests: real servers, real services, one gateway.

The suite is started by `tests/conftest.py`'s `launch_suite`, on ports offset by 10000 and
Redis database 2 (E2E_PORT_OFFSET and E2E_REDIS_DB let two e2e runs share one machine), or is
the running stack at `E2E_GATEWAY_URL` (`make test-e2e-up`). `E2E_SPLIT=1` runs each service
as a serve and a consume process (consume ports: the offset + 9101…9105), as `make run` does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from launcher import Suite
from support import ADMIN, GATEWAY_LIMITS, PASSWORD, RYW_ENV, Agent, ExternalStack, login

from quimbi_common.testing import unique

SPANS_ROOT = Path(__file__).resolve().parents[2] / ".local" / "logs"


@pytest.fixture(scope="session")
async def suite(launch_suite) -> AsyncIterator[Suite | ExternalStack]:  # type: ignore[no-untyped-def]
    if external := os.environ.get("E2E_GATEWAY_URL"):
        yield ExternalStack(external, os.environ.get("E2E_TOPIC_PREFIX", ""))
        return
    spans = SPANS_ROOT / unique("spans-e2e-")
    await asyncio.to_thread(spans.mkdir, parents=True)
    async with launch_suite(
        "e2e",
        port_offset=int(os.environ.get("E2E_PORT_OFFSET", "10000")),
        redis_db=int(os.environ.get("E2E_REDIS_DB", "2")),
        split=os.environ.get("E2E_SPLIT") == "1",  # serve and consume apart, as `make run`
        # Tracing on, each process exporting its spans as JSON lines (test_tracing.py).
        env={
            **RYW_ENV,
            "QUIMBI_TRACE_FILE": str(spans / "spans-{service}-{pid}.jsonl"),
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    ) as started:
        yield started


@pytest.fixture(scope="session")
def topic_prefix(suite: Suite | ExternalStack) -> str:
    if isinstance(suite, ExternalStack):
        return suite.topic_prefix
    return suite.services[0].env["KAFKA_TOPIC_PREFIX"]


@pytest.fixture(scope="session")
async def gateway(suite: Suite | ExternalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=suite.gateway_url, timeout=30.0, limits=GATEWAY_LIMITS
    ) as client:
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
