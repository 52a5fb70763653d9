"""Idempotent, at-least-once consumers on FastStream.

Each event is handled in one database transaction that also records `(consumer, event id)`;
an id already recorded is skipped. A message's offset is committed only after that
transaction: handled offsets are collected and committed every `commit_interval` seconds
(committing after every message capped a subscription near 100 messages/s), so a crash
redelivers at most the last interval's messages, which the event ids then skip. A handler
that keeps failing sends the message to `<topic>.dlq` with the error and the stream moves on;
a malformed message goes there at once. Outages (database, or Kafka for the dead letter) are
not the message's fault: they are retried until the dependency is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .db import is_database_outage
from .events import TOPICS, Event
from .observability import EVENTS_CONSUMED, correlation_id
from .settings import CommonSettings

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event[Any]], Awaitable[None]]

_RECORD = sa.text(
    "INSERT INTO processed_events (consumer, event_id) VALUES (:consumer, :event_id) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


def _is_outage(exc: BaseException) -> bool:
    """A database restarting ("not yet accepting connections") is an outage too, not the
    message's fault: retried until it is back, never dead-lettered."""
    return is_database_outage(exc)


async def _raw_body(message: Any) -> bytes:
    body: bytes = message.body
    return body


class EventConsumer:
    """Registers idempotent handlers for one consumer group on a FastStream broker."""

    def __init__(
        self,
        broker: KafkaBroker,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: CommonSettings,
        *,
        group_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.group_id = group_id or settings.service_name
        self.commit_interval = 0.1
        self._handled: dict[tuple[Any, TopicPartition], int] = {}

    def handle(self, topic: str) -> Callable[[Handler], Handler]:
        """Decorator registering `async def on_x(session, event)` for `topic`."""

        def register(handler: Handler) -> Handler:
            self.subscribe(topic, handler)
            return handler

        return register

    def subscribe(self, topic: str, handler: Handler) -> None:
        spec = TOPICS[topic]
        consumer_name = f"{self.group_id}:{handler.__name__}"
        kafka_topic = self.settings.topic(topic)

        @self.broker.subscriber(
            kafka_topic,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=self.settings.kafka_auto_offset_reset,
            decoder=_raw_body,
            title=f"{self.group_id}:{topic}",
            description=f"{handler.__name__}: {handler.__doc__ or ''}".strip(),
        )
        async def consume(body: bytes, message: KafkaMessage) -> None:
            try:
                event = spec.envelope().model_validate_json(body)
            except ValidationError as exc:
                await self._dead_letter(kafka_topic, message, f"invalid event: {exc}", "invalid")
                EVENTS_CONSUMED.labels(topic, consumer_name, "invalid").inc()
                self._mark_handled(message)
                return
            token = correlation_id.set(event.correlationid)
            try:
                outcome = await self._apply(event, handler, consumer_name, kafka_topic, message)
            finally:
                correlation_id.reset(token)
            EVENTS_CONSUMED.labels(topic, consumer_name, outcome).inc()
            self._mark_handled(message)

    async def _apply(
        self,
        event: Event[Any],
        handler: Handler,
        consumer_name: str,
        kafka_topic: str,
        message: Any,
    ) -> str:
        attempt = 0
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    fresh = await session.scalar(
                        _RECORD, {"consumer": consumer_name, "event_id": event.id}
                    )
                    if fresh is None:
                        return "duplicate"
                    await handler(session, event)
                return "handled"
            except Exception as exc:
                attempt += 1
                if _is_outage(exc):
                    log.warning("%s: outage (%s); retrying %s", consumer_name, exc, event.id)
                    await asyncio.sleep(
                        min(5.0, self.settings.consumer_retry_backoff_seconds * 2**attempt)
                    )
                    continue
                if attempt > self.settings.consumer_max_retries:
                    log.exception("%s: giving up on %s", consumer_name, event.id)
                    await self._dead_letter(
                        kafka_topic, message, f"{type(exc).__name__}: {exc}", "failed"
                    )
                    return "dead_lettered"
                await asyncio.sleep(
                    self.settings.consumer_retry_backoff_seconds * 2 ** (attempt - 1)
                )

    def _mark_handled(self, message: Any) -> None:
        raw = message.raw_message
        self._handled[(message.consumer, TopicPartition(raw.topic, raw.partition))] = raw.offset + 1

    async def commit_handled(self) -> None:
        """Commit the offsets after every handled message (a revoked partition's are dropped:
        its new owner re-reads them, and the event ids skip what was already applied)."""
        handled, self._handled = self._handled, {}
        by_consumer: dict[Any, dict[TopicPartition, int]] = {}
        for (consumer, partition), offset in handled.items():
            by_consumer.setdefault(consumer, {})[partition] = offset
        for consumer, offsets in by_consumer.items():
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                log.info("offsets not committed (%s); they will be re-read and skipped", exc)

    async def commit_loop(self) -> None:
        """Runs beside the subscribers (a Runtime background task)."""
        while True:
            await asyncio.sleep(self.commit_interval)
            await self.commit_handled()

    async def _dead_letter(self, kafka_topic: str, message: Any, error: str, reason: str) -> None:
        """Publish to `<topic>.dlq`, retrying while Kafka is unreachable: the message must not be
        skipped before it is stored somewhere."""
        raw = message.raw_message
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (raw.headers or [])}
        headers.update(
            {
                "x-error": error[:2000],
                "x-error-reason": reason,
                "x-consumer-group": self.group_id,
                "x-original-topic": kafka_topic,
                "x-original-partition": str(raw.partition),
                "x-original-offset": str(raw.offset),
            }
        )
        await self.broker.publish(raw.value, f"{kafka_topic}.dlq", key=raw.key, headers=headers)
