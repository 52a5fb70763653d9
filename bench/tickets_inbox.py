"""Smart inbox: `GET /api/tickets?limit=50&status=open` on 100k tickets (10k open), direct to
the tickets service at concurrency 16, against the same page's raw SQL time.

Needs the local infrastructure (`make infra`). Starts everything it measures itself: creates a
scratch database migrated with the service's migrations, fills it with COPY (100k tickets,
20k customers, one message per ticket), starts `python -m quimbi_tickets` on a spare port
against it (its own Kafka topic prefix and consumer group), measures, then stops the service
and drops the database.

    uv run python bench/tickets_inbox.py [--tickets 100000] [--open 10000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _shared import cpu_seconds, free_port, percentile
from sqlalchemy.dialects import postgresql

from quimbi_common.auth import Principal
from quimbi_common.db import asyncpg_dsn
from quimbi_common.enums import Channel, Role, TicketPriority, TicketStatus
from quimbi_common.migrations import upgrade
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    SigningKeys,
    create_database,
    drop_database,
    unique,
)
from quimbi_tickets.queries import InboxQuery, inbox_statement

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "services" / "tickets" / "migrations"
CONCURRENCY = 16
RARE_WORD, RARE_SHARE = "chargeback", 0.01
WARM_UP = 50
WORDS = [
    *("order", "parcel", "refund", "payment", "card", "charged", "twice", "delivery", "late"),
    *("broken", "missing", "login", "password", "account", "address", "invoice", "discount"),
    *("subscription", "cancel", "coupon", "size", "exchange"),
]


async def fill(dsn: str, tickets: int, open_tickets: int, agents: list[str]) -> None:
    """100k tickets, `open_tickets` of them open, spread over 20k customers; one message each."""
    rng = random.Random(42)
    now = datetime.now(UTC)
    customers = max(1, tickets // 5)
    other_statuses = [s.value for s in TicketStatus if s != TicketStatus.OPEN]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "customers",
            columns=["id", "email", "name", "created_at", "updated_at", "lifetime_value"],
            records=[
                (f"cust_{i}", f"c{i}@example.com", f"Customer {i}", now, now, rng.uniform(0, 3000))
                for i in range(customers)
            ],
        )
        ticket_rows = []
        message_rows = []
        for i in range(tickets):
            created = now - timedelta(minutes=rng.randint(0, 60 * 24 * 90))
            status = "open" if i < open_tickets else rng.choice(other_statuses)
            subject = " ".join(rng.choices(WORDS, k=5))
            content = " ".join(rng.choices(WORDS, k=30))
            if rng.random() < RARE_SHARE:  # a rare topic, for a realistic topic alert
                content += f" {RARE_WORD}"
            ticket_id = f"ticket_{i:06d}"
            ticket_rows.append(
                (
                    ticket_id,
                    f"cust_{rng.randrange(customers)}",
                    subject,
                    status,
                    rng.choice([p.value for p in TicketPriority]),
                    rng.choice([c.value for c in Channel]),
                    rng.choice([*agents, None]),
                    created,
                    created,
                    1,
                    round(rng.uniform(0, 14), 2),
                    round(rng.uniform(0, 1), 2),
                    round(rng.uniform(0, 1), 2),
                )
            )
            message_rows.append(
                (
                    f"msg_{i:06d}",
                    ticket_id,
                    False,
                    content,
                    created,
                    created,
                    0.5,
                    "other",
                    1,
                )
            )
        await conn.copy_records_to_table(
            "tickets",
            columns=[
                "id",
                "customer_id",
                "subject",
                "status",
                "priority",
                "channel",
                "assigned_agent_id",
                "created_at",
                "updated_at",
                "version",
                "smart_score",
                "customer_sentiment",
                "estimated_difficulty",
            ],
            records=ticket_rows,
        )
        await conn.copy_records_to_table(
            "messages",
            columns=[
                "id",
                "ticket_id",
                "from_agent",
                "content",
                "created_at",
                "updated_at",
                "sentiment_score",
                "detected_intent",
                "version",
            ],
            records=message_rows,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def start_service(url: str, port: int, keys: SigningKeys) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "REDIS_URL": REDIS_URL,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "KAFKA_TOPIC_PREFIX": "bench.",
        "SERVICE_NAME": "tickets-bench",
        "JWKS_JSON": keys.jwks_json,
        "JWT_ISSUER": TEST_ISSUER,
        "JWT_AUDIENCE": TEST_AUDIENCE,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "quimbi_tickets"], env=env)


async def wait_until_live(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError("the tickets service exited")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health/live")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the tickets service did not come up")


async def load(
    base: str, headers: dict[str, str], params: dict[str, Any], requests: int
) -> tuple[list[float], float]:
    """`requests` GETs from CONCURRENCY workers; latencies in ms and the wall time."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get("/api/tickets", params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text

        for _ in range(WARM_UP):  # connections, prepared statements
            await client.get("/api/tickets", params=params)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return latencies, time.perf_counter() - began


async def raw_sql(dsn: str, query: InboxQuery, principal: Principal, runs: int) -> dict[str, float]:
    """The service's inbox statement over plain asyncpg, one at a time, and EXPLAIN ANALYZE's
    server-side execution time for it."""
    statement = inbox_statement(query, principal, boost=5.0)
    dialect = postgresql.dialect()
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET jit = off")  # as the service's migration sets for its database
        for _ in range(20):
            await conn.fetch(sql)
        timings: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            await conn.fetch(sql)
            timings.append((time.perf_counter() - started) * 1000)
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
    finally:
        await conn.close()
    return {
        "p50": statistics.median(timings),
        "p99": percentile(timings, 99),
        "server": json.loads(plan)[0]["Execution Time"],
    }


def alert(query: InboxQuery, keyword: str) -> InboxQuery:
    return InboxQuery(status=query.status, limit=query.limit, topic_alerts=[keyword])


async def measure(
    label: str, pid: int, base: str, headers: dict[str, str], params: dict[str, Any], n: int
) -> None:
    before, client_before = cpu_seconds(pid), time.process_time()
    latencies, wall = await load(base, headers, params, n)
    service_cpu_ms = (cpu_seconds(pid) - before) / (n + WARM_UP) * 1000
    client_cpu_ms = (time.process_time() - client_before) / (n + WARM_UP) * 1000
    print(
        f"{label:<44} p50 {statistics.median(latencies):6.2f} ms   "
        f"p99 {percentile(latencies, 99):6.2f} ms   {len(latencies) / wall:5.0f} req/s   "
        f"CPU/request: service {service_cpu_ms:.2f} ms, client {client_cpu_ms:.2f} ms"
    )


async def main(tickets: int, open_tickets: int, requests: int, keep: bool) -> None:
    name = unique("bench_tickets_")
    url = await create_database(name)
    dsn = asyncpg_dsn(url)
    keys = SigningKeys()
    agents = [unique("agent-") for _ in range(100)]
    process: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        await fill(dsn, tickets, open_tickets, agents)
        elapsed = time.perf_counter() - started
        print(f"setup: {tickets} tickets ({open_tickets} open) in {elapsed:.1f} s")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_service(url, port, keys)
        await wait_until_live(base, process)

        senior = {"Authorization": f"Bearer {keys.token(Role.SENIOR_AGENT)}"}
        agent = {"Authorization": f"Bearer {keys.token(Role.AGENT, agent_id=agents[0])}"}
        open_page = {"limit": 50, "status": "open"}
        print(f"HTTP, direct to the service, concurrency {CONCURRENCY}, {requests} requests:")
        pid = process.pid
        await measure(
            "GET /api/tickets?limit=50&status=open", pid, base, senior, open_page, requests
        )
        alerts = {**open_page, "topic_alerts": RARE_WORD}
        label = f"  + topic_alerts={RARE_WORD} (1% of tickets)"
        await measure(label, pid, base, senior, alerts, requests // 4)
        label = "  as an agent (own tickets only)"
        await measure(label, pid, base, agent, open_page, requests // 4)

        print("raw SQL (the same statement over asyncpg, one at a time):")
        principal = Principal(kind="agent", agent_id="bench", role=Role.SENIOR_AGENT)
        open_only = InboxQuery(status=TicketStatus.OPEN, limit=50)
        for label, query, runs in [
            ("status=open", open_only, 500),
            (f"  + topic alert {RARE_WORD} (1% of tickets)", alert(open_only, RARE_WORD), 500),
            ("  + topic alert refund (75% of tickets)", alert(open_only, "refund"), 10),
        ]:
            sql = await raw_sql(dsn, query, principal, runs)
            print(
                f"{label:<44} p50 {sql['p50']:6.2f} ms   p99 {sql['p99']:6.2f} ms   "
                f"(EXPLAIN ANALYZE: {sql['server']:.2f} ms, {runs} runs)"
            )
    finally:
        if process is not None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
        if keep:
            print(f"kept database {name}")
        else:
            await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(main(args.tickets, args.open, args.requests, args.keep))
