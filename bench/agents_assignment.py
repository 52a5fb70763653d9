"""Agents service: auto-assignment throughput under concurrency, waiting-ticket pickup, login.

Needs only the local PostgreSQL and Redis (`make infra`); no running service. It creates a
scratch database with the agents service's migrations and drives the service's own code
in-process:

1. `--tickets` ticket.created events applied `--concurrency` at a time (each in its own
   transaction, as consumer replicas would) against `--agents` online agents; reports
   tickets/s, per-event latency, and checks that no agent passed its capacity.
2. `--waiting` unassigned tickets picked up in one `assign_waiting_tickets` call (what
   PATCH /api/agents/me/status → online triggers).
3. Logins through the HTTP API (ASGI, no network) at BCRYPT_ROUNDS=12, the production cost,
   and token verification on an authenticated request.

    uv run python bench/agents_assignment.py [--tickets 600] [--agents 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from quimbi_agents.main import build_app
from quimbi_agents.models import Agent, TicketAssignment
from quimbi_agents.passwords import Passwords
from quimbi_agents.projections import apply_ticket_event
from quimbi_agents.service.assignments import assign_waiting_tickets
from quimbi_agents.settings import Settings
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import CustomerSnapshot, TicketData
from quimbi_common.migrations import upgrade
from quimbi_common.testing import SigningKeys, create_database, drop_database, unique
from quimbi_common.uow import UnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "agents" / "migrations"
CATEGORIES = ["billing", "shipping", "returns", "technical", None]
PASSWORD = "bench-password-123"


def ticket(n: int, priority: str = "normal") -> TicketData:
    now = datetime.now(UTC)
    return TicketData(
        id=f"bench-{uuid.uuid4()}",
        customer_id="c",
        subject="bench",
        status="open",  # type: ignore[arg-type]
        priority=priority,  # type: ignore[arg-type]
        channel="email",  # type: ignore[arg-type]
        category=CATEGORIES[n % len(CATEGORIES)],
        created_at=now,
        updated_at=now,
        version=1,
        customer=CustomerSnapshot(id="c", email="c@example.com"),
    )


async def add_agents(sessions, count: int, capacity: int, status: str, hashed: str) -> list[str]:
    ids = []
    async with sessions() as session, session.begin():
        for i in range(count):
            now = datetime.now(UTC)
            agent = Agent(
                id=str(uuid.uuid4()),
                email=f"{unique('bench-')}@quimbi.dev",
                hashed_password=hashed,
                name=f"Bench {i}",
                role="agent",
                status=status,
                specializations=[c for c in CATEGORIES[i % 4 : i % 4 + 2] if c],
                max_concurrent_tickets=capacity,
                is_active=True,
                tickets_resolved_today=0,
                avg_response_time_seconds=0,
                response_time_samples=0,
                response_time_total_seconds=0,
                customer_satisfaction_score=round(3 + (i % 20) / 10, 1),
                created_at=now,
                updated_at=now,
                version=1,
            )
            session.add(agent)
            ids.append(agent.id)
    return ids


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


async def bench_auto_assign(sessions, settings, args, hashed: str) -> None:
    await add_agents(sessions, args.agents, args.capacity, "online", hashed)
    tickets = [ticket(n) for n in range(args.tickets)]
    latencies: list[float] = []
    gate = asyncio.Semaphore(args.concurrency)

    async def one(data: TicketData) -> None:
        async with gate:
            start = time.perf_counter()
            async with sessions() as session, session.begin():
                await apply_ticket_event(UnitOfWork(session, settings.service_name), settings, data)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in tickets))
    elapsed = time.perf_counter() - start
    async with sessions() as session:
        loads = (
            await session.execute(
                sa.select(Agent.max_concurrent_tickets, sa.func.count(TicketAssignment.id))
                .join(TicketAssignment, TicketAssignment.agent_id == Agent.id)
                .where(TicketAssignment.is_active)
                .group_by(Agent.id)
            )
        ).all()
    assigned = sum(n for _, n in loads)
    over = sum(1 for cap, n in loads if n > cap)
    print(
        f"auto-assign: {args.tickets} tickets, {args.agents} agents x {args.capacity}, "
        f"concurrency {args.concurrency}: {args.tickets / elapsed:.0f} tickets/s, "
        f"p50 {pct(latencies, 0.5):.1f} ms, p95 {pct(latencies, 0.95):.1f} ms, "
        f"assigned {assigned}, agents over capacity: {over}"
    )


async def bench_pickup(sessions, settings, args, hashed: str) -> None:
    off = settings.model_copy(update={"auto_assign": False})
    for n in range(args.waiting):
        async with sessions() as session, session.begin():
            data = ticket(n, priority=("low", "normal", "high", "urgent")[n % 4])
            await apply_ticket_event(
                UnitOfWork(session, off.service_name),
                off,
                data.model_copy(update={"category": None}),
            )
    await add_agents(sessions, 1, args.waiting, "online", hashed)
    start = time.perf_counter()
    async with sessions() as session, session.begin():
        assigned = await assign_waiting_tickets(
            UnitOfWork(session, settings.service_name), settings
        )
    elapsed = time.perf_counter() - start
    print(
        f"pickup: {assigned} of {args.waiting} waiting tickets handed out in "
        f"{elapsed * 1000:.0f} ms (WAITING_TICKETS_BATCH={settings.waiting_tickets_batch})"
    )


async def bench_login(url: str, keys: SigningKeys, args) -> None:
    settings = Settings(
        database_url=url,
        jwt_private_key=SecretStr(keys.private_pem),
        jwt_key_id=keys.kid,
        bcrypt_rounds=12,
        login_max_failures_per_ip=10**6,
        log_level="WARNING",
    )
    app = build_app(settings)
    engine = create_engine(settings)
    hashed = Passwords(12).context.hash(PASSWORD)
    async with create_sessionmaker(engine)() as session, session.begin():
        email = f"{unique('login-')}@quimbi.dev"
        now = datetime.now(UTC)
        session.add(
            Agent(
                id=str(uuid.uuid4()),
                email=email,
                hashed_password=hashed,
                name="L",
                role="agent",
                status="offline",
                specializations=[],
                max_concurrent_tickets=10,
                is_active=True,
                tickets_resolved_today=0,
                avg_response_time_seconds=0,
                response_time_samples=0,
                response_time_total_seconds=0,
                customer_satisfaction_score=0.0,
                created_at=now,
                updated_at=now,
                version=1,
            )
        )
    await engine.dispose()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agents") as client:
        logins, wrong, unknown = [], [], []
        token = ""
        for _ in range(args.logins):
            t = time.perf_counter()
            response = await client.post(
                "/api/agents/login", json={"email": email, "password": PASSWORD}
            )
            logins.append(time.perf_counter() - t)
            token = response.json()["access_token"]
            t = time.perf_counter()
            await client.post(
                "/api/agents/login", json={"email": email, "password": "nope-nope-nope"}
            )
            wrong.append(time.perf_counter() - t)
            await client.post("/api/agents/login", json={"email": email, "password": PASSWORD})
            t = time.perf_counter()
            await client.post(
                "/api/agents/login", json={"email": f"{unique()}@x.dev", "password": "nope-nope"}
            )
            unknown.append(time.perf_counter() - t)
        me = []
        for _ in range(200):
            t = time.perf_counter()
            await client.get("/api/agents/me", headers={"Authorization": f"Bearer {token}"})
            me.append(time.perf_counter() - t)
    runtime = app.state.runtime
    await runtime.redis.aclose()
    await runtime.engine.dispose()
    print(
        f"login (bcrypt cost 12): p50 {statistics.median(logins) * 1000:.0f} ms; "
        f"wrong password p50 {statistics.median(wrong) * 1000:.0f} ms; "
        f"unknown email p50 {statistics.median(unknown) * 1000:.0f} ms"
    )
    print(
        f"GET /api/agents/me with token verification: p50 {pct(me, 0.5):.1f} ms, "
        f"p95 {pct(me, 0.95):.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=600)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--logins", type=int, default=10)
    args = parser.parse_args()

    name = unique("bench_agents_")
    url = await create_database(name)
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        settings = Settings(database_url=url, auto_assign=True, database_pool_size=args.concurrency)
        engine = create_engine(settings)
        sessions = create_sessionmaker(engine)
        hashed = Passwords(4).context.hash(PASSWORD)
        await bench_auto_assign(sessions, settings, args, hashed)
        async with sessions() as session, session.begin():  # a clean slate for the pickup
            await session.execute(sa.text("UPDATE agents SET status = 'offline'"))
            await session.execute(sa.text("DELETE FROM ticket_assignments"))
            await session.execute(sa.text("DELETE FROM ticket_projection"))
        await bench_pickup(sessions, settings, args, hashed)
        await engine.dispose()
        await bench_login(url, SigningKeys(), args)
    finally:
        await drop_database(name)


if __name__ == "__main__":
    asyncio.run(main())
