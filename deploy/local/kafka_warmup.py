"""Wait until a freshly started broker coordinates consumer groups.

The first group join on a new broker creates `__consumer_offsets` and loads its coordinator,
which can take seconds; `infra.sh` runs this once after a start, so "ready" means groups work.
    python deploy/local/kafka_warmup.py 127.0.0.1:9092
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

TOPIC = "_quimbi_warmup"


async def warm_up(bootstrap: str, timeout: float = 60.0) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if TOPIC not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id=f"_quimbi_warmup_{uuid.uuid4().hex[:8]}"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(warm_up(sys.argv[1]))
