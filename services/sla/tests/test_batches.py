"""A consumer batch is applied at once (one lock, read and write of its clocks): the batches
here are handed to the app's own consumer directly, so each is one batch for certain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.events import (
    Contract,
    Event,
    MessageData,
    TicketData,
    TicketUpdatedData,
    build_event,
)
from quimbi_common.testing import EventProbe, unique
from quimbi_sla.settings import Settings

pytestmark = pytest.mark.service


def _event(topic: str, data: Contract) -> Event[Any]:
    return build_event(topic, data, source="tickets")[1]


def _records(settings: Settings, events: list[tuple[str, Event[Any]]]) -> list[Any]:
    """The events as one fetch returns them (offsets in the order given)."""
    return [
        ConsumerRecord(
            settings.topic(topic),
            0,
            offset,
            0,
            0,
            str(getattr(event.data, "ticket_id", None) or event.data.id).encode(),
            event.model_dump_json().encode(),
            None,
            0,
            0,
            [],
        )
        for offset, (topic, event) in enumerate(events)
    ]


async def _consume(app: FastAPI, settings: Settings, events: list[tuple[str, Event[Any]]]) -> None:
    await app.state.runtime.events.handle_batch(_records(settings, events))


def _created(ticket: Any) -> tuple[str, Event[Any]]:
    return "ticket.created", _event("ticket.created", TicketData(**ticket.data(ticket.created_at)))


def _updated(ticket: Any, at: datetime, **changes: Any) -> tuple[str, Event[Any]]:
    for name, value in changes.items():
        setattr(ticket, name, value)
    ticket.version += 1
    data = TicketUpdatedData(**ticket.data(at), changes={})
    return "ticket.updated", _event("ticket.updated", data)


def _message(ticket: Any, at: datetime, *, from_agent: bool) -> tuple[str, Event[Any]]:
    data = MessageData(
        id=unique("msg-"),
        ticket_id=ticket.id,
        from_agent=from_agent,
        content="hello",
        created_at=at,
        version=1,
        ticket_status=ticket.status,
    )
    return "message.added", _event("message.added", data)


async def _facts(app: FastAPI, ticket_id: str) -> int:
    async with app.state.runtime.sessions() as session:
        count: int = await session.scalar(
            sa.text("SELECT count(*) FROM ticket_facts WHERE ticket_id = :id"), {"id": ticket_id}
        )
        return count


async def test_a_tickets_events_in_one_batch_are_applied_in_order(
    sla: Any, sla_app: FastAPI, sla_settings: Settings, new_ticket: Any
) -> None:
    # given one batch: created, put on pending for ten minutes, made urgent and open again
    now = datetime.now(UTC)
    ticket = new_ticket(created_at=now - timedelta(hours=1))
    created = _created(ticket)
    paused = _updated(ticket, now - timedelta(minutes=10), status=TicketStatus.PENDING)
    resumed = _updated(ticket, now, status=TicketStatus.OPEN, priority=TicketPriority.URGENT)
    await _consume(sla_app, sla_settings, [created, paused, resumed])
    # then each step was published in turn, with its own version
    await sla.updated(ticket.id, version=3)
    steps = sla.all("sla.updated", ticket.id)
    assert [s["version"] for s in steps] == [1, 2, 3]
    assert [s["is_paused"] for s in steps] == [False, True, False]
    assert [s["priority"] for s in steps] == ["normal", "normal", "urgent"]
    assert 595 <= steps[2]["total_paused_seconds"] <= 605
    # and the urgent deadline counts from creation, moved out by the pause
    deadline = datetime.fromisoformat(steps[2]["first_response_deadline"])
    expected = ticket.created_at + timedelta(minutes=30) + timedelta(minutes=10)
    assert abs(deadline - expected) < timedelta(seconds=5)


async def test_an_answer_before_its_ticket_in_one_batch_starts_the_clock_answered(
    sla: Any, sla_app: FastAPI, sla_settings: Settings, new_ticket: Any
) -> None:
    # given the agent's answer comes before ticket.created in the same batch
    ticket = new_ticket(created_at=datetime.now(UTC) - timedelta(minutes=5))
    answered_at = datetime.now(UTC) - timedelta(minutes=1)
    other = new_ticket()
    await _consume(
        sla_app,
        sla_settings,
        [_message(ticket, answered_at, from_agent=True), _created(ticket), _created(other)],
    )
    # then the clock starts answered, in one event, and no early fact is left behind
    data = await sla.updated(ticket.id)
    assert data["first_response_status"] == "met"
    assert datetime.fromisoformat(data["first_response_at"]) == answered_at
    await sla.updated(other.id)
    assert [s["version"] for s in sla.all("sla.updated", ticket.id)] == [1]
    assert await _facts(sla_app, ticket.id) == 0


async def test_a_duplicate_in_a_batch_and_a_redelivered_batch_are_applied_once(
    sla: Any, sla_app: FastAPI, sla_settings: Settings, new_ticket: Any
) -> None:
    ticket = new_ticket()
    created = _created(ticket)
    answer = _message(ticket, datetime.now(UTC), from_agent=True)
    await _consume(sla_app, sla_settings, [created, created, answer, answer])
    await _consume(sla_app, sla_settings, [created, answer])  # redelivered
    marker = new_ticket()
    await _consume(sla_app, sla_settings, [_created(marker)])
    await sla.updated(marker.id)  # published after the ticket's events
    await sla.updated(ticket.id, version=2)
    assert [s["version"] for s in sla.all("sla.updated", ticket.id)] == [1, 2]


async def test_a_poison_message_in_a_batch_is_dead_lettered_alone(
    sla: Any, sla_app: FastAPI, sla_settings: Settings, new_ticket: Any
) -> None:
    # given a batch whose middle ticket cannot be clocked (its deadline is past year 9999)
    before, after = new_ticket(), new_ticket()
    poison = new_ticket(created_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    async with EventProbe(["ticket.created.dlq"], sla_settings.kafka_topic_prefix) as dlq:
        await _consume(sla_app, sla_settings, [_created(before), _created(poison), _created(after)])
        # then the others' clocks start, and the poison goes to the DLQ alone
        await sla.updated(before.id)
        await sla.updated(after.id)
        [dead] = await dlq.wait_for("ticket.created.dlq", timeout=30)
        assert dead["data"]["id"] == poison.id
    assert sla.all("sla.updated", poison.id) == []
