"""Creating a ticket and posting messages write the derived fields and the search document
with plain statements; what they store must equal a recomputation from the stored rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quimbi_common.enums import Intent, Role, TicketPriority
from quimbi_tickets import domain

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.service

_RECOMPUTED_DOCUMENT = (
    "SELECT t.search_document = setweight(to_tsvector('english'::regconfig, t.subject), 'A') "
    "|| coalesce((SELECT tsvector_concat_agg(m.search_vector ORDER BY m.created_at, m.id) "
    "FROM messages m WHERE m.ticket_id = t.id), '') FROM tickets t WHERE t.id = $1"
)


async def _assert_stored_as_recomputed(world: World, ticket_id: str) -> None:
    assert await world.db.fetchval(_RECOMPUTED_DOCUMENT, ticket_id) is True
    ticket = await world.db.fetchrow(
        "SELECT subject, priority, customer_sentiment::float8 AS sentiment, "
        "estimated_difficulty::float8 AS difficulty FROM tickets WHERE id = $1",
        ticket_id,
    )
    messages = await world.db.fetch(
        "SELECT from_agent, sentiment_score::float8 AS sentiment, detected_intent "
        "FROM messages WHERE ticket_id = $1 ORDER BY created_at DESC, id DESC",
        ticket_id,
    )
    customer = [m for m in messages if not m["from_agent"]]
    sentiment = domain.customer_sentiment(
        [m["sentiment"] for m in customer][: world.settings.customer_sentiment_window]
    )
    subject_intent = domain.detect_intent(
        ticket["subject"], domain.sentiment_score(ticket["subject"])
    )
    difficulty = domain.estimated_difficulty(
        priority=TicketPriority(ticket["priority"]),
        intents=[subject_intent, *(Intent(m["detected_intent"]) for m in customer)],
        message_count=len(messages),
        sentiment=sentiment,
    )
    assert (ticket["sentiment"], ticket["difficulty"]) == (sentiment, difficulty)


async def test_created_ticket_and_each_message_store_what_a_recomputation_gives(
    world: World,
) -> None:
    # given a ticket created with a first (angry) customer message
    agent = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(
        world.integration,
        priority="high",
        message={"content": "This is terrible, my refund never came, I want my money back!"},
    )
    await _assert_stored_as_recomputed(world, ticket["id"])
    # when the conversation goes on: agent replies and customer messages, four more of each
    for n in range(4):
        for actor, content in (
            (agent, f"Sorry about that, checking the refund now ({n})."),
            (world.integration, f"Thanks, the app also crashes with an error {n}, great job."),
        ):
            response = await world.client.post(
                f"/api/tickets/{ticket['id']}/messages",
                json={"content": content},
                headers=actor.headers,
            )
            assert response.status_code == 201, response.text
            # then every write stored the document and derived fields of the whole conversation
            await _assert_stored_as_recomputed(world, ticket["id"])


async def test_ticket_without_message_stores_its_subject_document(world: World) -> None:
    ticket = await world.create_ticket(world.integration, subject="Invoice totals look wrong")
    await _assert_stored_as_recomputed(world, ticket["id"])
    detail = await world.db.fetchrow(
        "SELECT customer_sentiment::float8 AS s, version FROM tickets WHERE id = $1", ticket["id"]
    )
    assert (detail["s"], detail["version"]) == (0.5, 1)
