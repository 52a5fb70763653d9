"""CSAT feeds the agent's score: real `ticket.rated` events through Kafka into the shared app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from quimbi_agents.settings import Settings
from quimbi_common.events import EventType, TicketRatedData, build_event
from quimbi_common.testing import EventProbe, eventually

pytestmark = pytest.mark.service


def rating(agent_id: str | None, stars: int, ticket_id: str | None = None) -> TicketRatedData:
    return TicketRatedData(
        ticket_id=ticket_id or f"ticket-{uuid.uuid4()}",
        customer_id="cust-1",
        rating=stars,
        comment="thanks",
        agent_id=agent_id,
        rated_at=datetime.now(UTC),
    )


async def score_of(h: Any, agent_id: str) -> float:
    return float((await h.row(agent_id)).customer_satisfaction_score)


async def test_ratings_replace_a_hand_set_score_with_their_mean_and_announce_it(
    h: Any, publish: Any, probe: EventProbe
) -> None:
    # given an agent whose score a manager set by hand
    (agent,) = await h.agents_fast({"score": 1.5})
    version = (await h.row(agent["id"])).version
    # when the first rating of a ticket they held arrives: it takes over
    await publish(EventType.TICKET_RATED, rating(agent["id"], 5))

    async def score_is(expected: float) -> None:
        assert await score_of(h, agent["id"]) == expected

    await eventually(lambda: score_is(5.0), timeout=60)
    # and a second one makes it the mean of both
    await publish(EventType.TICKET_RATED, rating(agent["id"], 4))
    await eventually(lambda: score_is(4.5), timeout=60)
    # each change is announced as agent.updated, with a new version
    events = await probe.wait_for(
        "agent.updated",
        lambda e: (
            e["data"]["id"] == agent["id"] and "customer_satisfaction_score" in e["data"]["changes"]
        ),
        count=2,
        timeout=30,
    )
    changes = [e["data"]["changes"]["customer_satisfaction_score"] for e in events]
    assert changes == [{"old": 1.5, "new": 5.0}, {"old": 5.0, "new": 4.5}]
    assert [e["data"]["version"] for e in events] == [version + 1, version + 2]
    assert (await h.row(agent["id"])).version == version + 2


async def test_a_rating_counts_once_however_often_it_arrives(
    h: Any, producer: AIOKafkaProducer, settings: Settings, publish: Any
) -> None:
    (agent,) = await h.agents_fast({})
    first = rating(agent["id"], 2)
    key, event = build_event(EventType.TICKET_RATED, first, source="tickets")
    payload = event.model_dump_json().encode()
    topic = settings.topic(EventType.TICKET_RATED)
    # the same event delivered twice, and the same ticket rated again under a new event id
    await producer.send_and_wait(topic, value=payload, key=key.encode())
    await producer.send_and_wait(topic, value=payload, key=key.encode())
    await publish(EventType.TICKET_RATED, rating(agent["id"], 5, ticket_id=first.ticket_id))
    # then another ticket's rating (same key order is not needed: it is another ticket)
    await publish(EventType.TICKET_RATED, rating(agent["id"], 4))

    async def settled() -> None:
        # (2 + 4) / 2 = 3.0; had any repeat counted it would be 2.67, 3.67 or 3.25
        assert await score_of(h, agent["id"]) == 3.0

    await eventually(settled, timeout=60)


async def test_a_rating_without_an_agent_changes_no_score(h: Any, publish: Any) -> None:
    (agent,) = await h.agents_fast({"score": 2.0})
    unassigned = rating(None, 1)
    await publish(EventType.TICKET_RATED, unassigned)
    # a later rating of the agent's shows the first was consumed without touching them
    await publish(EventType.TICKET_RATED, rating(agent["id"], 3, ticket_id=unassigned.ticket_id))
    await publish(EventType.TICKET_RATED, rating(agent["id"], 4))

    async def settled() -> None:
        assert await score_of(h, agent["id"]) == 4.0  # only the last: the ticket was rated

    await eventually(settled, timeout=60)
