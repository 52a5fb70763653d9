"""Agents' reports (issue 19 item 3): what the report projection costs per event, and what a
report costs per request on a year of tickets.

Needs only the local PostgreSQL and Redis (`make infra`); no running service. It creates a
scratch database with the agents service's migrations and drives the service's own code
in-process; CPU is this process plus the scratch database's PostgreSQL backends (/proc).

1. Projection: `--lifecycles` tickets' events (created, customer message, agent reply,
   resolved, two sla.updated), applied `--batch` events per transaction as the consumer
   does, once with the handlers agents had before reports (ticket.*, message.added) and once
   with the report handlers added (which also consume sla.updated): CPU per ticket lifecycle.
2. Reports: `--tickets` tickets over 366 days for `--agents` agents in 10 departments (rows
   written straight to the tables), then `GET /api/reports/agents|teams` through the app
   (ASGI, no network) for 7 and 366 days: latency and CPU per request.

    uv run python bench/agents_reports.py [--tickets 100000] [--agents 200] [--lifecycles 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _shared import cpu_seconds, percentile, record
from pydantic import SecretStr

from quimbi_agents.main import build_app
from quimbi_agents.projections import apply_message_added, apply_ticket_event
from quimbi_agents.reports import projection, queries
from quimbi_agents.settings import Settings
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import Role
from quimbi_common.events import (
    Contract,
    CustomerSnapshot,
    FieldChange,
    MessageData,
    SlaTrackingData,
    TicketData,
    TicketUpdatedData,
)
from quimbi_common.migrations import upgrade
from quimbi_common.testing import SigningKeys, create_database, drop_database, unique
from quimbi_common.uow import UnitOfWork, UnitsOfWork

Handler = Callable[[UnitOfWork, list[Any]], Awaitable[Any]]
MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "agents" / "migrations"


class Cpu:
    """CPU seconds of this process and the scratch database's backends, between two reads."""

    def __init__(self, engine: Any, database: str) -> None:
        self.engine = engine
        self.database = database

    async def _backends(self) -> list[int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                {"d": self.database},
            )
            return [r.pid for r in rows]

    async def read(self) -> float:
        total = cpu_seconds(os.getpid())
        for pid in await self._backends():
            with contextlib.suppress(OSError):  # a backend that just ended
                total += cpu_seconds(pid)
        return total


def lifecycle(agent_id: str, at: datetime) -> list[tuple[str, Contract]]:
    """One ticket's events as agents receives them."""
    tid = f"ticket_{uuid.uuid4().hex}"
    ticket = TicketData(
        id=tid,
        customer_id="c",
        subject="bench",
        status="open",  # type: ignore[arg-type]
        priority="normal",  # type: ignore[arg-type]
        channel="email",  # type: ignore[arg-type]
        assigned_agent_id=agent_id,
        created_at=at,
        updated_at=at,
        version=1,
        customer=CustomerSnapshot(id="c", email="c@example.com"),
    )

    def message(from_agent: bool, after: int) -> MessageData:
        return MessageData(
            id=f"msg_{uuid.uuid4().hex}",
            ticket_id=tid,
            from_agent=from_agent,
            author_agent_id=agent_id if from_agent else None,
            content="x",
            created_at=at + timedelta(seconds=after),
            version=1,
            ticket_status="open",  # type: ignore[arg-type]
        )

    def clock(version: int, fr: str, res: str) -> SlaTrackingData:
        return SlaTrackingData(
            ticket_id=tid,
            priority="normal",  # type: ignore[arg-type]
            first_response_status=fr,  # type: ignore[arg-type]
            first_response_deadline=at + timedelta(hours=1),
            first_response_at=at + timedelta(seconds=60) if fr == "met" else None,
            resolution_status=res,  # type: ignore[arg-type]
            resolution_deadline=at + timedelta(hours=8),
            resolved_at=at + timedelta(seconds=600) if res == "met" else None,
            version=version,
        )

    resolved = TicketUpdatedData(
        **{
            **ticket.model_dump(),
            "status": "resolved",
            "version": 2,
            "updated_at": at + timedelta(seconds=600),
        },
        changes={"status": FieldChange(old="open", new="resolved")},
    )
    return [
        ("ticket", ticket),
        ("message", message(False, 1)),
        ("message", message(True, 60)),
        ("sla", clock(2, "met", "pending")),
        ("ticket", resolved),
        ("sla", clock(3, "met", "met")),
    ]


def handlers(settings: Settings, with_reports: bool) -> dict[str, list[Handler]]:
    """What agents runs per consumer batch for each kind of event: the handlers it had before
    reports (one call per event), plus, after, the report projection (one call per batch)."""

    async def ticket(unit: UnitOfWork, batch: list[Any]) -> None:
        for data in batch:
            await apply_ticket_event(unit, settings, data)

    async def message(unit: UnitOfWork, batch: list[Any]) -> None:
        for data in batch:
            await apply_message_added(unit, data)

    chosen: dict[str, list[Handler]] = {"ticket": [ticket], "message": [message], "sla": []}
    if with_reports:
        chosen["ticket"].append(lambda unit, batch: projection.apply_tickets(unit.session, batch))
        chosen["message"].append(lambda unit, batch: projection.apply_messages(unit.session, batch))
        chosen["sla"].append(lambda unit, batch: projection.apply_slas(unit.session, batch))
    return chosen


async def bench_projection(
    units: UnitsOfWork, cpu: Cpu, settings: Settings, agent: str, args: Any
) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    for with_reports in (False, True, False, True):  # alternated: the machine's load drifts
        chosen = handlers(settings, with_reports)
        events = [e for _ in range(args.lifecycles) for e in lifecycle(agent, datetime.now(UTC))]
        consumed = sum(1 for kind, _ in events if chosen[kind]) // args.lifecycles
        before = await cpu.read()
        for start in range(0, len(events), args.batch):
            by_kind: dict[str, list[Any]] = {}
            for kind, data in events[start : start + args.batch]:
                by_kind.setdefault(kind, []).append(data)
            async with units.begin() as unit:
                for kind, batch in by_kind.items():
                    for handler in chosen[kind]:
                        await handler(unit, batch)
        spent = await cpu.read() - before
        label = "after" if with_reports else "before"
        per = spent * 1000 / args.lifecycles
        results.setdefault(label, []).append(per)
        print(
            f"projection {label:6}: {per:.2f} ms CPU per ticket lifecycle "
            f"({consumed} of 6 events consumed)"
        )
    return {k: statistics.median(v) for k, v in results.items()}


SEED = """
WITH t AS (
  SELECT g, now() - (random() * interval '366 days') AS created,
         (SELECT array_agg(id ORDER BY id) FROM agents) AS ids
  FROM generate_series(1, :n) g
)
INSERT INTO report_tickets (ticket_id, created_at, resolved_at, resolved_by, resolution_version,
  first_response_at, first_response_by, sla_version, first_response_status,
  first_response_decided_at, resolution_status, resolution_decided_at)
SELECT 'bench_' || g, created,
  CASE WHEN g % 5 <> 0 THEN created + random() * interval '3 days' END,
  CASE WHEN g % 5 <> 0 THEN ids[1 + g % array_length(ids, 1)] END, 2,
  created + random() * interval '4 hours', ids[1 + g % array_length(ids, 1)], 3,
  CASE WHEN g % 4 = 0 THEN 'breached' ELSE 'met' END,
  created + CASE WHEN g % 4 = 0 THEN interval '1 hour' ELSE interval '30 minutes' END,
  CASE WHEN g % 5 = 0 THEN 'pending' WHEN g % 7 = 0 THEN 'breached' ELSE 'met' END,
  CASE WHEN g % 5 <> 0 THEN created + interval '12 hours' END
FROM t
"""
SEED_OPEN = """
INSERT INTO ticket_projection (id, status, priority, assigned_agent_id, created_at, updated_at,
  version)
SELECT r.ticket_id, 'open', (ARRAY['low','normal','high','urgent'])[1 + length(r.ticket_id) % 4],
  r.first_response_by, r.created_at, r.created_at, 1
FROM report_tickets r WHERE r.resolved_at IS NULL
"""
SEED_RATINGS = """
INSERT INTO ticket_ratings (ticket_id, customer_id, agent_id, rating, rated_at)
SELECT r.ticket_id, 'c', r.resolved_by, 1 + (abs(hashtext(r.ticket_id)) % 5),
  r.resolved_at + interval '1 hour'
FROM report_tickets r WHERE r.resolved_at IS NOT NULL AND abs(hashtext(r.ticket_id)) % 3 = 0
"""


async def seed(engine: Any, args) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO agents (id, email, hashed_password, name, department) "
                "SELECT 'agent_' || g, 'a' || g || '@bench.dev', 'x', 'Agent ' || g, "
                "'team-' || (g % 10) FROM generate_series(1, :n) g"
            ),
            {"n": args.agents},
        )
        await conn.execute(sa.text(SEED), {"n": args.tickets})
        await conn.execute(sa.text(SEED_OPEN))
        await conn.execute(sa.text(SEED_RATINGS))
        await conn.execute(sa.text("ANALYZE"))


async def bench_reports(app: Any, cpu: Cpu, headers: dict[str, str], args) -> dict[str, float]:
    out = {}
    now = datetime.now(UTC)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agents") as client:
        for kind in ("agents", "teams"):
            for days in (7, 366):
                params = {"from": (now - timedelta(days=days)).isoformat(), "to": now.isoformat()}
                warm = await client.get(f"/api/reports/{kind}", headers=headers, params=params)
                assert warm.status_code == 200, warm.text
                latencies = []
                before = await cpu.read()
                for _ in range(args.requests):
                    t = time.perf_counter()
                    response = await client.get(
                        f"/api/reports/{kind}", headers=headers, params=params
                    )
                    latencies.append((time.perf_counter() - t) * 1000)
                    assert response.status_code == 200
                per = (await cpu.read() - before) * 1000 / args.requests
                out[f"{kind} {days}d"] = per
                print(
                    f"GET /api/reports/{kind} {days:>3} days: "
                    f"p50 {statistics.median(latencies):.0f} ms, "
                    f"p99 {percentile(latencies, 99):.0f} ms, {per:.1f} ms CPU per request "
                    f"(this process + PostgreSQL)"
                )
    return out


async def explain(engine: Any) -> None:
    """Where a 7-day agents report spends its time: each of its queries' execution time."""
    now = datetime.now(UTC)
    scope = queries.Scope(now - timedelta(days=7), now, None)
    templates = {
        "resolutions": (queries._DURATIONS, {"rows": queries._RESOLUTIONS}),
        "first responses": (queries._DURATIONS, {"rows": queries._FIRST_RESPONSES}),
        "sla": (queries._SLA, {}),
        "backlog": (queries._BACKLOG, {}),
        "csat": (queries._CSAT, {}),
    }
    async with engine.connect() as conn:
        for name, (template, parts) in templates.items():
            statement = scope.sql(template, "agent", **parts)
            plan = await conn.execute(
                sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.text), scope.params()
            )
            print(f"  {name}: {plan.scalar()[0]['Execution Time']:.1f} ms")


async def main(args) -> None:
    name = unique("bench_reports_")
    url = await create_database(name)
    keys = SigningKeys()
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        settings = Settings(
            database_url=url,
            auto_assign=False,
            jwt_private_key=SecretStr(keys.private_pem),
            jwt_key_id=keys.kid,
            log_level="WARNING",
        )
        engine = create_engine(settings)
        units = UnitsOfWork(create_sessionmaker(engine), settings.service_name)
        cpu = Cpu(engine, name)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO agents (id, email, hashed_password, name) "
                    "VALUES ('bench_agent', 'b@bench.dev', 'x', 'B')"
                )
            )
        projection_cost = await bench_projection(units, cpu, settings, "bench_agent", args)
        async with engine.begin() as conn:
            for table in (
                "report_tickets",
                "ticket_projection",
                "ticket_assignments",
                "response_clocks",
                "outbox",
            ):
                await conn.execute(sa.text(f"TRUNCATE {table} CASCADE"))
        t = time.perf_counter()
        await seed(engine, args)
        print(
            f"seeded {args.tickets} tickets, {args.agents} agents "
            f"in {time.perf_counter() - t:.1f} s"
        )
        if args.explain:
            await explain(engine)
        app = build_app(settings)
        report_cost = await bench_reports(app, cpu, keys.headers(Role.MANAGER), args)
        await app.state.runtime.redis.aclose()
        await app.state.runtime.engine.dispose()
        await engine.dispose()
        record(
            "agents: CPU per ticket lifecycle, report projection added",
            "(none)",
            f"{projection_cost['before']:.2f} → {projection_cost['after']:.2f} ms",
        )
        record(
            f"GET /api/reports/agents, 366 days of {args.tickets} tickets",
            "(none)",
            f"{report_cost['agents 366d']:.0f} ms CPU per request",
        )
    finally:
        await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--lifecycles", type=int, default=500)
    parser.add_argument("--batch", type=int, default=120)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="time each report query")
    asyncio.run(main(parser.parse_args()))
