"""`python -m quimbi_sla serve` answers the API and never consumes nor publishes;
`python -m quimbi_sla consume` consumes, publishes the outbox and answers no API: two real
processes against real PostgreSQL, Redis and Kafka (the role split of issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from quimbi_common.enums import Role, TicketPriority, TicketStatus
from quimbi_common.events import CustomerSnapshot, EventType, TicketData, build_event
from quimbi_common.kafka import ensure_topics
from quimbi_common.testing import SigningKeys, eventually, migrated_database, unique
from quimbi_sla.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"

pytestmark = [pytest.mark.service, pytest.mark.timeout(600)]  # two processes start, under load


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _process(role: str, env: dict[str, str], log: Path) -> AsyncIterator[int]:
    """`python -m quimbi_sla <role>` until the block ends; yields its pid."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quimbi_sla",
            role,
            env={**os.environ, **env},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield process.pid
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout=20)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _members(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.consumer_group])
        [group] = response.to_object()["groups"]
        return len(group["members"])
    finally:
        await admin.close()


async def _ready(client: httpx.AsyncClient, url: str) -> None:
    async def check() -> None:
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{url}/health/ready")).status_code == 200:
                return
        raise AssertionError(f"{url} not ready")

    await eventually(check, timeout=180, interval=0.3)


async def test_serve_answers_the_api_only_and_consume_consumes_only(
    sla_settings: Settings, keys: SigningKeys, tmp_path: Path
) -> None:
    # given a database, topic prefix and consumer group of its own, the topics made up front
    async with migrated_database(MIGRATIONS, "sla_roles") as database_url:
        settings = sla_settings.model_copy(
            update={
                "service_name": unique("sla-roles-"),
                "kafka_topic_prefix": f"{unique('r')}.",
                "database_url": database_url,
            }
        )
        await ensure_topics(settings)
        await _run_both_roles(settings, keys, tmp_path)


async def _created(
    producer: AIOKafkaProducer, settings: Settings, ticket_id: str, owner: str
) -> None:
    """ticket.created as the tickets service would publish it."""
    now = datetime.now(UTC)
    key, event = build_event(
        EventType.TICKET_CREATED,
        TicketData(
            id=ticket_id,
            customer_id=f"cust-{ticket_id}",
            subject="Payment not processing",
            status=TicketStatus.OPEN,
            priority=TicketPriority.NORMAL,
            channel="email",
            assigned_agent_id=owner,
            created_at=now,
            updated_at=now,
            version=1,
            customer=CustomerSnapshot(id=f"cust-{ticket_id}", email="c@example.com"),
        ),
        source="tickets",
    )
    await producer.send_and_wait(
        settings.topic(EventType.TICKET_CREATED),
        value=event.model_dump_json().encode(),
        key=key.encode(),
    )


async def _run_both_roles(settings: Settings, keys: SigningKeys, tmp_path: Path) -> None:
    serve_port, consume_port = _free_port(), _free_port()
    env = {
        "SERVICE_NAME": settings.service_name,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "KAFKA_TOPIC_PARTITIONS": "1",
        "JWKS_JSON": keys.jwks_json,
        "PORT": str(serve_port),
        "CONSUME_PORT": str(consume_port),
        "LOG_LEVEL": "INFO",  # the logs stay in tmp_path for a failure's post-mortem
    }
    serve_url, consume_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{consume_port}"
    owner = unique("agent-")
    ticket_id = unique("tkt-")
    sla_path = f"/api/tickets/{ticket_id}/sla"
    agent = keys.headers(Role.AGENT, owner)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            _process("serve", env, tmp_path / "serve.log"),
        ):
            async with _process("consume", env, tmp_path / "consume.log"):
                await _ready(client, serve_url)
                await _ready(client, consume_url)
                # when a ticket is created (its event on Kafka)
                await _created(producer, settings, ticket_id, owner)

                # then the consume process applies it and the serve process shows it
                async def shown() -> None:
                    assert (
                        await client.get(serve_url + sla_path, headers=agent)
                    ).status_code == 200

                await eventually(shown, timeout=120, interval=0.2)
                # the group has one member: the consume process (serve joined no group)
                await eventually(lambda: _assert_members(settings, 1), timeout=90, interval=0.5)
                # the consume process answers health and metrics, no API and no docs
                assert (await client.get(consume_url + sla_path, headers=agent)).status_code == 404
                assert (await client.get(f"{consume_url}/docs")).status_code == 404
                assert (await client.get(f"{consume_url}/metrics")).status_code == 200
                assert (await client.get(f"{serve_url}/docs")).status_code == 200
                # a write through serve is published by the consume process's outbox relay
                paused = await client.post(f"{serve_url}{sla_path}/pause", headers=agent)
                assert paused.status_code == 200
                await eventually(
                    lambda: _assert_unpublished(settings, ticket_id, 0), timeout=90, interval=0.2
                )

            # when the consume process is gone, the serve process goes on answering
            await eventually(lambda: _assert_members(settings, 0), timeout=120, interval=0.5)
            resumed = await client.post(f"{serve_url}{sla_path}/resume", headers=agent)
            assert resumed.status_code == 200
            # then its write waits in the outbox: serve publishes nothing and joins no group
            for _ in range(6):
                await asyncio.sleep(0.5)
                await _assert_unpublished(settings, ticket_id, 1)
                await _assert_members(settings, 0)
    finally:
        await producer.stop()


async def _assert_members(settings: Settings, expected: int) -> None:
    assert await _members(settings) == expected


async def _assert_unpublished(settings: Settings, ticket_id: str, expected: int) -> None:
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE key = $1 AND published_at IS NULL", ticket_id
        )
    finally:
        await conn.close()
    assert count == expected
