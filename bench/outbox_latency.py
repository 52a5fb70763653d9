"""Outbox latency: commit → event visible on the topic, p50/p99 over 1000 events.

Needs the local infrastructure (`make infra`). Creates a scratch database and topic prefix,
runs the real `OutboxRelay`, commits events one at a time at a steady rate, and reads them back
with a consumer; latency is measured from just after COMMIT returns to the consumer's receipt.
`--through event-consumer` reads them with the services' own `EventConsumer` instead (its
handler notes the receipt, inside the batch's transaction): commit → handled, relay and
consumer together; at a low `--rate` every event meets an idle consumer.

    uv run python bench/outbox_latency.py [--events 1000] [--rate 200]
                                          [--through aiokafka|event-consumer]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from _shared import percentile
from aiokafka import AIOKafkaConsumer

from quimbi_common.consumer import EventConsumer
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import Event, EventType, TicketDeletedData
from quimbi_common.kafka import create_broker, ensure_topics
from quimbi_common.outbox import OutboxRelay, add_events, infrastructure_tables
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import KAFKA, create_database, drop_database, unique
from quimbi_common.uow import UnitOfWork


async def main(events: int, rate: float, through: str) -> None:
    name = unique("bench_outbox_")
    url = await create_database(name)
    settings = CommonSettings(
        service_name="bench",
        database_url=url,
        kafka_bootstrap_servers=KAFKA,
        kafka_topic_prefix=f"{unique('bench')}.",
        kafka_topic_partitions=3,
    )
    engine = create_engine(settings)
    metadata = sa.MetaData()
    infrastructure_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    topic = settings.topic("ticket.deleted")
    await ensure_topics(settings, [topic])
    committed: dict[str, float] = {}
    latencies: list[float] = []
    relay = OutboxRelay(engine, settings)
    relay_task = asyncio.create_task(relay.run())
    done = asyncio.Event()

    def received(key: str) -> None:
        if key in committed:
            latencies.append(time.perf_counter() - committed[key])
            if len(latencies) == events:
                done.set()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest")

    async def read() -> None:
        await consumer.start()
        async for record in consumer:
            received((record.key or b"").decode())

    async def handle(unit: UnitOfWork, event: Event[Any]) -> None:
        received(event.data.id)

    if through == "event-consumer":
        events_in = EventConsumer(
            create_broker(settings),
            create_sessionmaker(engine),
            settings,
            group_id=settings.consumer_group,
        )
        events_in.subscribe(EventType.TICKET_DELETED, handle)
        reader = asyncio.create_task(events_in.run())
    else:
        reader = asyncio.create_task(read())
    await asyncio.sleep(5.0)  # let the relay and consumer connect (a group join)
    sessions = create_sessionmaker(engine)
    started = time.perf_counter()
    for i in range(events):
        ticket_id = f"bench-{i}"
        async with sessions() as session:
            data = TicketDeletedData(id=ticket_id, version=1, deleted_at=datetime.now(UTC))
            await add_events(session, [(EventType.TICKET_DELETED, data)], source="bench")
            await session.commit()
        committed[ticket_id] = time.perf_counter()
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
    await asyncio.wait_for(done.wait(), timeout=60)
    ms = [v * 1000 for v in latencies]
    seen = "handled by an EventConsumer" if through == "event-consumer" else "visible on topic"
    print(f"outbox latency over {events} events at {rate:.0f}/s (commit -> {seen}):")
    print(
        f"  p50 {percentile(ms, 50):.1f} ms  p99 {percentile(ms, 99):.1f} ms  "
        f"max {max(ms):.1f} ms  mean {statistics.mean(ms):.1f} ms"
    )
    for task in (relay_task, reader):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await consumer.stop()
    await engine.dispose()
    await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--through", choices=("aiokafka", "event-consumer"), default="aiokafka")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate, args.through))
