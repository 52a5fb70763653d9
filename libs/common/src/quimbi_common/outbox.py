"""Transactional outbox: an event is stored with the change that caused it, and a relay
publishes committed events to Kafka (idempotent producer, acks=all, keyed) after the commit.

The relay wakes on a PostgreSQL NOTIFY sent by the committing transaction, and when its
LISTEN connection closes (so a NOTIFY lost with it is made up for at once); it polls only as a
slow fallback (`outbox_poll_interval_seconds`, for a connection that hangs without closing).
Idle, it costs nothing: no poll a second, and no backlog query while it knows the outbox is
empty. Several replicas are safe: a transaction-scoped advisory lock lets one relay
publish at a time, which also keeps per-key order across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from . import consistency, tracing
from .db import asyncpg_dsn
from .events import PRODUCER_ONLY_HEADER, TOPICS, Contract, EventType, build_event, for_others
from .kafka import create_producer
from .observability import (
    EVENTS_PUBLISHED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_SECONDS,
    correlation_id,
)
from .settings import CommonSettings

log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "quimbi_outbox"
_RELAY_LOCK_ID = 0x0B0B0_0001


def infrastructure_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """The outbox and processed-events tables, declared on a service's own metadata."""
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("headers", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
        sa.Index("ix_outbox_published_at", "published_at"),
    )
    processed = sa.Table(
        "processed_events",
        metadata,
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    return outbox, processed


_INSERT_MANY = sa.text(
    "WITH inserted AS (INSERT INTO outbox (event_id, topic, key, payload, headers) "
    "SELECT event_id, topic, key, payload, headers FROM unnest("
    "CAST(:event_ids AS uuid[]), CAST(:topics AS text[]), CAST(:keys AS text[]), "
    "CAST(:payloads AS jsonb[]), CAST(:headers AS jsonb[])) "
    "WITH ORDINALITY AS e(event_id, topic, key, payload, headers, n) ORDER BY n RETURNING 1) "
    "SELECT pg_notify(:channel, '') FROM (SELECT count(*) FROM inserted) AS done"
)


async def add_events(
    session: AsyncSession, events: Sequence[tuple[EventType, Contract]], *, source: str
) -> list[str]:
    """Store events in the caller's transaction, in order, with one statement (insert and
    NOTIFY); they are published only if that transaction commits. Returns the event ids."""
    if not events:
        return []
    columns: dict[str, list[str]] = {
        "event_ids": [],
        "topics": [],
        "keys": [],
        "payloads": [],
        "headers": [],
    }
    current = tracing.current_carrier()  # {} when tracing is off
    correlation = correlation_id.get()
    applied_elsewhere: list[tuple[str, str]] = []  # what a consistency token names
    for topic, data in events:
        key = TOPICS[topic].key(data)
        trace = tracing.carrier_for(key, current)  # the cause's, in a set-based handler
        _, event = build_event(
            topic,
            data,
            source=source,
            correlation_id=correlation,
            traceparent=trace.get(tracing.TRACEPARENT),
        )
        columns["event_ids"].append(str(event.id))
        columns["topics"].append(topic)
        columns["keys"].append(key)
        columns["payloads"].append(event.model_dump_json())
        headers = {"correlation_id": correlation or "", **trace}
        if for_others(topic, data):
            applied_elsewhere.append((topic, str(event.id)))
        else:  # consumers drop it unread, and no service ever records it as applied
            headers[PRODUCER_ONLY_HEADER] = "1"
        columns["headers"].append(json.dumps(headers))
    await session.execute(_INSERT_MANY, {**columns, "channel": NOTIFY_CHANNEL})
    consistency.note_written(
        session, [t for t, _ in applied_elsewhere], [e for _, e in applied_elsewhere]
    )
    return columns["event_ids"]


class OutboxRelay:
    """Publishes committed outbox rows in id order; marks them sent after Kafka acknowledges."""

    def __init__(self, engine: AsyncEngine, settings: CommonSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        # the last pass held the lock and found nothing, and no NOTIFY came since: the backlog
        # is 0 without asking PostgreSQL
        self._drained = False
        self._prune_after = 0.0  # monotonic: the next pass deletes old published rows

    async def run(self) -> None:
        """Run until cancelled, surviving Kafka or database outages."""
        backoff = self.settings.backoff()
        failing = False
        measuring = asyncio.create_task(self._measure_every_interval())
        try:
            while True:
                try:
                    await self._ensure_connections()
                    published = await self.publish_batch()
                    backoff.reset()
                    if failing:
                        log.info("outbox relay: publishing again")
                        failing = False
                    if published < self.settings.outbox_batch_size:
                        await self._sleep(self.settings.outbox_poll_interval_seconds)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any outage: keep the rows, back off, retry
                    # said once per outage: it retries every few seconds until it is over
                    log.log(
                        logging.DEBUG if failing else logging.WARNING,
                        "outbox relay: %s: %s; retrying until it is back",
                        type(exc).__name__,
                        exc,
                    )
                    failing = True
                    await self._reset_producer()
                    await backoff.sleep()
        finally:
            measuring.cancel()
            await self._reset_producer()
            await self._close_listener()

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows it sent."""
        assert self._producer is not None
        async with self.engine.begin() as conn:
            locked = await conn.scalar(
                sa.text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": _RELAY_LOCK_ID}
            )
            if not locked:
                return 0
            self._drained = False
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT id, topic, key, payload::text AS payload, headers FROM outbox "
                        "WHERE published_at IS NULL ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": self.settings.outbox_batch_size},
                )
            ).all()
            if not rows:
                self._drained = not self._wake.is_set()
                return 0
            started = time.perf_counter()
            pending = [await self._send(row) for row in rows]
            await asyncio.gather(*pending)
            OUTBOX_PUBLISH_SECONDS.observe(time.perf_counter() - started)
            await self._mark_published(conn, [row.id for row in rows])
            for row in rows:
                EVENTS_PUBLISHED.labels(row.topic).inc()
            await self._prune(conn)
            return len(rows)

    async def _send(self, row: Any) -> asyncio.Future[Any]:
        """Hand one row to the producer (in a PRODUCER span child of the writer's context,
        when tracing is on); returns the future of its acknowledgement."""
        assert self._producer is not None
        stored = json.loads(row.headers) if isinstance(row.headers, str) else row.headers
        with tracing.producer_span(row.topic, stored) as trace:
            future: asyncio.Future[Any] = await self._producer.send(
                self.settings.topic(row.topic),
                value=row.payload.encode(),
                key=row.key.encode(),
                headers=_kafka_headers(row.topic, stored, trace),
            )
        return future

    async def measure_backlog(self) -> None:
        """Set the backlog gauges: unsent rows and the age of the oldest (one indexed query,
        none while the relay knows the outbox is empty)."""
        if self._drained:
            OUTBOX_BACKLOG.labels(self.settings.service_name).set(0)
            OUTBOX_OLDEST_AGE.labels(self.settings.service_name).set(0.0)
            return
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) AS n, "
                        "coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age "
                        "FROM outbox WHERE published_at IS NULL"
                    )
                )
            ).one()
        OUTBOX_BACKLOG.labels(self.settings.service_name).set(row.n)
        OUTBOX_OLDEST_AGE.labels(self.settings.service_name).set(float(row.age))

    async def _measure_every_interval(self) -> None:
        """Every `outbox_metrics_interval_seconds`, beside the publishing loop: a send
        waiting on an unreachable Kafka (up to its delivery timeout) must not freeze the
        backlog and age at their last figures, exactly while they grow."""
        while True:
            try:
                await self.measure_backlog()
            except Exception as exc:  # the database away: the relay's own loop reports it
                log.debug("outbox backlog not measured: %s", exc)
            await asyncio.sleep(self.settings.outbox_metrics_interval_seconds)

    async def _mark_published(self, conn: Any, ids: list[int]) -> None:
        await conn.execute(
            sa.text("UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)"), {"ids": ids}
        )

    async def _prune(self, conn: Any) -> None:
        """Delete rows published over `outbox_retention_hours` ago, at most once every
        `outbox_prune_interval_seconds` (not in every pass: one round trip less per batch)."""
        if time.monotonic() < self._prune_after:
            return
        self._prune_after = time.monotonic() + self.settings.outbox_prune_interval_seconds
        await conn.execute(
            sa.text("DELETE FROM outbox WHERE published_at < now() - make_interval(hours => :h)"),
            {"h": self.settings.outbox_retention_hours},
        )

    async def _sleep(self, seconds: float) -> None:
        """Until a NOTIFY or the poll interval. `asyncio.timeout`, not `wait_for`: on 3.11 the
        latter can turn a cancellation into a TimeoutError, and the relay would never stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def _ensure_connections(self) -> None:
        if self._producer is None:
            producer = create_producer(self.settings)
            try:
                await producer.start()
            except Exception:
                await producer.stop()
                raise
            self._producer = producer
        if self._listener is None or self._listener.is_closed():
            self._listener = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
            self._listener.add_termination_listener(self._on_notify)  # look again, reconnect
            await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, *_: object) -> None:
        self._drained = False
        self._wake.set()

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None


def _kafka_headers(
    topic: str, values: dict[str, str], trace: dict[str, str]
) -> list[tuple[str, bytes]]:
    """CloudEvents binding headers, the correlation id, and the publish span's `traceparent`
    (or, when this relay does not trace, the writer's as stored)."""
    result = [
        ("content-type", b"application/cloudevents+json"),
        ("ce_type", topic.encode()),
    ]
    if values.get("correlation_id"):
        result.append(("correlation_id", values["correlation_id"].encode()))
    if values.get(PRODUCER_ONLY_HEADER):
        result.append((PRODUCER_ONLY_HEADER, b"1"))
    for name in (tracing.TRACEPARENT, tracing.TRACESTATE):
        value = trace.get(name) or values.get(name)
        if value:
            result.append((name, value.encode()))
    return result
