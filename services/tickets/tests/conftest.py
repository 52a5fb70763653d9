"""One tickets app per test session, on its own database and Kafka topic prefix.

Tests share the app but create their own customers, tickets and agent ids, so they can run in
any order; inbox tests filter by their own customer to see only their tickets.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from quimbi_common.db import asyncpg_dsn
from quimbi_common.enums import Role
from quimbi_common.events import Contract, build_event
from quimbi_common.kafka import ensure_topics
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    EventProbe,
    SigningKeys,
    eventually,
    migrated_database,
    running_app,
    unique,
)
from quimbi_tickets.main import build_app
from quimbi_tickets.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside the tests (s3server)
from s3server import BUCKET as S3_BUCKET
from s3server import s3_server

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
ATTACHMENT_MAX_BYTES = 2 * 1024 * 1024  # small, so the 413 test sends little
API_KEY = "tickets-test-integration-key"
OUTPUT_TOPICS = [
    "ticket.created",
    "ticket.updated",
    "ticket.deleted",
    "message.added",
    "message.updated",
    "message.deleted",
    "ticket.rated",
]


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database(MIGRATIONS, "tickets") as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server (gofakes3): the session's app stores attachments there."""
    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def settings(database_url: str, keys: SigningKeys, s3_endpoint: str) -> Settings:
    return Settings(
        attachments_storage="s3",
        attachments_s3_endpoint=s3_endpoint,
        attachments_s3_bucket=S3_BUCKET,
        attachments_s3_region="us-east-1",
        attachments_s3_access_key_id="test",
        attachments_s3_secret_access_key="test",
        attachments_max_bytes=ATTACHMENT_MAX_BYTES,
        attachments_sweep_interval_seconds=0.5,
        service_name=unique("tickets-test-"),  # its own consumer group on the shared broker
        environment="test",
        database_url=database_url,
        redis_url=REDIS_URL,
        kafka_bootstrap_servers=KAFKA,
        kafka_topic_prefix=f"{unique('t')}.",
        kafka_topic_partitions=1,
        jwks_json=keys.jwks_json,
        jwt_issuer=TEST_ISSUER,
        jwt_audience=TEST_AUDIENCE,
        api_key=API_KEY,
        outbox_poll_interval_seconds=0.2,
        consumer_retry_backoff_seconds=0.01,
        log_json=False,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
async def probe(settings: Settings) -> AsyncIterator[EventProbe]:
    # Topics first: a probe subscribed to topics that do not exist yet sees them only at a later
    # metadata refresh, which the session's first event-waiting test could outwait under load.
    await ensure_topics(settings)
    async with EventProbe(OUTPUT_TOPICS, prefix=settings.kafka_topic_prefix) as probe:
        yield probe


@pytest.fixture(scope="session")
async def client(settings: Settings, probe: EventProbe) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    yield conn
    await conn.close()


@dataclass
class Actor:
    """Someone calling the API: an agent with a role, or the integration key."""

    headers: dict[str, str]
    agent_id: str | None = None


@dataclass
class World:
    """What a test needs to talk to the service and to its topics."""

    client: httpx.AsyncClient
    keys: SigningKeys
    settings: Settings
    probe: EventProbe
    producer: AIOKafkaProducer
    db: asyncpg.Connection

    def agent(self, role: Role = Role.AGENT) -> Actor:
        agent_id = unique(f"{role.value}-")
        return Actor(self.keys.headers(role, agent_id), agent_id)

    @property
    def integration(self) -> Actor:
        return Actor({"X-API-Key": API_KEY})

    async def create_ticket(self, actor: Actor, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "customer": {"email": f"{unique('c')}@example.com", "name": "Casey Customer"},
            "subject": "Where is my parcel",
            "channel": "email",
            **fields,
        }
        response = await self.client.post("/api/tickets", json=body, headers=actor.headers)
        assert response.status_code == 201, response.text
        ticket: dict[str, Any] = response.json()
        return ticket

    async def publish(self, topic: str, data: Contract) -> str:
        """Publish an event as another service would; returns its id."""
        key, event = build_event(topic, data, source="test")
        await self.producer.send_and_wait(
            self.settings.topic(topic), event.model_dump_json().encode(), key=key.encode()
        )
        return str(event.id)

    async def processed(self, event_id: str) -> None:
        """Wait until the service's consumer has handled (or skipped) an event."""

        async def recorded() -> None:
            found = await self.db.fetchval(
                "SELECT count(*) FROM processed_events WHERE event_id = $1::uuid", event_id
            )
            assert found, f"event {event_id} not processed yet"

        await eventually(recorded, timeout=30)

    async def event(self, topic: str, **match: Any) -> dict[str, Any]:
        """The first `topic` event whose data has these field values (waits for it)."""

        def wanted(body: dict[str, Any]) -> bool:
            return all(body["data"].get(k) == v for k, v in match.items())

        found = await self.probe.wait_for(topic, wanted, timeout=20)
        return found[0]

    @staticmethod
    def problem(response: httpx.Response, status: int) -> dict[str, Any]:
        """The problem+json body of a response that must have this status."""
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body: dict[str, Any] = json.loads(response.text)
        assert body["status"] == status
        return body

    def events(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        return self.probe.events(
            topic, lambda body: all(body["data"].get(k) == v for k, v in match.items())
        )


@pytest.fixture
def world(
    client: httpx.AsyncClient,
    keys: SigningKeys,
    settings: Settings,
    probe: EventProbe,
    producer: AIOKafkaProducer,
    db: asyncpg.Connection,
) -> World:
    return World(client, keys, settings, probe, producer, db)
