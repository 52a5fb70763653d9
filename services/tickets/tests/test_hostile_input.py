"""Hostile input (issue #13): NUL characters, huge integers and broken JSON are a 4xx, never 500."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import assert_problem, unique

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.service

NUL = "\u0000"


def _ticket(**fields: Any) -> dict[str, Any]:
    return {
        "customer": {"email": f"{unique('c')}@example.com", "name": "Casey"},
        "subject": "Where is my parcel",
        "channel": "email",
        **fields,
    }


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("subject", _ticket(subject=f"Where{NUL}")),
        ("category", _ticket(category=f"bill{NUL}ing")),
        ("name", _ticket(customer={"email": "nul@example.com", "name": f"Ca{NUL}sey"})),
        ("email", _ticket(customer={"email": f"n{NUL}ul@example.com"})),
        ("id", _ticket(customer={"email": "nul@example.com", "id": f"c{NUL}"})),
        ("customer_id", {**_ticket(customer_id=f"c{NUL}"), "customer": None}),
        ("content", _ticket(message={"content": f"hello {NUL} there"})),
        ("from_name", _ticket(message={"content": "hello", "from_name": NUL})),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_a_nul_in_any_field_of_a_new_ticket_is_422(
    world: World, field: str, body: dict[str, Any]
) -> None:
    # when a ticket arrives with a NUL in one of its text fields
    response = await world.client.post("/api/tickets", json=body, headers=world.agent().headers)
    # then it is a field error naming that field, and nothing is stored
    problem = assert_problem(response, 422)
    assert any(field in error["loc"] for error in problem["errors"]), problem


async def test_a_nul_in_an_update_or_a_message_is_422(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(agent, message={"content": "first"})
    ticket_url = f"/api/tickets/{ticket['id']}"
    message_url = f"{ticket_url}/messages/{ticket['messages'][0]['id']}"
    for method, url, body in [
        ("PATCH", ticket_url, {"subject": NUL}),
        ("PATCH", ticket_url, {"category": f"a{NUL}"}),
        ("POST", f"{ticket_url}/messages", {"content": f"a{NUL}"}),
        ("PATCH", message_url, {"content": f"{NUL}edited"}),
    ]:
        response = await world.client.request(method, url, json=body, headers=agent.headers)
        assert_problem(response, 422)
    # and the ticket is unchanged
    again = await world.client.get(ticket_url, headers=agent.headers)
    assert again.json()["version"] == ticket["version"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tickets/a%00b"),
        ("DELETE", "/api/tickets/a%00b"),
        ("GET", "/api/tickets/a%00b/messages"),
        ("DELETE", "/api/tickets/a%00b/messages/m%00"),
        ("GET", "/api/customers/a%00b"),
    ],
)
async def test_a_nul_in_a_path_segment_is_422(world: World, method: str, path: str) -> None:
    response = await world.client.request(method, path, headers=world.agent(Role.ADMIN).headers)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path"]


@pytest.mark.parametrize(
    "query",
    ["topic_alerts=a%00", "topic_alerts=refund,%00", "category=%00", "customer_id=a%00"],
)
async def test_a_nul_in_a_query_value_is_422(world: World, query: str) -> None:
    response = await world.client.get(
        f"/api/tickets?{query}", headers=world.agent(Role.ADMIN).headers
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query"]


@pytest.mark.parametrize(
    "query", ["page=10000000000000000000", "page=100001", "limit=101", "limit=99999999999999999999"]
)
async def test_pages_beyond_the_bounds_are_422(world: World, query: str) -> None:
    response = await world.client.get(
        f"/api/tickets?{query}", headers=world.agent(Role.ADMIN).headers
    )
    assert_problem(response, 422)


async def test_a_body_that_is_not_json_is_400(world: World) -> None:
    response = await world.client.post(
        "/api/tickets",
        content=b'{"subject": "x",',
        headers={**world.agent().headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400)
