"""tests/e2e/containers.py against a real Docker API: the three servers start and answer."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from quimbi_common.testing import unique

ROOT = Path(__file__).resolve().parents[2]


def load_containers_module() -> ModuleType:
    path = ROOT / "tests" / "e2e" / "containers.py"
    spec = importlib.util.spec_from_file_location("e2e_containers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


containers = load_containers_module()
pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def infra():  # type: ignore[no-untyped-def]
    reason = containers.docker_api_unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    with containers.infrastructure_from_containers() as found:
        print(f"containers ready in {time.monotonic() - started:.1f}s")
        yield found


async def test_postgres_container_accepts_the_documented_dsn_and_creates_databases(infra) -> None:
    # given the PostgreSQL container's DSN
    # when a client connects and creates a database, as the e2e launcher does
    name = unique("db_")
    conn = await asyncpg.connect(infra.postgres_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        await conn.execute(f'CREATE DATABASE "{name}"')
        created = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
        await conn.execute(f'DROP DATABASE "{name}"')
    finally:
        await conn.close()
    # then it is PostgreSQL 16 and the database existed
    assert version.startswith("16.")
    assert created == 1


def test_redis_container_answers_and_keeps_values(infra) -> None:
    # given the Redis container's URL
    client = redis.Redis.from_url(infra.redis_url)
    key = unique("k")
    try:
        # when a value is written
        client.set(key, "v", ex=60)
        # then it is read back
        assert client.get(key) == b"v"
        assert client.info("server")["redis_version"].startswith("7.")
    finally:
        client.close()


async def test_kafka_container_advertises_its_host_port_for_produce_and_consume(infra) -> None:
    # given the Kafka container's bootstrap address on the host
    topic = unique("containers.")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=unique("g"),
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    try:
        # when a message is produced (topics are created on first use)
        await producer.send_and_wait(topic, b"hello")
        # then a consumer in a group reads it through the advertised listener
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert message.value == b"hello"
    finally:
        await consumer.stop()
        await producer.stop()
