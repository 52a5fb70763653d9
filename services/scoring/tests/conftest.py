"""One running scoring service per test session: its own database and Kafka topic prefix.

Tests drive it only through its topics and its API, with unique ticket and customer ids, so
they run in any order and side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import (
    Channel,
    TicketPriority,
    TicketStatus,
)
from quimbi_common.events import (
    Contract,
    CustomerIntelligenceData,
    CustomerSnapshot,
    MessageData,
    MessageUpdatedData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
    build_event,
)
from quimbi_common.kafka import ensure_topics
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    EventProbe,
    SigningKeys,
    assignment_data,
    eventually,
    migrated_database,
    running_app,
    unique,
)
from quimbi_common.uow import UnitsOfWork
from quimbi_scoring.main import build_app
from quimbi_scoring.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


@dataclass
class Scoring:
    """The running service and what tests need to talk to it."""

    settings: Settings
    client: httpx.AsyncClient
    probe: EventProbe
    keys: SigningKeys
    producer: AIOKafkaProducer
    engine: AsyncEngine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return create_sessionmaker(self.engine)

    @property
    def units(self) -> UnitsOfWork:
        return UnitsOfWork(self.sessions, self.settings.service_name)

    async def send(self, topic: str, data: Contract) -> str:
        """Publish an input event as its producer would; returns the event id."""
        key, event = build_event(topic, data, source="test")
        await self.producer.send_and_wait(
            self.settings.topic(topic), value=event.model_dump_json().encode(), key=key.encode()
        )
        return str(event.id)

    async def send_raw(self, topic: str, key: str, body: bytes) -> None:
        await self.producer.send_and_wait(self.settings.topic(topic), value=body, key=key.encode())

    def scored(self, ticket_id: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.probe.events("ticket.scored", _for(ticket_id))]

    async def wait_scored(
        self, ticket_id: str, predicate: Any = lambda _: True, timeout: float = 15.0
    ) -> dict[str, Any]:
        found = await self.probe.wait_for(
            "ticket.scored",
            lambda e: _for(ticket_id)(e) and predicate(e["data"]),
            timeout=timeout,
        )
        return dict(found[-1]["data"])

    async def handled(self, *event_ids: str, timeout: float = 15.0) -> None:
        """Wait until the service has committed the handling of these events."""

        async def recorded() -> None:
            async with self.engine.connect() as conn:
                count = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM processed_events "
                        "WHERE event_id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": list(event_ids)},
                )
            assert count == len(event_ids)

        await eventually(recorded, timeout=timeout)

    async def published(self, ticket_id: str) -> list[dict[str, Any]]:
        """The ticket.scored events committed for a ticket, oldest first (the outbox)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT payload FROM outbox WHERE topic = 'ticket.scored' AND key = :key "
                    "ORDER BY id"
                ),
                {"key": ticket_id},
            )
            return [row.payload["data"] for row in rows]

    def headers(self, role: str = "senior_agent", agent_id: str | None = None) -> dict[str, str]:
        return self.keys.headers(role, agent_id)


def _for(ticket_id: str) -> Any:
    return lambda e: e["data"]["ticket_id"] == ticket_id


@pytest.fixture(scope="session")
async def scoring() -> AsyncIterator[Scoring]:
    keys = SigningKeys()
    async with migrated_database(MIGRATIONS, "scoring") as url:
        settings = Settings(
            kafka_consumer_group=unique("scoring-"),
            database_url=url,
            database_pool_size=5,
            redis_url=REDIS_URL,
            kafka_bootstrap_servers=KAFKA,
            kafka_topic_prefix=f"{unique('t')}.",
            kafka_topic_partitions=2,
            outbox_poll_interval_seconds=0.5,
            consumer_retry_backoff_seconds=0.05,
            jwks_json=keys.jwks_json,
            jwt_issuer=TEST_ISSUER,
            jwt_audience=TEST_AUDIENCE,
            scoring_recalc_poll_seconds=0.5,
            log_json=False,
            log_level="WARNING",
        )
        await ensure_topics(settings)
        engine = create_engine(settings)
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=0)
        await producer.start()
        app = build_app(settings)
        try:
            async with (
                EventProbe(["ticket.scored"], prefix=settings.kafka_topic_prefix) as probe,
                running_app(app) as client,
            ):
                service = Scoring(settings, client, probe, keys, producer, engine)
                await _warm_up(service)
                yield service
        finally:
            await producer.stop()
            await engine.dispose()


async def _warm_up(service: Scoring) -> None:
    """Wait until every subscription has joined the consumer group and handles events."""
    warm = ticket(unique("warm-"))
    msg = message(warm.id)
    deleted = TicketDeletedData(id=unique("warm-"), version=1, deleted_at=datetime.now(UTC))
    intelligence = CustomerIntelligenceData(
        customer_id=unique("warm-"),
        churn_risk=0.0,
        churn_risk_level="low",
        lifetime_value=0.0,
        fetched_at=datetime.now(UTC),
    )
    ids = [
        await service.send("ticket.created", warm),
        await service.send("ticket.updated", TicketUpdatedData(**warm.model_dump())),
        await service.send("ticket.deleted", deleted),
        await service.send("message.added", msg),
        await service.send("message.updated", MessageUpdatedData(**msg.model_dump())),
        await service.send("message.deleted", msg),
        await service.send("customer.intelligence_updated", intelligence),
        await service.send("ticket.assigned", assignment_data(warm.id, unique("agent-"))),
        await service.send("assignment.updated", assignment_data(warm.id, unique("agent-"))),
    ]
    await service.handled(*ids, timeout=90)


def ticket(
    ticket_id: str | None = None,
    *,
    version: int = 1,
    customer_id: str | None = None,
    lifetime_value: float = 0.0,
    churn_risk: float = 0.0,
    hours_ago: float = 0.0,
    changes: dict[str, Any] | None = None,
    **fields: Any,
) -> TicketData:
    """A ticket as tickets publishes it (created, or updated when `changes` is given)."""
    created = datetime.now(UTC) - timedelta(hours=hours_ago)
    customer = customer_id or unique("cust-")
    values: dict[str, Any] = {
        "id": ticket_id or unique("tkt-"),
        "customer_id": customer,
        "subject": "Payment not processing",
        "status": TicketStatus.OPEN,
        "priority": TicketPriority.NORMAL,
        "channel": Channel.EMAIL,
        "assigned_agent_id": None,
        "created_at": created,
        "updated_at": created + timedelta(seconds=version),
        "version": version,
        "customer": CustomerSnapshot(
            id=customer,
            email=f"{customer}@example.com",
            lifetime_value=lifetime_value,
            churn_risk=churn_risk,
        ),
    }
    values.update(fields)
    if changes is not None:
        return TicketUpdatedData(**values, changes=changes)
    return TicketData(**values)


def message(
    ticket_id: str,
    *,
    message_id: str | None = None,
    from_agent: bool = False,
    sentiment: float | None = 0.5,
    content: str = "Hello",
    minutes_ago: float = 0.0,
    version: int = 1,
    created_at: datetime | None = None,
) -> MessageData:
    return MessageData(
        id=message_id or unique("msg-"),
        ticket_id=ticket_id,
        from_agent=from_agent,
        content=content,
        created_at=created_at or datetime.now(UTC) - timedelta(minutes=minutes_ago),
        sentiment_score=sentiment,
        version=version,
        ticket_status=TicketStatus.OPEN,
    )


@pytest.fixture
def new_assignment() -> Any:
    """The `assignment_data` builder (quimbi_common.testing)."""
    return assignment_data


@pytest.fixture
def new_ticket() -> Any:
    """The `ticket` builder (tests import nothing from conftest under importlib mode)."""
    return ticket


@pytest.fixture
def new_message() -> Any:
    return message
