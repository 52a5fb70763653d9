"""Scoring: how fast a ticket's score follows the event that changed it.

Needs the local infrastructure (`make infra`). Starts its own processes on free ports, each
with a scratch database, a private Kafka topic prefix and consumer group, and stops them at
the end (nothing else running is touched):

1. event -> ticket.scored on Kafka: `python -m quimbi_scoring`; the script produces N
   synthetic ticket.created events at R/s (aiokafka, keyed as tickets keys them) and times
   each until its ticket.scored arrives (from just before the produce call).
2. ticket created -> score visible in the tickets list: `python -m quimbi_tickets` as well;
   the script creates N tickets at R/s with POST /api/tickets (integration key) and times each
   from the 201 until its score is committed in the tickets database that GET /api/tickets
   reads (polled every 5 ms; polling the API at that rate for every ticket would swamp the
   machine), and also until ticket.scored reaches Kafka. A final GET /api/tickets checks the
   list shows the scores.

`--replicas N` / `--tickets-replicas N` run N scoring / tickets processes, each service in
one consumer group (topics have 3 partitions; POSTs go round-robin).

    uv run python bench/scoring_latency.py [--tickets 1000] [--rate 100] [--replicas 1]
                                           [--tickets-replicas 1] [--skip-tickets]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _shared import free_port, percentile
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from quimbi_common.db import asyncpg_dsn
from quimbi_common.enums import Channel, TicketPriority, TicketStatus
from quimbi_common.events import CustomerSnapshot, TicketData, build_event
from quimbi_common.kafka import ensure_topics
from quimbi_common.settings import DEV_API_KEY, CommonSettings
from quimbi_common.testing import KAFKA, SigningKeys, migrated_database, unique

ROOT = Path(__file__).resolve().parents[1]


def summary(label: str, seconds: list[float], expected: int) -> str:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return f"  {label}: nothing measured"
    return (
        f"  {label}: p50 {percentile(ms, 50):.0f} ms  p99 {percentile(ms, 99):.0f} ms  "
        f"max {max(ms):.0f} ms  mean {statistics.mean(ms):.0f} ms  ({len(ms)}/{expected})"
    )


@contextlib.asynccontextmanager
async def service(module: str, env: dict[str, str], port: int) -> AsyncIterator[str]:
    """Run `python -m <module>` until the block ends; yields its base URL once it is ready."""
    log = tempfile.NamedTemporaryFile(prefix=f"{module}-", suffix=".log", delete=False)  # noqa: SIM115
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env={**os.environ, **env, "PORT": str(port), "LOG_LEVEL": "WARNING"},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            deadline = time.monotonic() + 90
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{module} exited; see {log.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/health/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{module} not ready after 90 s; see {log.name}")
                await asyncio.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
        log.close()


@contextlib.asynccontextmanager
async def replicas(module: str, env: dict[str, str], count: int) -> AsyncIterator[list[str]]:
    """`count` processes of one service sharing its database and consumer group."""
    async with contextlib.AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(service(module, env, free_port())) for _ in range(count)
        ]
        yield urls


async def settled(*groups: str, quiet: float = 3.0, timeout: float = 120.0) -> None:
    """Wait until the consumer groups have been Stable for `quiet` seconds: every subscription
    is a member, and a member joining late would pause them all for a rebalance."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    while time.monotonic() < deadline:
        try:
            states = [await group_state(group) for group in groups]
        except KafkaError:
            states = []
        if states and all(state == "Stable" for state in states):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= quiet:
                return
        else:
            stable_since = None
        await asyncio.sleep(0.5)


async def group_state(group: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        return str(response.groups[0][2])
    finally:
        await admin.close()


class ScoredWatcher:
    """Records when each ticket's first ticket.scored arrives on Kafka."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.seen: dict[str, float] = {}
        self.seen_wall: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest"
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ScoredWatcher:
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        async for record in self._consumer:
            data = json.loads(record.value or b"{}").get("data", {})
            ticket_id = data.get("ticket_id", "")
            self.seen.setdefault(ticket_id, time.perf_counter())
            self.seen_wall.setdefault(ticket_id, time.time())

    async def wait_for(self, ticket_ids: list[str], timeout: float) -> None:
        await until(lambda: all(t in self.seen for t in ticket_ids), timeout)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll state another task updates, until it holds or the time is up."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def paced(count: int, rate: float, start: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Start `start(i)` for i in range(count) at `rate` per second, then wait for all."""
    began = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(start(i)))
    await asyncio.gather(*tasks)


def synthetic_ticket(ticket_id: str) -> TicketData:
    now = datetime.now(UTC)
    customer = f"cust-{ticket_id}"
    return TicketData(
        id=ticket_id,
        customer_id=customer,
        subject="Bench ticket",
        status=TicketStatus.OPEN,
        priority=TicketPriority.HIGH,
        channel=Channel.EMAIL,
        created_at=now,
        updated_at=now,
        version=1,
        customer=CustomerSnapshot(
            id=customer, email=f"{customer}@example.com", lifetime_value=300.0, churn_risk=0.2
        ),
    )


async def kafka_figure(
    prefix: str, scoring_env: dict[str, str], count: int, rate: float, copies: int
) -> None:
    async with (
        replicas("quimbi_scoring", scoring_env, copies),
        ScoredWatcher(f"{prefix}ticket.scored") as watcher,
    ):
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=0, acks="all")
        await producer.start()
        sent: dict[str, float] = {}
        sent_wall: dict[str, float] = {}

        async def produce(ticket_id: str) -> None:
            key, event = build_event("ticket.created", synthetic_ticket(ticket_id), source="bench")
            sent[ticket_id] = time.perf_counter()
            sent_wall[ticket_id] = time.time()
            await producer.send(
                f"{prefix}ticket.created", value=event.model_dump_json().encode(), key=key.encode()
            )

        try:
            warm = [unique("warm-") for _ in range(20)]
            for ticket_id in warm:
                await produce(ticket_id)
            await watcher.wait_for(warm, timeout=120)
            await settled(scoring_env["KAFKA_CONSUMER_GROUP"])
            ids = [unique("bench-") for _ in range(count)]
            await paced(count, rate, lambda i: produce(ids[i]))
            await watcher.wait_for(ids, timeout=60)
        finally:
            await producer.stop()
        latencies = [watcher.seen[t] - sent[t] for t in ids if t in watcher.seen]
        print(
            f"1. event -> ticket.scored on Kafka, {count} tickets at {rate:.0f}/s, "
            f"{copies} scoring process(es):"
        )
        print(summary("ticket.created produced -> ticket.scored received", latencies, count))
        await print_stages(scoring_env["DATABASE_URL"], ids, sent_wall, watcher.seen_wall)


async def print_stages(
    database_url: str, ids: list[str], sent: dict[str, float], received: dict[str, float]
) -> None:
    """Where the time went, from the scoring database's own timestamps (same machine clock):
    the handler's transaction start, and when the relay marked its ticket.scored sent."""
    database = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await database.fetch(
            "SELECT key, extract(epoch FROM created_at) AS handled,"
            " extract(epoch FROM published_at) AS published FROM outbox"
            " WHERE topic = 'ticket.scored' AND key = ANY($1::text[])",
            ids,
        )
    finally:
        await database.close()
    stages: dict[str, list[float]] = {"queue": [], "handle+relay": [], "delivery": []}
    for row in rows:
        ticket, handled, published = row["key"], float(row["handled"]), row["published"]
        if published is None or ticket not in received:
            continue
        stages["queue"].append(handled - sent[ticket])
        stages["handle+relay"].append(float(published) - handled)
        stages["delivery"].append(received[ticket] - float(published))
    labels = {
        "queue": "produced -> handler transaction starts",
        "handle+relay": "handler starts -> relay has it acknowledged by Kafka",
        "delivery": "acknowledged -> received by a consumer",
    }
    for name, values in stages.items():
        print(summary(labels[name], values, len(ids)))


async def tickets_figure(
    prefix: str,
    scoring_env: dict[str, str],
    tickets_url: str,
    count: int,
    rate: float,
    copies: int,
    tickets_copies: int,
) -> None:
    keys = SigningKeys()
    tickets_env = {
        "DATABASE_URL": tickets_url,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_CONSUMER_GROUP": unique("tickets-bench-"),
        "JWKS_JSON": keys.jwks_json,
        "JWT_ISSUER": "quimbi-support",
        "JWT_AUDIENCE": "quimbi-support-api",
    }
    async with (
        replicas("quimbi_scoring", scoring_env, copies),
        replicas("quimbi_tickets", tickets_env, tickets_copies) as bases,
        ScoredWatcher(f"{prefix}ticket.scored") as watcher,
        httpx.AsyncClient(timeout=30.0) as client,
    ):
        database = await asyncpg.connect(asyncpg_dsn(tickets_url))
        created: dict[str, tuple[float, float]] = {}
        visible: dict[str, float] = {}
        pending: set[str] = set()

        async def create(i: int) -> None:
            started = time.perf_counter()
            response = await client.post(
                f"{bases[i % len(bases)]}/api/tickets",
                headers={"X-API-Key": DEV_API_KEY},
                json={
                    "customer": {"email": f"bench-{prefix}{i}@example.com", "name": "Bench"},
                    "subject": f"Bench ticket {i}",
                    "priority": "high",
                    "channel": "email",
                },
            )
            answered = time.perf_counter()
            response.raise_for_status()
            ticket_id = response.json()["id"]
            created[ticket_id] = (started, answered)
            pending.add(ticket_id)

        async def poll() -> None:
            while True:
                if pending:
                    rows = await database.fetch(
                        "SELECT id FROM tickets WHERE id = ANY($1::text[]) AND score_version > 0",
                        list(pending),
                    )
                    now = time.perf_counter()
                    for row in rows:
                        visible[row["id"]] = now
                        pending.discard(row["id"])
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        try:
            await paced(20, 10, create)  # warm-up: both services connected and consuming
            await until(lambda: not pending, 120)
            await settled(scoring_env["KAFKA_CONSUMER_GROUP"], tickets_env["KAFKA_CONSUMER_GROUP"])
            created.clear()
            visible.clear()
            await paced(count, rate, create)
            await until(lambda: not pending, 60)
            listing = await client.get(
                f"{bases[0]}/api/tickets", params={"limit": 100}, headers=keys.headers("admin")
            )
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await database.close()
        ids = list(created)
        to_visible = [visible[t] - created[t][1] for t in ids if t in visible]
        from_request = [visible[t] - created[t][0] for t in ids if t in visible]
        to_kafka = [watcher.seen[t] - created[t][1] for t in ids if t in watcher.seen]
        posts = [created[t][1] - created[t][0] for t in ids]
        print(
            f"2. ticket created -> score visible in the tickets list, {count} at {rate:.0f}/s, "
            f"{copies} scoring and {tickets_copies} tickets process(es):"
        )
        print(summary("POST /api/tickets answered (201) -> score visible", to_visible, count))
        print(summary("POST /api/tickets sent -> score visible", from_request, count))
        print(summary("POST /api/tickets answered -> ticket.scored on Kafka", to_kafka, count))
        print(summary("POST /api/tickets itself", posts, count))
        scored = [t for t in listing.json().get("tickets", []) if t["smart_score"] > 0]
        print(f"  GET /api/tickets: {len(scored)} of the first 100 listed carry a score > 0")
        await print_pipeline(tickets_url, scoring_env["DATABASE_URL"], ids)


async def print_pipeline(tickets_url: str, scoring_url: str, ids: list[str]) -> None:
    """Where the time went, from both databases' timestamps (one machine, one clock)."""
    tickets = await asyncpg.connect(asyncpg_dsn(tickets_url))
    scoring = await asyncpg.connect(asyncpg_dsn(scoring_url))
    try:
        created = {
            r["key"]: (r["committed"], r["published"])
            for r in await tickets.fetch(
                "SELECT key, created_at AS committed, published_at AS published FROM outbox"
                " WHERE topic = 'ticket.created' AND key = ANY($1::text[])",
                ids,
            )
        }
        scored = {
            r["key"]: (r["handled"], r["published"], r["event_id"])
            for r in await scoring.fetch(
                "SELECT key, created_at AS handled, published_at AS published, event_id"
                " FROM outbox WHERE topic = 'ticket.scored' AND key = ANY($1::text[])",
                ids,
            )
        }
        applied = {
            r["event_id"]: r["processed_at"]
            for r in await tickets.fetch(
                "SELECT event_id, processed_at FROM processed_events"
                " WHERE event_id = ANY($1::uuid[])",
                [v[2] for v in scored.values()],
            )
        }
    finally:
        await tickets.close()
        await scoring.close()
    stages: dict[str, list[float]] = {k: [] for k in ("relay", "scoring", "queue")}
    for ticket in ids:
        if ticket not in created or ticket not in scored:
            continue
        committed, published = created[ticket]
        _, scored_at, event_id = scored[ticket]
        if published is None or scored_at is None or event_id not in applied:
            continue
        stages["relay"].append((published - committed).total_seconds())
        stages["scoring"].append((scored_at - published).total_seconds())
        stages["queue"].append((applied[event_id] - scored_at).total_seconds())
    labels = {
        "relay": "tickets: POST transaction -> ticket.created acknowledged by Kafka",
        "scoring": "scoring: ticket.created acknowledged -> ticket.scored acknowledged",
        "queue": "tickets: ticket.scored acknowledged -> its handler starts",
    }
    for name, values in stages.items():
        print(summary(labels[name], values, len(ids)))


async def main(
    count: int, rate: float, skip_tickets: bool, copies: int, tickets_copies: int
) -> None:
    prefix = f"{unique('bench')}."
    await ensure_topics(CommonSettings(kafka_topic_prefix=prefix, kafka_bootstrap_servers=KAFKA))
    scoring_migrations = ROOT / "services" / "scoring" / "migrations"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    async with migrated_database(scoring_migrations, "bench_scoring") as scoring_url:
        env = {
            "DATABASE_URL": scoring_url,
            "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_CONSUMER_GROUP": unique("scoring-bench-"),
        }
        await kafka_figure(prefix, env, count, rate, copies)
    tickets_migrations = ROOT / "services" / "tickets" / "migrations"
    if skip_tickets or not tickets_migrations.exists():
        print("2. skipped: the tickets service is not available")
        return
    second = f"{unique('bench')}."
    await ensure_topics(CommonSettings(kafka_topic_prefix=second, kafka_bootstrap_servers=KAFKA))
    async with (
        migrated_database(scoring_migrations, "bench_scoring") as scoring_url,
        migrated_database(tickets_migrations, "bench_tickets") as tickets_url,
    ):
        env = {
            "DATABASE_URL": scoring_url,
            "KAFKA_TOPIC_PREFIX": second,
            "KAFKA_CONSUMER_GROUP": unique("scoring-bench-"),
        }
        await tickets_figure(second, env, tickets_url, count, rate, copies, tickets_copies)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--skip-tickets", action="store_true")
    parser.add_argument("--replicas", type=int, default=1, help="scoring processes")
    parser.add_argument("--tickets-replicas", type=int, default=1, help="tickets processes")
    args = parser.parse_args()
    asyncio.run(
        main(args.tickets, args.rate, args.skip_tickets, args.replicas, args.tickets_replicas)
    )
