"""The real read path: ai-proxy against the real tickets service (its app under uvicorn, its own
database), with a ticket created through the tickets API and messages posted through it, so
the detail shape, the token forwarding and the conversation a draft answers are all real."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import KAFKA, REDIS_URL, SigningKeys, migrated_database
from quimbi_common.testing import unique as unique_id
from quimbi_tickets.main import build_app as build_tickets
from quimbi_tickets.settings import Settings as TicketsSettings

pytestmark = pytest.mark.service
TICKETS_MIGRATIONS = Path(__file__).resolve().parents[2] / "tickets" / "migrations"


@pytest.fixture(scope="module")
async def tickets_service(
    keys: SigningKeys, kafka_prefix: str, serve: Callable[..., Any]
) -> AsyncIterator[str]:
    async with migrated_database(TICKETS_MIGRATIONS, "tickets_for_ai") as url:
        settings = TicketsSettings(
            service_name=unique_id("tickets-for-ai-"),
            environment="test",
            database_url=url,
            redis_url=REDIS_URL,
            kafka_bootstrap_servers=KAFKA,
            kafka_topic_prefix=kafka_prefix,
            kafka_topic_partitions=1,
            jwks_json=keys.jwks_json,
            outbox_poll_interval_seconds=0.2,
            # under the proxy's tickets_timeout (2 s here): an invisible ticket is a 404 after it
            read_your_writes_wait_seconds=0.5,
            log_json=False,
        )
        async with serve(build_tickets(settings), lifespan="on") as base_url:
            yield base_url


@pytest.fixture
def real_proxy_app(proxy_app_for: Callable[[str], Any], tickets_service: str) -> Any:
    return proxy_app_for(tickets_service)


async def _create_ticket(base_url: str, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        response = await client.post(
            "/api/tickets",
            json={
                "customer": {"email": f"{unique_id('c')}@example.com", "name": "Dana Scully"},
                "subject": "Charged twice for one order",
                "channel": "email",
                "priority": "high",
                "message": {
                    "content": "I was charged twice for my order. I want a refund.",
                    "from_agent": False,
                },
            },
        )
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def test_draft_for_a_ticket_from_the_tickets_service(
    real_proxy_app, tickets_service, keys: SigningKeys, standin
) -> None:
    # given a ticket an agent created (so it is theirs), logging the customer's first message
    owner = unique_id("agent-")
    ticket = await _create_ticket(tickets_service, keys.headers(Role.AGENT, owner))
    async with real_proxy_app() as proxy:
        url = f"/api/ai/tickets/{ticket['id']}/draft-response"
        # when the owner, another agent and a senior agent ask for its draft
        mine = await proxy.client.get(url, headers=keys.headers(Role.AGENT, owner))
        other = await proxy.client.get(url, headers=keys.headers(Role.AGENT, unique_id("a-")))
        senior = await proxy.client.get(url, headers=keys.headers(Role.SENIOR_AGENT))
    # then the owner and the senior get a draft built from the real conversation, the other 404
    assert mine.status_code == 200, mine.text
    assert mine.json()["draft_content"].startswith("Hi Dana,")
    assert "charged twice" in mine.json()["draft_content"]
    assert other.status_code == 404
    assert senior.status_code == 200


async def test_a_message_posted_to_tickets_makes_the_next_draft_new(
    real_proxy_app, tickets_service, keys: SigningKeys, standin
) -> None:
    owner = unique_id("agent-")
    headers = keys.headers(Role.AGENT, owner)
    ticket = await _create_ticket(tickets_service, headers)
    async with real_proxy_app() as proxy:
        url = f"/api/ai/tickets/{ticket['id']}/draft-response"
        first = await proxy.client.get(url, headers=headers)
        cached = await proxy.client.get(url, headers=headers)
        # when the agent replies through the tickets service
        async with httpx.AsyncClient(base_url=tickets_service, headers=headers) as tickets:
            reply = await tickets.post(
                f"/api/tickets/{ticket['id']}/messages",
                json={"content": "Sorry about that, checking now.", "from_agent": True},
            )
        assert reply.status_code == 201, reply.text
        # then the very next draft answers the conversation as it is now (no event awaited:
        # the cached one carries the old conversation's fingerprint)
        after = await proxy.client.get(url, headers=headers)
    assert first.json()["cached"] is False
    assert cached.json()["cached"] is True
    assert after.status_code == 200, after.text
    assert after.json()["cached"] is False
    assert (await standin.calls())["message"] == 2


async def test_customer_intelligence_follows_the_tickets_services_customer_visibility(
    real_proxy_app, tickets_service, keys: SigningKeys, standin
) -> None:
    # given a customer whose only ticket an agent created (so it is theirs)
    owner = unique_id("agent-")
    ticket = await _create_ticket(tickets_service, keys.headers(Role.AGENT, owner))
    url = f"/api/ai/customers/{ticket['customer_id']}/intelligence"
    async with real_proxy_app() as proxy:
        # when the owner, another agent, a senior agent ask for the customer's intelligence,
        # and a senior agent for a customer nobody knows
        mine = await proxy.client.get(url, headers=keys.headers(Role.AGENT, owner))
        other = await proxy.client.get(url, headers=keys.headers(Role.AGENT, unique_id("a-")))
        senior = await proxy.client.get(url, headers=keys.headers(Role.SENIOR_AGENT))
        made_up = await proxy.client.get(
            f"/api/ai/customers/{unique_id('made-up-')}/intelligence",
            headers=keys.headers(Role.SENIOR_AGENT),
        )
    # then the answers are those of GET /api/customers/{id}: 200, 404, 200, 404
    assert mine.status_code == 200, mine.text
    assert mine.json()["customer_id"] == ticket["customer_id"]
    assert other.status_code == 404, other.text
    assert other.headers["content-type"] == "application/problem+json"
    assert senior.status_code == 200, senior.text
    assert made_up.status_code == 404, made_up.text
    # and Quimbi was asked about the visible customer only
    assert (await standin.calls())["analyze"] == 1
