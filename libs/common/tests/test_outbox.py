"""The outbox against real PostgreSQL and Kafka: committed events arrive, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from quimbi_common import consistency
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.events import (
    PRODUCER_ONLY_HEADER,
    CustomerSnapshot,
    EventType,
    TicketDeletedData,
    TicketUpdatedData,
)
from quimbi_common.outbox import OutboxRelay, add_events
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import EventProbe, eventually, unique

pytestmark = pytest.mark.service
INFRA = Path(__file__).resolve().parents[3] / "deploy" / "local" / "infra.sh"


def _deleted(ticket_id: str, version: int = 1) -> TicketDeletedData:
    return TicketDeletedData(id=ticket_id, version=version, deleted_at=datetime.now(UTC))


async def _write(settings: CommonSettings, ticket_ids: list[str], *, commit: bool = True) -> None:
    engine = create_engine(settings)
    async with create_sessionmaker(engine)() as session:
        for ticket_id in ticket_ids:
            await add_events(
                session, [(EventType.TICKET_DELETED, _deleted(ticket_id))], source="test"
            )
        if commit:
            await session.commit()
        else:
            await session.rollback()
    await engine.dispose()


@contextlib.asynccontextmanager
async def _relay(
    settings: CommonSettings, relay_type: type[OutboxRelay] = OutboxRelay
) -> AsyncIterator[OutboxRelay]:
    engine = create_engine(settings)
    relay = relay_type(engine, settings)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()


async def test_committed_event_reaches_its_topic_once_with_envelope_and_key(
    settings: CommonSettings,
) -> None:
    ticket_id = unique("tk-")
    async with (
        EventProbe(["ticket.deleted"], settings.kafka_topic_prefix) as probe,
        _relay(settings),
    ):
        await _write(settings, [ticket_id])
        [event] = await probe.wait_for("ticket.deleted", lambda e: e["subject"] == ticket_id)
        await asyncio.sleep(1.5)  # a second relay pass must not send it again
        assert len(probe.events("ticket.deleted")) == 1
    _, key, _, headers = probe.received[0]
    assert key == ticket_id
    assert event["specversion"] == "1.0"
    assert event["type"] == "ticket.deleted"
    assert event["source"] == "/services/test"
    assert event["data"]["id"] == ticket_id
    assert headers["ce_type"] == b"ticket.deleted"


def _updated(ticket_id: str, version: int, **changes: Any) -> TicketUpdatedData:
    now = datetime.now(UTC)
    return TicketUpdatedData(
        id=ticket_id,
        customer_id="c",
        subject="Help",
        status="open",
        priority="normal",
        channel="email",
        created_at=now,
        updated_at=now,
        version=version,
        customer=CustomerSnapshot(id="c", email="c@example.com"),
        changes={name: {"old": None, "new": value} for name, value in changes.items()},
    )


async def test_an_update_of_fields_only_its_producer_holds_is_marked_and_named_in_no_token(
    settings: CommonSettings,
) -> None:
    """A sentiment-only ticket.updated is still published (whole stream readers), with the
    header consumers drop it by; a write's token names only the events others apply."""
    ticket_id = unique("tk-")
    estimate = _updated(ticket_id, 2, customer_sentiment=0.2, estimated_difficulty=0.7)
    status = _updated(ticket_id, 3, status="pending")
    engine = create_engine(settings)
    written: list[str] = []
    reset = consistency._written.set(written)
    try:
        async with create_sessionmaker(engine)() as session:
            ids = await add_events(
                session,
                [(EventType.TICKET_UPDATED, estimate), (EventType.TICKET_UPDATED, status)],
                source="test",
            )
            await session.commit()
    finally:
        consistency._written.reset(reset)
        await engine.dispose()
    assert written == [f"ticket.updated/{ids[1]}"]
    async with (
        EventProbe(["ticket.updated"], settings.kafka_topic_prefix) as probe,
        _relay(settings),
    ):
        await probe.wait_for("ticket.updated", lambda e: e["data"]["version"] == 3)
    marks = {
        event["id"]: headers.get(PRODUCER_ONLY_HEADER)
        for _, key, event, headers in probe.received
        if key == ticket_id
    }
    assert marks == {ids[0]: b"1", ids[1]: None}


async def test_rolled_back_event_is_never_published(settings: CommonSettings) -> None:
    rolled_back, committed = unique("rb-"), unique("ok-")
    async with (
        EventProbe(["ticket.deleted"], settings.kafka_topic_prefix) as probe,
        _relay(settings),
    ):
        await _write(settings, [rolled_back], commit=False)
        await _write(settings, [committed])
        await probe.wait_for("ticket.deleted", lambda e: e["subject"] == committed)
        await asyncio.sleep(1.0)
    assert [e["subject"] for e in probe.events("ticket.deleted")] == [committed]


async def test_the_relay_is_woken_by_notify_and_by_losing_its_listen_connection(
    settings: CommonSettings,
) -> None:
    """The fallback poll a minute away: a commit is published on its NOTIFY; after the relay's
    LISTEN connection is killed, an event whose NOTIFY nobody heard is still published soon,
    because the closed connection woke the relay, which connected again and looked."""
    settings = settings.model_copy(update={"outbox_poll_interval_seconds": 60.0})
    first, second = unique("notify-"), unique("notify-")
    engine = create_engine(settings)
    try:
        async with (
            EventProbe(["ticket.deleted"], settings.kafka_topic_prefix) as probe,
            _relay(settings) as relay,
        ):
            await _write(settings, [first])
            await probe.wait_for("ticket.deleted", lambda e: e["subject"] == first, timeout=20)
            assert relay._listener is not None
            listener = relay._listener.get_server_pid()
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": listener})
            await _write(settings, [second])
            await probe.wait_for("ticket.deleted", lambda e: e["subject"] == second, timeout=20)
            assert relay._listener is not None
            assert relay._listener.get_server_pid() != listener
    finally:
        await engine.dispose()


class _CrashAfterPublish(OutboxRelay):
    """Dies after Kafka acknowledged the batch but before the rows were marked as sent."""

    crashes = 0

    async def _mark_published(self, conn: Any, ids: list[int]) -> None:
        if _CrashAfterPublish.crashes == 0:
            _CrashAfterPublish.crashes += 1
            raise RuntimeError("relay killed between publish and mark-as-sent")
        await super()._mark_published(conn, ids)


async def test_relay_killed_before_marking_sent_republishes_and_loses_nothing(
    settings: CommonSettings,
) -> None:
    ids = [unique("k-") for _ in range(5)]
    await _write(settings, ids)
    async with EventProbe(["ticket.deleted"], settings.kafka_topic_prefix) as probe:
        async with _relay(settings, _CrashAfterPublish):
            await probe.wait_for("ticket.deleted", count=10, timeout=20)
        subjects = [e["subject"] for e in probe.events("ticket.deleted")]
    assert sorted(set(subjects)) == sorted(ids)
    assert len(subjects) == 10  # each twice: duplicates are allowed, consumers dedupe by id
    assert len({e["id"] for e in probe.events("ticket.deleted")}) == 5


def _private_kafka(action: str, directory: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_DIR": str(directory),
        "KAFKA_PORT": "19092",
        "KAFKA_CONTROLLER_PORT": "19093",
    }
    subprocess.run([str(INFRA), action], env=env, check=True, capture_output=True, timeout=120)


async def test_events_written_while_kafka_is_down_are_delivered_when_it_returns(
    settings: CommonSettings, tmp_path: Path
) -> None:
    """Uses a private broker, so stopping it disturbs no other test. The backlog gauges rise
    while Kafka is away and return to 0 once the rows are sent."""
    settings = settings.model_copy(
        update={
            "kafka_bootstrap_servers": "127.0.0.1:19092",
            "outbox_metrics_interval_seconds": 0.2,
        }
    )
    labels = {"service": settings.service_name}

    async def backlog() -> tuple[float | None, float | None]:
        return (
            REGISTRY.get_sample_value("outbox_backlog_rows", labels),
            REGISTRY.get_sample_value("outbox_oldest_unsent_age_seconds", labels),
        )

    await asyncio.to_thread(_private_kafka, "start-kafka", tmp_path)
    try:
        ids = [unique("down-") for _ in range(20)]
        async with _relay(settings):
            await _write(settings, ids[:1])  # the relay is connected and working
            await asyncio.sleep(2)
            await asyncio.to_thread(_private_kafka, "stop-kafka", tmp_path)
            await _write(settings, ids[1:])  # writes keep working while Kafka is down

            async def piled_up() -> None:
                rows, age = await backlog()
                assert rows is not None
                assert rows >= 19  # and the first, if Kafka went before the relay sent it
                assert age is not None
                assert age >= 1.0

            await eventually(piled_up, timeout=20)
            await asyncio.to_thread(_private_kafka, "start-kafka", tmp_path)
            probe = EventProbe(["ticket.deleted"], settings.kafka_topic_prefix, "127.0.0.1:19092")
            async with probe:
                await probe.wait_for("ticket.deleted", count=20, timeout=60)
                subjects = {e["subject"] for e in probe.events("ticket.deleted")}

                async def drained() -> None:
                    assert await backlog() == (0.0, 0.0)

                await eventually(drained, timeout=20)
        assert subjects == set(ids)
    finally:
        await asyncio.to_thread(_private_kafka, "stop-kafka", tmp_path)


async def test_rows_past_retention_are_pruned_once_an_interval_not_in_every_pass(
    settings: CommonSettings,
) -> None:
    """The DELETE of old published rows was a round trip in every relay pass."""
    settings = settings.model_copy(
        update={"outbox_retention_hours": 1, "outbox_prune_interval_seconds": 3600}
    )
    engine = create_engine(settings)
    relay = OutboxRelay(engine, settings)
    old = sa.text(
        "INSERT INTO outbox (event_id, topic, key, payload, published_at) VALUES "
        "(gen_random_uuid(), 'ticket.deleted', :key, '{}', now() - interval '2 hours')"
    )
    left = sa.text("SELECT count(*) FROM outbox WHERE key = ANY(:keys)")
    try:
        async with engine.begin() as conn:
            await conn.execute(old, {"key": "old-1"})
            await relay._prune(conn)  # the first pass prunes
            await conn.execute(old, {"key": "old-2"})
            await relay._prune(conn)  # the next, within the interval, does not
            assert await conn.scalar(left, {"keys": ["old-1", "old-2"]}) == 1
    finally:
        await engine.dispose()
