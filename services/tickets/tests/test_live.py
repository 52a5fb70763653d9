"""The live inbox stream against the real servers: uvicorn on a loopback port (a stream needs a
real connection), the same database, Kafka topic prefix and Redis as the session's app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from quimbi_common.enums import Role
from quimbi_common.testing import LiveStream, served_app
from quimbi_tickets.main import build_app
from quimbi_tickets.settings import Settings

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
async def live_url(settings: Settings, client: httpx.AsyncClient) -> AsyncIterator[str]:
    quick = settings.model_copy(update={"live_heartbeat_seconds": 1.0})
    async with served_app(build_app(quick)) as url:
        yield url


async def test_an_agent_sees_only_their_own_tickets_a_senior_sees_all(
    world: World, live_url: str
) -> None:
    alice, bob, senior = world.agent(), world.agent(), world.agent(Role.SENIOR_AGENT)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", alice.headers) as alice_stream,
        LiveStream(http, "/api/tickets/live", senior.headers) as senior_stream,
    ):
        bobs = await world.create_ticket(bob, subject="Bob's parcel")
        seen_by_senior = await senior_stream.wait_for(
            lambda e: e.event == "ticket.created" and e.json()["ticket_id"] == bobs["id"]
        )
        alices = await world.create_ticket(alice, subject="Alice's parcel")
        mine = await alice_stream.wait_for(
            lambda e: e.event == "ticket.created" and e.json()["ticket_id"] == alices["id"]
        )
        # The log is read in order: Alice was handed everything after Bob's entry, not it.
        assert mine.id and seen_by_senior.id
        assert tuple(map(int, mine.id.split("-"))) > tuple(map(int, seen_by_senior.id.split("-")))
        assert alice_stream.of_ticket(bobs["id"]) == []
        assert mine.json()["ticket"]["subject"] == "Alice's parcel"
        assert mine.json()["ticket"]["assigned_agent_id"] == alice.agent_id
