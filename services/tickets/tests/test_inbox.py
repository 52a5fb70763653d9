"""The smart inbox: ordering by score then age, topic alerts, filters, paging, and indexes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from quimbi_common.auth import Principal
from quimbi_common.enums import Role, TicketStatus
from quimbi_common.events import ScoreParts, TicketScoredData
from quimbi_common.testing import unique
from quimbi_tickets.queries import InboxQuery, inbox_statement
from quimbi_tickets.schemas import TicketList, TicketSummary

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service


async def _score(world: World, ticket_id: str, score: float, version: int = 1) -> str:
    parts = ScoreParts(priority=score, wait=0, sentiment=0, value=0, churn=0)
    data = TicketScoredData(
        ticket_id=ticket_id,
        smart_score=score,
        parts=parts,
        computed_at=datetime.now(UTC),
        version=version,
    )
    return await world.publish("ticket.scored", data)


async def _tickets_of_one_customer(
    world: World, actor: Actor, scores: list[float], subjects: list[str] | None = None
) -> tuple[str, list[str]]:
    """Tickets of a fresh customer (created in this order) with these stored scores."""
    first = await world.create_ticket(actor, subject=(subjects or ["Ticket 0"])[0])
    customer_id = first["customer_id"]
    ids = [first["id"]]
    for index in range(1, len(scores)):
        subject = subjects[index] if subjects else f"Ticket {index}"
        ticket = await world.create_ticket(
            actor, customer=None, customer_id=customer_id, subject=subject
        )
        ids.append(ticket["id"])
    last_event = ""
    for ticket_id, score in zip(ids, scores, strict=True):
        last_event = await _score(world, ticket_id, score)
    await world.processed(last_event)  # one partition: every earlier score is stored too
    return customer_id, ids


async def _inbox(world: World, actor: Actor, **params: Any) -> dict[str, Any]:
    response = await world.client.get("/api/tickets", params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_inbox_orders_by_score_then_oldest_first(world: World) -> None:
    # given tickets with scores, two of them tied
    senior = world.agent(Role.SENIOR_AGENT)
    customer_id, ids = await _tickets_of_one_customer(world, senior, [2.5, 7.25, 2.5, 9.0])
    # when the inbox is listed
    body = await _inbox(world, senior, customer_id=customer_id)
    # then the highest score comes first and the tie goes to the older ticket
    assert [t["id"] for t in body["tickets"]] == [ids[3], ids[1], ids[0], ids[2]]
    assert [t["smart_score"] for t in body["tickets"]] == [9.0, 7.25, 2.5, 2.5]
    assert body["pagination"] == {
        "page": 1,
        "limit": 50,
        "total": 4,
        "has_next": False,
        "has_prev": False,
    }
    assert body["topic_alerts_active"] == []
    assert body["matches"] == 0
    item = body["tickets"][0]
    assert set(item) == {
        "id",
        "customer_id",
        "subject",
        "status",
        "priority",
        "channel",
        "category",
        "assigned_agent_id",
        "created_at",
        "updated_at",
        "customer_sentiment",
        "smart_score",
        "estimated_difficulty",
        "matches_topic_alert",
        "score_status",
        "sla_status",
    }
    assert (item["score_status"], item["sla_status"]) == ("scored", "pending")
    assert item["created_at"].endswith("Z")


async def test_topic_alert_boosts_matching_tickets_by_subject_or_message(world: World) -> None:
    # given tickets where only the low-scored ones mention the keyword
    senior = world.agent(Role.SENIOR_AGENT)
    keyword = unique("recall")
    customer_id, ids = await _tickets_of_one_customer(
        world,
        senior,
        [6.0, 3.0, 2.0, 0.5],
        subjects=["Nothing special", f"About the {keyword.upper()} notice", "Another", "Quiet"],
    )
    await world.client.post(
        f"/api/tickets/{ids[2]}/messages",
        json={"content": f"is my kettle part of the {keyword}?"},
        headers=senior.headers,
    )
    # when the inbox is listed with that topic alert (and one matching nothing)
    body = await _inbox(
        world, senior, customer_id=customer_id, topic_alerts=f" {keyword}, nomatch{keyword}"
    )
    # then matching tickets gain TOPIC_ALERT_BOOST in score and order
    boost = world.settings.topic_alert_boost
    assert [(t["id"], t["smart_score"], t["matches_topic_alert"]) for t in body["tickets"]] == [
        (ids[1], 3.0 + boost, True),
        (ids[2], 2.0 + boost, True),
        (ids[0], 6.0, False),
        (ids[3], 0.5, False),
    ]
    assert body["topic_alerts_active"] == [keyword, f"nomatch{keyword}"]
    assert body["matches"] == 2
    # and without the alert the stored order is back
    plain = await _inbox(world, senior, customer_id=customer_id)
    assert [t["id"] for t in plain["tickets"]] == [ids[0], ids[1], ids[2], ids[3]]


async def test_topic_alert_keywords_are_literal_not_wildcards(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    marker = unique("x")
    customer_id, _ = await _tickets_of_one_customer(
        world, senior, [1.0, 1.0], subjects=[f"{marker} 50% off", f"{marker} 50 dollars off"]
    )
    body = await _inbox(world, senior, customer_id=customer_id, topic_alerts="50%")
    assert body["matches"] == 1
    body = await _inbox(world, senior, customer_id=customer_id, topic_alerts="5_")
    assert body["matches"] == 0


async def test_pages_split_the_ordered_list(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    customer_id, ids = await _tickets_of_one_customer(world, senior, [5.0, 4.0, 3.0, 2.0, 1.0])
    pages = [
        await _inbox(world, senior, customer_id=customer_id, limit=2, page=page)
        for page in (1, 2, 3, 4)
    ]
    assert [[t["id"] for t in p["tickets"]] for p in pages] == [ids[0:2], ids[2:4], ids[4:5], []]
    assert [(p["pagination"]["has_prev"], p["pagination"]["has_next"]) for p in pages] == [
        (False, True),
        (True, True),
        (True, False),
        (True, False),
    ]
    assert {p["pagination"]["total"] for p in pages} == {5}


async def test_filters_narrow_the_inbox(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    first = await world.create_ticket(senior, channel="chat", priority="urgent", category="billing")
    customer_id = first["customer_id"]
    second = await world.create_ticket(
        senior, customer=None, customer_id=customer_id, channel="email", priority="low"
    )
    await world.client.patch(
        f"/api/tickets/{second['id']}", json={"status": "pending"}, headers=senior.headers
    )
    unassigned = await world.create_ticket(
        world.integration, customer=None, customer_id=customer_id
    )
    cases = [
        ({"channel": "chat"}, [first["id"]]),
        ({"priority": "low"}, [second["id"]]),
        ({"status": "pending"}, [second["id"]]),
        ({"category": "Billing"}, [first["id"]]),
        ({"unassigned": "true"}, [unassigned["id"]]),
        ({"assigned_agent_id": senior.agent_id, "status": "open"}, [first["id"]]),
    ]
    for params, expected in cases:
        body = await _inbox(world, senior, customer_id=customer_id, **params)
        assert [t["id"] for t in body["tickets"]] == expected, params


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"page": 0},
        {"page": -1},
        {"page": "two"},
        {"status": "sleeping"},
        {"channel": "pigeon"},
        {"priority": "whenever"},
        {"topic_alerts": ",".join(f"k{i}" for i in range(21))},
        {"topic_alerts": "x" * 101},
    ],
)
async def test_bad_inbox_parameters_are_a_422(world: World, params: dict[str, Any]) -> None:
    response = await world.client.get(
        "/api/tickets", params=params, headers=world.agent(Role.SENIOR_AGENT).headers
    )
    assert world.problem(response, 422)["errors"]


def _plan(statement: sa.Select[Any]) -> str:
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ADMIN, TicketStatus.OPEN), (Role.ADMIN, None), (Role.AGENT, TicketStatus.OPEN)],
)
async def test_inbox_page_is_read_in_order_from_an_index(
    world: World, role: Role, status: TicketStatus | None
) -> None:
    principal = Principal(kind="agent", agent_id=unique("a-"), role=role)
    # given the page query of an inbox request
    page = inbox_statement(InboxQuery(status=status, limit=50), principal, boost=5.0)
    # when PostgreSQL plans it with sorting discouraged (tiny tables would rather sort)
    async with world.db.transaction():
        await world.db.execute("SET LOCAL enable_sort = off")
        await world.db.execute("SET LOCAL enable_seqscan = off")
        rows = await world.db.fetch(f"EXPLAIN {_plan(page)}")
    plan = "\n".join(r[0] for r in rows)
    # then an inbox index yields the rows in order: no sort step
    assert "Sort" not in plan, plan
    assert "Index Scan using ix_tickets_" in plan, plan


async def test_agents_inbox_holds_only_their_tickets(world: World) -> None:
    agent = world.agent()
    mine = await world.create_ticket(agent)
    customer_id = mine["customer_id"]
    await world.create_ticket(world.agent(), customer=None, customer_id=customer_id)
    await world.create_ticket(world.integration, customer=None, customer_id=customer_id)
    body = await _inbox(world, agent, customer_id=customer_id)
    assert [t["id"] for t in body["tickets"]] == [mine["id"]]
    assert body["pagination"]["total"] == 1


async def test_inbox_items_are_written_as_the_detail_writes_them(world: World) -> None:
    """PostgreSQL writes the page's JSON: each item must read exactly as the pydantic-written
    detail of the same ticket (timestamps with and without microseconds, numbers, nulls,
    characters JSON must escape), and the whole body must parse as Appendix B's TicketList."""
    senior = world.agent(Role.SENIOR_AGENT)
    subject = 'Quote " backslash \\ tab \t émoji 🚀 </script>'
    first = await world.create_ticket(senior, subject=subject, category="billing")
    customer_id = first["customer_id"]
    second = await world.create_ticket(senior, customer=None, customer_id=customer_id)
    await world.db.execute(  # a whole second: pydantic then writes no fraction
        "UPDATE tickets SET created_at = date_trunc('second', created_at) WHERE id = $1",
        second["id"],
    )
    await _score(world, first["id"], 3.14159)
    await world.processed(await _score(world, second["id"], 2.0))
    keyword = "émoji"
    body = await _inbox(world, senior, customer_id=customer_id, topic_alerts=keyword)
    TicketList.model_validate(body)
    assert body["topic_alerts_active"] == [keyword]
    for item in body["tickets"]:
        detail = await world.client.get(f"/api/tickets/{item['id']}", headers=senior.headers)
        expected = {name: detail.json()[name] for name in TicketSummary.model_fields}
        matched = item["id"] == first["id"]
        if matched:
            expected["smart_score"] = round(
                expected["smart_score"] + world.settings.topic_alert_boost, 2
            )
        assert item == {**expected, "matches_topic_alert": matched}
    assert [t["id"] for t in body["tickets"]] == [first["id"], second["id"]]
    assert body["tickets"][0]["subject"] == subject
    assert "." not in body["tickets"][1]["created_at"]
