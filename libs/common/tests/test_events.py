from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from quimbi_common.events import (
    TOPICS,
    AgentData,
    CustomerSnapshot,
    EventType,
    MessageData,
    TicketData,
    TicketDeletedData,
    build_event,
    parse_event,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _message() -> MessageData:
    return MessageData(
        id="m1",
        ticket_id="t1",
        from_agent=False,
        content="hi",
        created_at=NOW,
        version=1,
        ticket_status="open",
    )


def test_message_events_are_keyed_by_ticket_and_name_the_message() -> None:
    key, event = build_event("message.added", _message(), source="tickets")
    assert key == "t1"
    assert event.subject == "m1"
    assert event.source == "/services/tickets"
    assert event.type == "message.added"
    assert event.specversion == "1.0"
    assert event.dataversion == 1


def test_agent_events_are_keyed_by_agent() -> None:
    agent = AgentData(
        id="a1",
        email="a@example.com",
        name="A",
        role="agent",
        status="online",
        max_concurrent_tickets=5,
        is_active=True,
        version=1,
    )
    key, _ = build_event("agent.created", agent, source="agents")
    assert key == "a1"


def test_envelope_round_trips_through_json() -> None:
    ticket = TicketData(
        id="t1",
        customer_id="c1",
        subject="Refund",
        status="open",
        priority="high",
        channel="email",
        created_at=NOW,
        updated_at=NOW,
        version=3,
        customer=CustomerSnapshot(id="c1", email="c@example.com"),
    )
    _, event = build_event("ticket.created", ticket, source="tickets", correlation_id="req-1")
    parsed = parse_event("ticket.created", event.model_dump_json())
    assert parsed == event
    assert parsed.correlationid == "req-1"


def test_data_of_another_contract_is_refused() -> None:
    with pytest.raises(TypeError):
        build_event("ticket.created", _message(), source="tickets")


def test_an_event_missing_required_data_does_not_parse() -> None:
    _, event = build_event(
        "ticket.deleted", TicketDeletedData(id="t1", version=2, deleted_at=NOW), source="tickets"
    )
    body = event.model_dump(mode="json")
    del body["data"]["version"]
    with pytest.raises(ValidationError):
        parse_event("ticket.deleted", str(body).replace("'", '"').replace("None", "null"))


def test_contracts_never_carry_secrets() -> None:
    for topic in TOPICS.values():
        fields = set(topic.data.model_fields)
        assert not fields & {"hashed_password", "password", "token", "access_token"}, topic.name


def test_every_architecture_topic_has_a_contract() -> None:
    expected = {
        "ticket.created",
        "ticket.updated",
        "ticket.deleted",
        "message.added",
        "message.updated",
        "message.deleted",
        "ticket.scored",
        "ticket.assigned",
        "assignment.updated",
        "sla.updated",
        "sla.warning",
        "sla.breached",
        "sla.decided",  # issue 15: agents' report reads outcomes, not every clock move
        "agent.created",
        "agent.updated",
        "agent.deleted",
        "customer.intelligence_updated",
        "ticket.rated",  # issue 19 item 6 (CSAT); not in ARCHITECTURE §4, which predates it
    }
    assert set(TOPICS) == expected


def test_every_event_type_is_a_topic_and_every_topic_an_event_type() -> None:
    assert list(TOPICS) == list(EventType)
    assert all(TOPICS[t].name is t for t in EventType)
    assert TOPICS["ticket.created"] is TOPICS[EventType.TICKET_CREATED]  # as read off Kafka
