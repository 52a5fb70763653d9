"""Outbox latency: commit → event visible on the topic, p50/p99 over 1000 events.

Needs the local infrastructure (`make infra`). Creates a scratch database and topic prefix,
runs the real `OutboxRelay`, commits events one at a time at a steady rate, and reads them back
with a consumer; latency is measured from just after COMMIT returns to the consumer's receipt.

    uv run python bench/outbox_latency.py [--events 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from _shared import percentile
from aiokafka import AIOKafkaConsumer

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import EventType, TicketDeletedData
from quimbi_common.kafka import ensure_topics
from quimbi_common.outbox import OutboxRelay, add_events, infrastructure_tables
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import KAFKA, create_database, drop_database, unique


async def main(events: int, rate: float) -> None:
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
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest")
    await consumer.start()
    relay = OutboxRelay(engine, settings)
    relay_task = asyncio.create_task(relay.run())
    done = asyncio.Event()

    async def read() -> None:
        async for record in consumer:
            key = (record.key or b"").decode()
            if key in committed:
                latencies.append(time.perf_counter() - committed[key])
                if len(latencies) == events:
                    done.set()
                    return

    reader = asyncio.create_task(read())
    await asyncio.sleep(1.0)  # let the relay and consumer connect
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
    print(f"outbox latency over {events} events at {rate:.0f}/s (commit -> visible on topic):")
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
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate))
