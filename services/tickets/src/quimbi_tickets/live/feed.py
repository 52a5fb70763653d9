"""Kafka → the live log: a consumer group of its own (`<group>-live`) turns the events the live
inbox shows into entries of one Redis Stream, each naming who may see it.

Why a group of its own and not the tickets consumer: that one applies events in a database
transaction and does not read the topics tickets itself publishes; this one only reads, looks
up assignees and appends. Replicas split the partitions between them, so each event is
appended once (at least once: a crash before the offset commit appends it again; items carry
the event id). Why a Redis Stream: its ids are assigned in append order, so a reader that
resumes after id X gets everything after X and nothing twice, and `MINID` trims it by age.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from quimbi_common.consumer import EventConsumer
from quimbi_common.db import is_database_outage

from ..settings import Settings
from .items import LIVE_TOPICS, NEEDS_ASSIGNEE, Item, item_for, with_assignee

log = logging.getLogger(__name__)

_ASSIGNEES = "SELECT id, assigned_agent_id FROM tickets WHERE id = ANY($1::text[])"


def _age_seconds(event: dict[str, object], now: float) -> float:
    try:
        return now - datetime.fromisoformat(str(event.get("time"))).timestamp()
    except ValueError:
        return 0.0


class LiveFeed(EventConsumer):
    """Appends what the live inbox shows to the live log (a background task of the service).

    A group member like the service's own consumer (`quimbi_common.consumer`: joining, a
    client whose fetch task died replaced, offsets committed after the batch and kept pending
    when a commit fails, the lag gauge), whose batch is appended to Redis instead of applied
    in a transaction."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        broker: KafkaBroker,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        super().__init__(broker, sessionmaker, settings, group_id=f"{settings.consumer_group}-live")
        self.settings: Settings = settings
        self.engine = engine
        self.redis = redis
        self.key = live_log_key(settings)
        self._topics = {settings.topic(name): name for name in LIVE_TOPICS}
        # The topics read; no per-event handlers: `handle_batch` takes the whole batch.
        self.subscriptions = {topic: [] for topic in self._topics}

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Returns once the batch is appended, so its offsets may be committed."""
        await self._append_until_done(records)

    async def _append_until_done(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Offsets are committed only after the append: outages are waited out, not skipped."""
        backoff = self.settings.backoff()
        while True:
            try:
                await self.append(records)
                return
            except RedisError as exc:
                log.warning("live feed: Redis unavailable (%s); retrying", exc)
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("live feed: database unavailable (%s); retrying", exc)
            await backoff.sleep()

    async def append(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> int:
        """Append the records' items (one pipeline); returns how many were appended."""
        now = time.time()
        retention = self.settings.live_retention_seconds
        items: list[Item] = []
        for record in records:
            topic = self._topics.get(record.topic)
            try:
                event = json.loads(record.value) if topic and record.value else None
            except ValueError:
                event = None
            if not isinstance(event, dict) or topic is None:
                continue
            if _age_seconds(event, now) > retention:  # a new group reading history: not live
                continue
            item = item_for(topic, event)
            if item is not None:
                items.append(item)
        if not items:
            return 0
        items = await self._with_assignees(items)
        min_id = f"{int((now - retention) * 1000)}-0"
        async with self.redis.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.xadd(self.key, item.fields(), minid=min_id, approximate=True)  # type: ignore[arg-type]
            await pipe.execute()
        return len(items)

    async def _with_assignees(self, items: list[Item]) -> list[Item]:
        """Messages, scores and SLA alerts do not name the assignee: the ticket row does (the
        tickets service keeps it from `ticket.assigned`). A ticket unknown here (deleted) is
        shown only to those who see every ticket."""
        ids = sorted({i.ticket_id for i in items if i.topic in NEEDS_ASSIGNEE})
        if not ids:
            return items
        # On the pooled connection's driver, as the inbox query runs: one statement needs no
        # transaction (SQLAlchemy's begin took ~6 % of the process's busy time in a profile).
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            try:
                rows = await driver.fetch(_ASSIGNEES, ids)
            except BaseException as exc:
                if is_database_outage(exc):  # SQLAlchemy did not see it: keep it out of the pool
                    await conn.invalidate(exc if isinstance(exc, Exception) else None)
                raise
        assignees = {row["id"]: row["assigned_agent_id"] for row in rows}
        return [
            with_assignee(i, assignees.get(i.ticket_id)) if i.topic in NEEDS_ASSIGNEE else i
            for i in items
        ]


def live_log_key(settings: Settings) -> str:
    """The Redis Stream (the topic prefix isolates test runs sharing a Redis, as for Kafka)."""
    return settings.topic("live:tickets")
