"""The idempotent consumer against real PostgreSQL and Kafka."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.consumer import EventConsumer
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import Event, TicketDeletedData, build_event
from quimbi_common.kafka import create_broker, ensure_topics
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import EventProbe, eventually, unique

pytestmark = pytest.mark.service
TOPIC = "ticket.deleted"


async def _record(session: AsyncSession, event: Event[Any]) -> None:
    await session.execute(
        sa.text("INSERT INTO notes (id) VALUES (:id)"), {"id": f"{event.subject}:{uuid.uuid4()}"}
    )


async def _always_fails(session: AsyncSession, event: Event[Any]) -> None:
    if event.subject.startswith("poison"):
        raise ValueError("cannot process this ticket")
    await _record(session, event)


def _envelope(ticket_id: str) -> tuple[str, bytes]:
    data = TicketDeletedData(id=ticket_id, version=1, deleted_at=datetime.now(UTC))
    key, event = build_event(TOPIC, data, source="test")
    return key, event.model_dump_json().encode()


@contextlib.asynccontextmanager
async def _consuming(
    settings: CommonSettings, handler: Any, consumers: list[EventConsumer] | None = None
) -> AsyncIterator[sa.Engine]:
    await ensure_topics(settings)
    engine = create_engine(settings)
    broker = create_broker(settings)
    consumer = EventConsumer(broker, create_sessionmaker(engine), settings)
    consumer.subscribe(TOPIC, handler)
    if consumers is not None:
        consumers.append(consumer)
    await broker.start()
    try:
        yield engine
    finally:
        await broker.stop()
        await engine.dispose()


async def _send(settings: CommonSettings, *messages: tuple[str, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.topic(TOPIC), value=value, key=key.encode())
    finally:
        await producer.stop()


async def _notes(engine: Any, prefix: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT id FROM notes WHERE id LIKE :p"), {"p": f"{prefix}%"}
        )
        return [r.id for r in rows]


async def test_a_redelivered_event_is_applied_once(settings: CommonSettings) -> None:
    ticket = unique("dup-")
    key, body = _envelope(ticket)
    marker_key, marker = _envelope(unique("marker-"))
    async with _consuming(settings, _record) as engine:
        await _send(settings, (key, body), (key, body), (marker_key, marker))

        async def both_seen() -> None:
            assert await _notes(engine, marker_key)

        await eventually(both_seen)
        assert len(await _notes(engine, ticket)) == 1


async def test_a_failing_handler_dead_letters_and_later_messages_flow(
    settings: CommonSettings,
) -> None:
    poison_key, poison = _envelope(unique("poison-"))
    good_key, good = _envelope(unique("good-"))
    async with (
        EventProbe([f"{TOPIC}.dlq"], settings.kafka_topic_prefix) as probe,
        _consuming(settings, _always_fails) as engine,
    ):
        await _send(settings, (poison_key, poison), (good_key, good))
        [dead] = await probe.wait_for(f"{TOPIC}.dlq", lambda e: e.get("subject") == poison_key)

        async def good_applied() -> None:
            assert await _notes(engine, good_key)

        await eventually(good_applied)
    _, key, _, headers = next(r for r in probe.received if r[2].get("subject") == poison_key)
    assert key == poison_key
    assert b"cannot process this ticket" in headers["x-error"]
    assert headers["x-original-topic"] == settings.topic(TOPIC).encode()
    assert dead["data"]["id"] == poison_key


async def test_a_malformed_message_goes_to_the_dlq(settings: CommonSettings) -> None:
    good_key, good = _envelope(unique("after-junk-"))
    async with (
        EventProbe([f"{TOPIC}.dlq"], settings.kafka_topic_prefix) as probe,
        _consuming(settings, _record) as engine,
    ):
        await _send(settings, ("junk", b"{not json"), (good_key, good))
        await probe.wait_for(f"{TOPIC}.dlq")

        async def good_applied() -> None:
            assert await _notes(engine, good_key)

        await eventually(good_applied)
    _, key, body, headers = probe.received[0]
    assert key == "junk"
    assert headers["x-error-reason"] == b"invalid"
    assert body == {"_raw": "{not json"}


async def test_handled_offsets_are_committed_for_the_group(settings: CommonSettings) -> None:
    consumers: list[EventConsumer] = []
    messages = [_envelope(unique("commit-")) for _ in range(3)]
    async with _consuming(settings, _record, consumers) as engine:
        await _send(settings, *messages)

        async def all_applied() -> None:
            for key, _ in messages:
                assert await _notes(engine, key)

        await eventually(all_applied)
        await consumers[0].commit_handled()
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.service_name
    )
    await reader.start()
    try:
        partition = TopicPartition(settings.topic(TOPIC), 0)
        assert await reader.committed(partition) == 3
    finally:
        await reader.stop()
