"""Fixtures for the agents service's tests: a migrated database of their own, a running app on
its own Kafka topic prefix, real RS256 keys, and a `Harness` of small helpers.

Tickets created in the shared database always carry a category of their own, so the shared
app's auto-assignment never hands one test's tickets to another test's agents; tests of the
"no category → any online agent" rule use a fresh database (`fresh_database`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from quimbi_agents.main import build_app
from quimbi_agents.models import Agent, TicketAssignment
from quimbi_agents.passwords import Passwords
from quimbi_agents.projections import apply_ticket_event
from quimbi_agents.settings import Settings
from quimbi_common.auth import issue_token
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import Role
from quimbi_common.events import (
    Contract,
    CustomerSnapshot,
    TicketData,
    TicketUpdatedData,
    build_event,
)
from quimbi_common.runtime import Runtime
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    EventProbe,
    SigningKeys,
    migrated_database,
    running_app,
    unique,
)
from quimbi_common.uow import UnitsOfWork

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
KEYS = SigningKeys()
PASSWORD = "correct-horse-battery"
OUT_TOPICS = [
    "agent.created",
    "agent.updated",
    "agent.deleted",
    "ticket.assigned",
    "assignment.updated",
]


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "database_pool_size": 20,
        "redis_url": REDIS_URL,
        "kafka_bootstrap_servers": KAFKA,
        "kafka_topic_prefix": f"{unique('t')}.",
        "outbox_poll_interval_seconds": 0.2,
        "consumer_retry_backoff_seconds": 0.01,
        "jwt_private_key": SecretStr(KEYS.private_pem),
        "jwt_key_id": KEYS.kid,
        "bcrypt_rounds": 4,
        "login_max_failures_per_ip": 100_000,
        "login_throttle_prefix": unique("test-login:"),
        "auto_assign": True,
        "log_json": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def bearer_for(agent_id: str, role: Role, email: str | None = None) -> dict[str, str]:
    """Like KEYS.headers, with a chosen email."""
    token, _ = issue_token(
        KEYS.private_pem,
        KEYS.kid,
        subject=agent_id,
        email=email or f"{agent_id}@example.com",
        role=role,
        issuer=TEST_ISSUER,
        audience=TEST_AUDIENCE,
        ttl_seconds=3600,
    )
    return {"Authorization": f"Bearer {token}"}


def customer() -> CustomerSnapshot:
    cid = unique("cust-")
    return CustomerSnapshot(id=cid, email=f"{cid}@example.com", name="Casey Customer")


class Harness:
    """Small verbs the tests are written in."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings
        self.units = UnitsOfWork(sessions, settings.service_name)
        self.admin = KEYS.headers(Role.ADMIN)
        self._hash: str | None = None

    # --- agents ---
    async def agent(
        self,
        role: Role | str = Role.AGENT,
        *,
        status: str = "offline",
        department: str | None = None,
        specializations: list[str] | None = None,
        max_concurrent_tickets: int = 10,
        score: float = 0.0,
        password: str = PASSWORD,
    ) -> dict[str, Any]:
        """A new agent (created through the API) with a token of its own in `headers`."""
        response = await self.client.post(
            "/api/agents",
            headers=self.admin,
            json={
                "email": f"{unique('agent-')}@quimbi.dev",
                "password": password,
                "name": "Test Agent",
                "role": str(role),
                "status": status,
                "department": department,
                "specializations": specializations or [],
                "max_concurrent_tickets": max_concurrent_tickets,
                "customer_satisfaction_score": score,
            },
        )
        assert response.status_code == 201, response.text
        agent: dict[str, Any] = response.json()
        agent["headers"] = self.headers(agent)
        agent["password"] = password
        return agent

    async def agents_fast(self, *specs: dict[str, Any]) -> list[dict[str, Any]]:
        """Several agents written straight to the database in one transaction (no events):
        for tests whose subject is not agent creation. Each spec holds `role`, `department`…"""
        if self._hash is None:
            self._hash = Passwords(self.settings.bcrypt_rounds).context.hash(PASSWORD)
        rows = []
        async with self.sessions() as session, session.begin():
            for spec in specs:
                now = datetime.now(UTC)
                row = Agent(
                    id=str(uuid.uuid4()),
                    email=f"{unique('fast-')}@quimbi.dev",
                    hashed_password=self._hash,
                    name="Fast Agent",
                    role=str(spec.get("role", Role.AGENT)),
                    status=spec.get("status", "offline"),
                    department=spec.get("department"),
                    specializations=spec.get("specializations", []),
                    max_concurrent_tickets=spec.get("max_concurrent_tickets", 10),
                    is_active=True,
                    tickets_resolved_today=0,
                    avg_response_time_seconds=0,
                    response_time_samples=0,
                    response_time_total_seconds=0,
                    customer_satisfaction_score=spec.get("score", 0.0),
                    created_at=now,
                    updated_at=now,
                    version=1,
                )
                session.add(row)
                rows.append(row)
        return [
            {
                "id": r.id,
                "email": r.email,
                "role": r.role,
                "headers": self.headers({"id": r.id, "role": r.role}),
            }
            for r in rows
        ]

    @staticmethod
    def headers(agent: dict[str, Any]) -> dict[str, str]:
        return bearer_for(agent["id"], Role(agent["role"]))

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/api/agents/login", json={"email": email, "password": password}
        )

    async def row(self, agent_id: str) -> Agent:
        async with self.sessions() as session:
            agent = await session.get(Agent, agent_id)
            assert agent is not None
            return agent

    # --- tickets ---
    @staticmethod
    def ticket(
        *,
        category: str | None = "unique",
        assigned_agent_id: str | None = None,
        status: str = "open",
        priority: str = "normal",
        created_at: datetime | None = None,
    ) -> TicketData:
        now = created_at or datetime.now(UTC)
        return TicketData(
            id=f"ticket-{uuid.uuid4()}",
            customer_id="c",
            subject="Help",
            status=status,  # type: ignore[arg-type]
            priority=priority,  # type: ignore[arg-type]
            channel="email",  # type: ignore[arg-type]
            category=unique("cat-") if category == "unique" else category,
            assigned_agent_id=assigned_agent_id,
            created_at=now,
            updated_at=now,
            version=1,
            customer=customer(),
        )

    @staticmethod
    def updated(ticket: TicketData, **fields: Any) -> TicketUpdatedData:
        """The next version of `ticket` with `fields` changed (and listed in `changes`)."""
        base = ticket.model_dump(exclude={"changes"})
        changes = {k: {"old": base.get(k), "new": v} for k, v in fields.items()}
        base.update(fields)
        base["version"] = ticket.version + 1
        base["updated_at"] = fields.get("updated_at", datetime.now(UTC))
        return TicketUpdatedData(**base, changes=changes)

    async def apply(self, data: TicketData, settings: Settings | None = None) -> None:
        """Apply a ticket event as the consumer would (one transaction), without Kafka."""
        async with self.units.begin() as unit:
            await apply_ticket_event(unit, settings or self.settings, data)

    async def active(self, ticket_id: str) -> TicketAssignment | None:
        async with self.sessions() as session:
            return await session.scalar(
                sa.select(TicketAssignment).where(
                    TicketAssignment.ticket_id == ticket_id, TicketAssignment.is_active
                )
            )

    async def open_count(self, agent_id: str) -> int:
        async with self.sessions() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(TicketAssignment)
                .where(TicketAssignment.agent_id == agent_id, TicketAssignment.is_active)
            )
            return int(count or 0)


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    """The key the test apps sign and verify with, for tokens of any role and agent id."""
    return KEYS


@pytest.fixture(scope="session")
def harness_for() -> Any:
    """`harness_for(client, sessions, settings)`: the helpers on an app of the test's own."""
    return Harness


@pytest.fixture(scope="session")
def make() -> Any:
    """`make(database_url, **overrides)`: settings for an app of the test's own."""
    return make_settings


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database(MIGRATIONS, "agents") as url:
        yield url


@pytest.fixture(scope="session")
async def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> FastAPI:
    return build_app(settings)


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as client:
        runtime: Runtime = app.state.runtime
        for _ in range(200):
            if runtime.kafka_connected:
                break
            await asyncio.sleep(0.05)
        yield client


@pytest.fixture(scope="session")
async def engine(database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture(scope="session")
async def h(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> Harness:
    return Harness(client, sessions, settings)


@pytest.fixture(scope="session")
async def probe(client: httpx.AsyncClient, settings: Settings) -> AsyncIterator[EventProbe]:
    """Every event the shared app publishes (started after the app created its topics)."""
    async with EventProbe(OUT_TOPICS, prefix=settings.kafka_topic_prefix) as probe:
        yield probe


@pytest.fixture(scope="session")
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def publish(producer: AIOKafkaProducer, settings: Settings) -> Any:
    """Put a synthetic input event on the shared app's topic, as the tickets service would."""

    async def send(topic: str, data: Contract, target: Settings = settings) -> None:
        key, event = build_event(topic, data, source="tickets")
        await producer.send_and_wait(
            target.topic(topic), value=event.model_dump_json().encode(), key=key.encode()
        )

    return send


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A database of the test's own, for rules that look at every agent (no category)."""
    async with migrated_database(MIGRATIONS, "agents") as url:
        yield url


@pytest.fixture
def http_only() -> Any:
    """Factory: an app serving HTTP only (no Kafka, no bootstrap), seen from a chosen IP."""
    return _http_only


@contextlib.asynccontextmanager
async def _http_only(
    settings: Settings, client_ip: str = "127.0.0.1"
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app serving HTTP only (no Kafka, no bootstrap), from a chosen client address."""
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://agents") as client:
            yield app, client
    finally:
        runtime: Runtime = app.state.runtime
        await runtime.redis.aclose()
        if runtime.engine is not None:
            await runtime.engine.dispose()
