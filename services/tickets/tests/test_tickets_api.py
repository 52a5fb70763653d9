"""Tickets through the API: creation, detail, updates, status rules, deletion, customers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quimbi_common.auth import Principal
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import Role
from quimbi_common.testing import unique
from quimbi_tickets import api, service

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.service


async def test_agent_creates_a_ticket_that_is_theirs_with_its_first_message(world: World) -> None:
    # given an agent
    agent = world.agent()
    email = f"{unique('Jo')}@Example.com"
    # when they create a ticket for a new customer with an angry first message
    ticket = await world.create_ticket(
        agent,
        customer={"email": email, "name": "Jo Bloggs"},
        subject="Payment not processing",
        priority="high",
        category="Billing",
        message={"content": "This is terrible, my card was charged twice!", "from_agent": False},
    )
    # then the ticket is open, theirs, and carries its customer and message
    assert ticket["status"] == "open"
    assert ticket["assigned_agent_id"] == agent.agent_id
    assert ticket["created_by_agent_id"] == agent.agent_id
    assert ticket["category"] == "billing"
    assert ticket["version"] == 1
    assert ticket["customer"]["email"] == email.lower()
    assert ticket["customer"] == {
        "id": ticket["customer_id"],
        "email": email.lower(),
        "name": "Jo Bloggs",
        "lifetime_value": 0.0,
        "churn_risk": 0.0,
    }
    [message] = ticket["messages"]
    assert message["from_agent"] is False
    assert message["author_agent_id"] is None
    assert message["from_email"] == email.lower()
    assert message["sentiment_score"] < 0.5
    assert message["detected_intent"] == "complaint"
    assert ticket["customer_sentiment"] == message["sentiment_score"]
    assert 0.0 <= ticket["estimated_difficulty"] <= 1.0
    assert ticket["sla"] is None
    # and ticket.created (with the creator as assignee) and message.added are published
    created = await world.event("ticket.created", id=ticket["id"])
    assert created["data"]["assigned_agent_id"] == agent.agent_id
    assert created["data"]["version"] == 1
    assert created["data"]["customer"]["email"] == email.lower()
    assert created["source"] == f"/services/{world.settings.service_name}"
    added = await world.event("message.added", ticket_id=ticket["id"])
    assert added["data"]["ticket_status"] == "open"
    assert added["data"]["id"] == message["id"]


async def test_integration_key_creates_unassigned_tickets_and_reuses_customers_by_email(
    world: World,
) -> None:
    # given a customer known by email
    email = f"{unique('sam')}@example.com"
    first = await world.create_ticket(world.integration, customer={"email": email})
    # when the integration key files another ticket with the same email in another case
    second = await world.create_ticket(
        world.integration,
        customer={"email": email.upper(), "name": "Sam"},
        message={"content": "Where is my order?"},
    )
    # then both belong to the same customer, are unassigned, and the message is the customer's
    assert second["customer_id"] == first["customer_id"]
    assert second["customer"]["name"] == "Sam"
    stored_name = "SELECT name FROM customers WHERE id = $1"
    assert await world.db.fetchval(stored_name, first["customer_id"]) == "Sam"
    assert first["assigned_agent_id"] is None
    assert second["assigned_agent_id"] is None
    assert second["messages"][0]["from_agent"] is False
    assert second["messages"][0]["detected_intent"] == "question"


async def test_ticket_for_an_existing_customer_id(world: World) -> None:
    agent = world.agent()
    first = await world.create_ticket(agent)
    second = await world.create_ticket(agent, customer=None, customer_id=first["customer_id"])
    assert second["customer"]["id"] == first["customer_id"]


async def test_customer_can_be_created_with_an_external_id(world: World) -> None:
    external_id = unique("shopify_")
    ticket = await world.create_ticket(
        world.integration, customer={"email": f"{external_id}@example.com", "id": external_id}
    )
    assert ticket["customer_id"] == external_id
    clash = await world.client.post(
        "/api/tickets",
        json={
            "customer": {"email": f"other-{external_id}@example.com", "id": external_id},
            "subject": "Hello",
            "channel": "chat",
        },
        headers=world.integration.headers,
    )
    world.problem(clash, 409)


async def test_only_senior_agents_assign_a_new_ticket_to_someone_else(world: World) -> None:
    other = unique("agent-")
    body = {
        "customer": {"email": f"{unique('c')}@example.com"},
        "subject": "Help",
        "channel": "chat",
        "assigned_agent_id": other,
    }
    refused = await world.client.post("/api/tickets", json=body, headers=world.agent().headers)
    world.problem(refused, 403)
    refused = await world.client.post("/api/tickets", json=body, headers=world.integration.headers)
    world.problem(refused, 403)
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior, assigned_agent_id=other)
    assert ticket["assigned_agent_id"] == other


async def test_integration_key_may_only_create_tickets_and_post_customer_messages(
    world: World,
) -> None:
    ticket = await world.create_ticket(world.agent(Role.SENIOR_AGENT))
    key = world.integration.headers
    tid = ticket["id"]
    for method, path, body in [
        ("GET", "/api/tickets", None),
        ("GET", f"/api/tickets/{tid}", None),
        ("PATCH", f"/api/tickets/{tid}", {"status": "pending"}),
        ("DELETE", f"/api/tickets/{tid}", None),
        ("GET", f"/api/tickets/{tid}/messages", None),
        ("POST", f"/api/tickets/{tid}/messages", {"content": "hi", "from_agent": True}),
        ("GET", f"/api/customers/{ticket['customer_id']}", None),
    ]:
        response = await world.client.request(method, path, json=body, headers=key)
        world.problem(response, 403)
    posted = await world.client.post(
        f"/api/tickets/{tid}/messages", json={"content": "Any news?"}, headers=key
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["from_agent"] is False


async def test_requests_without_credentials_are_refused(world: World) -> None:
    response = await world.client.get("/api/tickets")
    world.problem(response, 401)
    response = await world.client.post(
        "/api/tickets", json={}, headers={"X-API-Key": "not-the-key"}
    )
    world.problem(response, 401)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"priority": "critical"}, "priority"),
        ({"channel": "fax"}, "channel"),
        ({"subject": "x" * 501}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"customer": {"email": "not-an-email"}}, "email"),
        ({"customer_id": "cust_x"}, "body"),  # both customer and customer_id
        ({"customer": None}, "body"),  # neither
        ({"message": {"content": "x" * (64 * 1024 + 1)}}, "content"),
        ({"message": {"content": "é" * (32 * 1024 + 1)}}, "content"),  # bytes, not characters
        ({"message": {"content": "hi", "from_email": "nope"}}, "from_email"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_ticket_input_is_a_422_naming_the_field(
    world: World, change: dict[str, object], field: str
) -> None:
    body = {
        "customer": {"email": f"{unique('c')}@example.com"},
        "subject": "Help",
        "channel": "email",
        **change,
    }
    response = await world.client.post("/api/tickets", json=body, headers=world.agent().headers)
    problem = world.problem(response, 422)
    assert field in str(problem["errors"])


async def test_content_of_exactly_64_kib_is_accepted(world: World) -> None:
    ticket = await world.create_ticket(world.agent(), message={"content": "a" * 64 * 1024})
    assert len(ticket["messages"][0]["content"]) == 64 * 1024


async def test_unknown_customer_id_is_a_422(world: World) -> None:
    body = {"customer_id": unique("cust_"), "subject": "Help", "channel": "email"}
    response = await world.client.post("/api/tickets", json=body, headers=world.agent().headers)
    assert world.problem(response, 422)["errors"][0]["loc"] == ["body", "customer_id"]


async def test_unknown_ticket_is_a_404_everywhere(world: World) -> None:
    headers = world.agent(Role.ADMIN).headers
    missing = unique("ticket_")
    for method, path, body in [
        ("GET", f"/api/tickets/{missing}", None),
        ("PATCH", f"/api/tickets/{missing}", {"priority": "low"}),
        ("DELETE", f"/api/tickets/{missing}", None),
        ("GET", f"/api/tickets/{missing}/messages", None),
        ("POST", f"/api/tickets/{missing}/messages", {"content": "hello"}),
        ("GET", f"/api/customers/{unique('cust_')}", None),
    ]:
        response = await world.client.request(method, path, json=body, headers=headers)
        world.problem(response, 404)


async def test_update_publishes_the_changed_fields_with_their_previous_values(
    world: World,
) -> None:
    # given a ticket
    agent = world.agent()
    ticket = await world.create_ticket(agent, priority="low")
    # when the agent changes its priority, subject and status
    response = await world.client.patch(
        f"/api/tickets/{ticket['id']}",
        json={"priority": "urgent", "subject": "Parcel lost", "status": "in_progress"},
        headers=agent.headers,
    )
    # then the ticket has a new version and ticket.updated tells what changed
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["priority"], updated["status"], updated["version"]) == (
        "urgent",
        "in_progress",
        2,
    )
    assert updated["updated_at"] > ticket["updated_at"]
    event = await world.event("ticket.updated", id=ticket["id"], version=2)
    changes = event["data"]["changes"]
    assert changes["priority"] == {"old": "low", "new": "urgent"}
    assert changes["status"] == {"old": "open", "new": "in_progress"}
    assert changes["subject"] == {"old": "Where is my parcel", "new": "Parcel lost"}


async def test_update_without_a_change_keeps_the_version(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent, priority="high")
    response = await world.client.patch(
        f"/api/tickets/{ticket['id']}", json={"priority": "high"}, headers=agent.headers
    )
    assert response.json()["version"] == 1


@pytest.mark.parametrize(
    "body", [{"status": "stuck"}, {"subject": None}, {"assigned_agent_id": "someone"}]
)
async def test_bad_update_is_a_422(world: World, body: dict[str, object]) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    response = await world.client.patch(
        f"/api/tickets/{ticket['id']}", json=body, headers=agent.headers
    )
    world.problem(response, 422)


async def test_status_moves_along_the_documented_transitions(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    path = f"/api/tickets/{ticket['id']}"
    for status in ["in_progress", "pending", "open", "resolved", "open", "resolved", "closed"]:
        response = await world.client.patch(path, json={"status": status}, headers=agent.headers)
        assert response.status_code == 200, (status, response.text)
        assert response.json()["status"] == status


@pytest.mark.parametrize(
    ("path", "illegal"),
    [(["resolved"], "pending"), (["resolved"], "in_progress"), (["closed"], "open")],
)
async def test_illegal_status_change_is_a_409(world: World, path: list[str], illegal: str) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent)
    url = f"/api/tickets/{ticket['id']}"
    for status in path:
        assert (
            await world.client.patch(url, json={"status": status}, headers=agent.headers)
        ).is_success
    response = await world.client.patch(url, json={"status": illegal}, headers=agent.headers)
    problem = world.problem(response, 409)
    assert "allowed" in problem
    assert (await world.client.get(url, headers=agent.headers)).json()["status"] == path[-1]


async def test_agents_see_only_their_own_tickets_and_seniors_see_all(world: World) -> None:
    # given a ticket of one agent
    owner, other = world.agent(), world.agent()
    ticket = await world.create_ticket(owner)
    url = f"/api/tickets/{ticket['id']}"
    # then another agent cannot see it anywhere: 404, not 403
    for method, path, body in [
        ("GET", url, None),
        ("PATCH", url, {"priority": "low"}),
        ("GET", f"{url}/messages", None),
        ("POST", f"{url}/messages", {"content": "hello"}),
    ]:
        response = await world.client.request(method, path, json=body, headers=other.headers)
        world.problem(response, 404)
    listed = await world.client.get(
        "/api/tickets", params={"customer_id": ticket["customer_id"]}, headers=other.headers
    )
    assert listed.json()["tickets"] == []
    # while the owner and a senior agent can
    for viewer in (owner, world.agent(Role.SENIOR_AGENT)):
        assert (await world.client.get(url, headers=viewer.headers)).status_code == 200
        listed = await world.client.get(
            "/api/tickets", params={"customer_id": ticket["customer_id"]}, headers=viewer.headers
        )
        assert [t["id"] for t in listed.json()["tickets"]] == [ticket["id"]]


async def test_only_an_admin_deletes_a_ticket(world: World) -> None:
    # given a ticket with a message
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior, message={"content": "hello"})
    url = f"/api/tickets/{ticket['id']}"
    # when a manager tries, it is refused
    world.problem(await world.client.delete(url, headers=world.agent(Role.MANAGER).headers), 403)
    # when an admin deletes it
    admin = world.agent(Role.ADMIN)
    response = await world.client.delete(url, headers=admin.headers)
    # then it is gone and ticket.deleted is published
    assert response.status_code == 204
    world.problem(await world.client.get(url, headers=admin.headers), 404)
    event = await world.event("ticket.deleted", id=ticket["id"])
    assert event["data"]["version"] == 2
    assert event["data"]["deleted_by"] == admin.agent_id
    count = await world.db.fetchval(
        "SELECT count(*) FROM messages WHERE ticket_id = $1", ticket["id"]
    )
    assert count == 0


async def test_customer_shows_value_churn_and_recent_visible_tickets(world: World) -> None:
    # given a customer with tickets of two agents
    owner, other = world.agent(), world.agent()
    first = await world.create_ticket(owner)
    customer_id = first["customer_id"]
    await world.create_ticket(other, customer=None, customer_id=customer_id)
    # then a senior agent sees both tickets, each agent only their own
    senior_view = await world.client.get(
        f"/api/customers/{customer_id}", headers=world.agent(Role.SENIOR_AGENT).headers
    )
    assert senior_view.status_code == 200
    body = senior_view.json()
    assert len(body["recent_tickets"]) == 2
    assert body["lifetime_value"] == 0.0
    assert body["churn_risk"] == 0.0
    owner_view = await world.client.get(f"/api/customers/{customer_id}", headers=owner.headers)
    assert [t["id"] for t in owner_view.json()["recent_tickets"]] == [first["id"]]
    # and an agent with no ticket of theirs does not see the customer at all
    stranger = await world.client.get(
        f"/api/customers/{customer_id}", headers=world.agent().headers
    )
    world.problem(stranger, 404)


async def test_detail_is_written_as_pydantic_writes_it(world: World) -> None:
    """PostgreSQL writes the detail's JSON: it must read exactly as pydantic writes the
    `TicketDetail` of the same rows (timestamps with and without microseconds, numbers, nulls,
    the SLA summary, messages oldest first with their attachments, characters JSON escapes)."""
    # given a ticket with a customer and an agent message, an attachment, a score and SLA clocks
    senior = world.agent(Role.SENIOR_AGENT)
    subject = 'Quote " backslash \\ tab \t émoji 🚀 </script>'
    ticket = await world.create_ticket(
        senior, subject=subject, message={"content": "Still waiting 😞", "from_agent": False}
    )
    ticket_id = ticket["id"]
    reply = await world.client.post(
        f"/api/tickets/{ticket_id}/messages",
        json={"content": "On its way\nline two"},
        headers=senior.headers,
    )
    assert reply.status_code == 201, reply.text
    first_message = ticket["messages"][0]["id"]
    await world.db.execute(
        "INSERT INTO attachments (id, ticket_id, message_id, filename, content_type,"
        " size_bytes, sha256, storage_key, created_at)"
        " VALUES ($1, $2, $3, 'receipt.pdf', 'application/pdf', 1234, repeat('a', 64), $1,"
        " date_trunc('second', now()))",
        unique("att_"),
        ticket_id,
        first_message,
    )
    await world.db.execute(
        "UPDATE tickets SET smart_score = 3.14, score_version = 1, sla_version = 2,"
        " sla_first_response_status = 'met', sla_resolution_status = 'pending',"
        " sla_first_response_deadline = date_trunc('second', now()),"
        " sla_first_response_at = now(), sla_resolution_deadline = now() + interval '1 day',"
        " sla_total_paused_seconds = 90 WHERE id = $1",
        ticket_id,
    )
    await world.db.execute(
        "UPDATE customers SET lifetime_value = 12.5, churn_risk_score = 0.37 WHERE id = $1",
        ticket["customer_id"],
    )
    # when the detail is read
    response = await world.client.get(f"/api/tickets/{ticket_id}", headers=senior.headers)
    # then it is what pydantic writes from the ORM rows
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    engine = create_engine(world.settings)
    try:
        async with create_sessionmaker(engine)() as session:
            caller = Principal(kind="agent", agent_id=senior.agent_id, role=Role.SENIOR_AGENT)
            row = await service.load_ticket(session, caller, ticket_id)
            messages = await service.ticket_messages(session, ticket_id)
            expected = api._detail(service.TicketView(row, messages)).model_dump(mode="json")
    finally:
        await engine.dispose()
    detail = response.json()
    assert detail == expected
    assert len(detail["messages"]) == 2
    assert detail["messages"][0]["attachments"][0]["filename"] == "receipt.pdf"
    assert detail["sla"]["first_response_status"] == "met"
    assert detail["subject"] == subject
