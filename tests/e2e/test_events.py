"""What analytics teams and operators rely on: valid envelopes in order, and nothing lost."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from launcher import Suite
from support import ExternalStack, Servers
from test_journeys import create_ticket, get_ok

from quimbi_common.events import TOPICS, parse_event
from quimbi_common.testing import EventProbe, eventually

pytestmark = pytest.mark.e2e


async def test_an_analytics_consumer_finds_valid_envelopes_in_order_per_ticket(
    gateway: httpx.AsyncClient, make_agent: Any, topic_prefix: str, infra: Servers
) -> None:
    agent = await make_agent("agent")
    async with EventProbe(list(TOPICS), topic_prefix, infra.kafka_bootstrap) as probe:
        ticket = await create_ticket(gateway, agent, message="Hello, my order is late")
        path = f"/api/tickets/{ticket['id']}"
        for status in ("in_progress", "pending", "open", "resolved"):
            response = await gateway.patch(path, json={"status": status}, headers=agent.headers)
            assert response.status_code == 200, response.text
        await probe.wait_for("ticket.updated", lambda e: e["subject"] == ticket["id"], count=4)
        await probe.wait_for("ticket.scored", lambda e: e["subject"] == ticket["id"])
        await probe.wait_for("sla.updated", lambda e: e["subject"] == ticket["id"])
    mine = [(t, key, body) for t, key, body, _ in probe.received if key == ticket["id"]]
    assert {t for t, _, _ in mine} >= {"ticket.created", "ticket.updated", "message.added"}
    for topic, _, body in mine:
        event = parse_event(topic, json.dumps(body))  # raises when invalid
        assert event.type == topic
        assert event.source.startswith("/services/")
    # per topic, a ticket's events arrive in order; across topics Kafka promises no order
    # (docs/events): a consumer orders them by the ticket's `version`, which must be complete
    updates = [body["data"]["version"] for t, _, body in mine if t == "ticket.updated"]
    assert updates == sorted(updates)
    # (a redelivery repeats an event id, which consumers skip)
    versions = {
        body["id"]: body["data"]["version"]
        for t, _, body in mine
        if t in ("ticket.created", "ticket.updated")
    }
    assert sorted(versions.values()) == list(range(1, 6))


async def test_a_killed_service_catches_up_without_losing_events(
    gateway: httpx.AsyncClient, make_agent: Any, suite: Suite | ExternalStack
) -> None:
    agent = await make_agent("agent")
    await suite.restart("scoring")  # killed; its supervisor starts it again
    tickets = [await create_ticket(gateway, agent, priority="high") for _ in range(5)]

    async def all_scored() -> None:
        for ticket in tickets:
            found = await get_ok(gateway, f"/api/tickets/{ticket['id']}", agent)
            assert found["smart_score"] >= 2.5

    await eventually(all_scored, timeout=60)
