"""The SLA service against real PostgreSQL, Redis and Kafka: one app for the whole session,
its own database and topic prefix, and a stand-in for the tickets service's events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from quimbi_common.enums import Role, TicketPriority, TicketStatus
from quimbi_common.events import (
    Contract,
    CustomerSnapshot,
    MessageData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
    build_event,
)
from quimbi_common.kafka import ensure_topics
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    EventProbe,
    SigningKeys,
    migrated_database,
    running_app,
    unique,
)
from quimbi_sla.main import build_app
from quimbi_sla.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
SLA_TOPICS = ["sla.updated", "sla.warning", "sla.breached", "sla.decided"]


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def sla_settings(keys: SigningKeys) -> AsyncIterator[Settings]:
    async with migrated_database(MIGRATIONS, "sla") as url:
        yield Settings(
            service_name=unique("sla-test-"),  # a consumer group of its own
            database_url=url,
            redis_url=REDIS_URL,
            kafka_bootstrap_servers=KAFKA,
            kafka_topic_prefix=f"{unique('t')}.",
            kafka_topic_partitions=1,
            jwks_json=keys.jwks_json,
            outbox_poll_interval_seconds=0.2,
            consumer_retry_backoff_seconds=0.05,
            log_json=False,
            log_level="WARNING",
        )


@pytest.fixture(scope="session")
def sla_app(sla_settings: Settings) -> FastAPI:
    """The one app of the session (its runtime applies batches handed to it directly, too)."""
    return build_app(sla_settings)


@pytest.fixture(scope="session")
async def client(sla_settings: Settings, sla_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(sla_settings)
    async with running_app(sla_app) as client:
        yield client


@pytest.fixture(scope="session")
async def probe(sla_settings: Settings) -> AsyncIterator[EventProbe]:
    await ensure_topics(sla_settings)
    async with EventProbe(SLA_TOPICS, prefix=sla_settings.kafka_topic_prefix) as probe:
        yield probe


@dataclass
class Ticket:
    """A ticket as the tickets service would describe it in its events."""

    id: str
    priority: TicketPriority = TicketPriority.NORMAL
    status: TicketStatus = TicketStatus.OPEN
    assigned_agent_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 1

    def data(self, updated_at: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": f"cust-{self.id}",
            "subject": "Payment not processing",
            "status": self.status,
            "priority": self.priority,
            "channel": "email",
            "assigned_agent_id": self.assigned_agent_id,
            "created_at": self.created_at,
            "updated_at": updated_at or datetime.now(UTC),
            "version": self.version,
            "customer": CustomerSnapshot(id=f"cust-{self.id}", email="c@example.com"),
        }


class TicketEvents:
    """Publishes ticket.* and message.* events as the tickets service would."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.producer = producer
        self.settings = settings

    async def send(self, topic: str, data: Contract) -> None:
        key, event = build_event(topic, data, source="tickets")
        await self.producer.send_and_wait(
            self.settings.topic(topic), value=event.model_dump_json().encode(), key=key.encode()
        )

    async def created(self, ticket: Ticket) -> Ticket:
        await self.send("ticket.created", TicketData(**ticket.data(ticket.created_at)))
        return ticket

    async def updated(self, ticket: Ticket, at: datetime | None = None, **changes: Any) -> Ticket:
        old = {name: getattr(ticket, name) for name in changes}
        for name, value in changes.items():
            setattr(ticket, name, value)
        ticket.version += 1
        delta = {name: {"old": old[name], "new": value} for name, value in changes.items()}
        await self.send("ticket.updated", TicketUpdatedData(**ticket.data(at), changes=delta))
        return ticket

    async def message(
        self, ticket: Ticket, *, from_agent: bool, at: datetime | None = None
    ) -> None:
        status = ticket.status
        await self.send(
            "message.added",
            MessageData(
                id=unique("msg-"),
                ticket_id=ticket.id,
                from_agent=from_agent,
                author_agent_id=ticket.assigned_agent_id if from_agent else None,
                content="hello",
                created_at=at or datetime.now(UTC),
                version=1,
                ticket_status=status,
            ),
        )

    async def deleted(self, ticket: Ticket) -> None:
        ticket.version += 1
        await self.send(
            "ticket.deleted",
            TicketDeletedData(id=ticket.id, version=ticket.version, deleted_at=datetime.now(UTC)),
        )


@pytest.fixture(scope="session")
async def tickets(sla_settings: Settings) -> AsyncIterator[TicketEvents]:
    producer = AIOKafkaProducer(bootstrap_servers=sla_settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        yield TicketEvents(producer, sla_settings)
    finally:
        await producer.stop()


class SlaEvents:
    """Waits for what the SLA service published about one ticket."""

    def __init__(self, probe: EventProbe) -> None:
        self.probe = probe

    async def wait(
        self, topic: str, ticket_id: str, *, version: int = 1, count: int = 1, timeout: float = 10
    ) -> list[dict[str, Any]]:
        found = await self.probe.wait_for(
            topic,
            lambda e: e["data"]["ticket_id"] == ticket_id and e["data"]["version"] >= version,
            count=count,
            timeout=timeout,
        )
        return [event["data"] for event in found]

    async def updated(self, ticket_id: str, version: int = 1) -> dict[str, Any]:
        return (await self.wait("sla.updated", ticket_id, version=version))[-1]

    def all(self, topic: str, ticket_id: str) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.probe.events(topic, lambda e: e["data"]["ticket_id"] == ticket_id)
        ]


@pytest.fixture(scope="session")
async def sla(probe: EventProbe, client: httpx.AsyncClient, tickets: TicketEvents) -> SlaEvents:
    """Returns once the app consumes and publishes (the consumer group has joined)."""
    events = SlaEvents(probe)
    warm_up = Ticket(id=unique("warm-up-"))
    await tickets.created(warm_up)
    await events.wait("sla.updated", warm_up.id, timeout=60)
    return events


@pytest.fixture
def new_ticket() -> Any:
    """`new_ticket(priority=..., created_at=..., ...)` → a Ticket with a unique id."""

    def make(**fields: Any) -> Ticket:
        return Ticket(id=unique("tkt-"), **fields)

    return make


@pytest.fixture
def senior(keys: SigningKeys) -> dict[str, str]:
    return keys.headers(Role.SENIOR_AGENT)
