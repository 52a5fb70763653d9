"""The live inbox stream against the real servers: uvicorn on a loopback port (a stream needs a
real connection), the same database, Kafka topic prefix and Redis as the session's app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from quimbi_common.enums import Role
from quimbi_common.testing import LiveStream, eventually, served_app
from quimbi_tickets.live.hub import LiveHub
from quimbi_tickets.main import build_app
from quimbi_tickets.settings import Settings

if TYPE_CHECKING:
    from conftest import World

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def live_app(settings: Settings) -> FastAPI:
    return build_app(settings.model_copy(update={"live_heartbeat_seconds": 1.0}))


@pytest.fixture(scope="module")
async def live_url(live_app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[str]:
    async with served_app(live_app) as url:
        yield url


async def test_a_caller_hanging_up_is_let_go(
    world: World, live_app: FastAPI, live_url: str
) -> None:
    hub = live_app.state.runtime.provided(LiveHub)
    async with httpx.AsyncClient(base_url=live_url) as http:
        async with LiveStream(http, "/api/tickets/live", world.agent().headers):
            assert len(hub.subscribers) == 1
        # the connection is closed: the server's stream ends and leaves the hub

        def gone() -> None:
            assert hub.subscribers == set()

        await eventually(gone, timeout=10)


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
        assert _key(mine.id) > _key(seen_by_senior.id)
        assert alice_stream.of_ticket(bobs["id"]) == []
        assert mine.json()["ticket"]["subject"] == "Alice's parcel"
        assert mine.json()["ticket"]["assigned_agent_id"] == alice.agent_id


def _key(entry_id: str | None) -> tuple[int, int]:
    assert entry_id, "an event without an id"
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def test_a_reconnect_with_last_event_id_resumes_without_gaps(
    world: World, live_url: str
) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", senior.headers) as watching,
    ):
        first = LiveStream(http, "/api/tickets/live", senior.headers)
        async with first:
            before = await world.create_ticket(world.integration, subject="before the drop")
            await first.wait_for(lambda e: e.json().get("ticket_id") == before["id"])
        resume_from = first.last_id
        assert resume_from is not None
        missed = [
            (await world.create_ticket(world.integration, subject=f"while away {n}"))["id"]
            for n in range(3)
        ]
        for ticket_id in missed:
            await watching.wait_for(lambda e, t=ticket_id: e.json().get("ticket_id") == t)
        upto = max(_key(e.id) for e in watching.events if e.id and e.event != "ready")
        headers = {**senior.headers, "Last-Event-ID": resume_from}
        async with LiveStream(http, "/api/tickets/live", headers) as again:
            await again.wait_for(lambda e: e.id is not None and _key(e.id) >= upto)
            resumed = [e.id for e in again.events if e.event != "ready" and _key(e.id) <= upto]
        continuous = [
            e.id
            for e in watching.events
            if e.event != "ready" and _key(resume_from) < _key(e.id) <= upto
        ]
        assert resumed == continuous, "the resumed stream differs from the continuous one"
        created = [e.json()["ticket_id"] for e in again.events if e.event == "ticket.created"]
        # each once; their order is Kafka's, which keeps order per ticket, not across tickets
        assert sorted(created) == sorted(missed)


async def test_a_resume_point_the_log_never_gave_is_a_reset(world: World, live_url: str) -> None:
    headers = {**world.agent().headers, "Last-Event-ID": "99999999999999-0"}
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", headers) as stream,
    ):
        assert [e.event for e in stream.events] == ["reset", "ready"]


async def test_logout_ends_the_stream(world: World, live_url: str) -> None:
    from jose import jwt

    from quimbi_common.auth import RevocationStore
    from quimbi_common.runtime import Runtime

    token = world.keys.token(Role.AGENT)
    claims = jwt.get_unverified_claims(token)
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", {"Authorization": f"Bearer {token}"}) as stream,
    ):
        runtime = Runtime(world.settings, database=False, kafka=False)
        try:
            await RevocationStore(runtime.redis).revoke(claims["jti"], claims["exp"])
        finally:
            await runtime.redis.aclose()
        end = await stream.wait_for(lambda e: e.event == "end", timeout=10)
        assert end.json() == {"reason": "revoked"}
        await stream.ended.wait()
        again = await http.get("/api/tickets/live", headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 401


async def test_the_stream_ends_when_the_token_expires(world: World, live_url: str) -> None:
    token = world.keys.token(Role.AGENT, ttl_seconds=6)  # room to connect on a loaded machine
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", {"Authorization": f"Bearer {token}"}) as stream,
    ):
        end = await stream.wait_for(lambda e: e.event == "end", timeout=20)
        assert end.json() == {"reason": "expired"}


async def test_scores_and_messages_reach_the_assignee_only(world: World, live_url: str) -> None:
    from quimbi_common.events import ScoreParts, TicketScoredData

    alice, bob = world.agent(), world.agent()
    async with (
        httpx.AsyncClient(base_url=live_url) as http,
        LiveStream(http, "/api/tickets/live", alice.headers) as alice_stream,
        LiveStream(http, "/api/tickets/live", bob.headers) as bob_stream,
    ):
        ticket = await world.create_ticket(alice)
        parts = ScoreParts(priority=1, wait=0.5, sentiment=0, value=1, churn=0.3)
        await world.publish(
            "ticket.scored",
            TicketScoredData(
                ticket_id=ticket["id"],
                smart_score=2.8,
                parts=parts,
                computed_at=ticket["created_at"],
                version=1,
            ),
        )
        reply = await world.client.post(
            f"/api/tickets/{ticket['id']}/messages",
            json={"content": "On its way!"},
            headers=alice.headers,
        )
        assert reply.status_code == 201, reply.text
        scored = await alice_stream.wait_for(lambda e: e.event == "ticket.scored")
        assert scored.json()["score"]["parts"]["churn"] == 0.3
        assert scored.json()["assigned_agent_id"] == alice.agent_id
        said = await alice_stream.wait_for(lambda e: e.event == "message.added")
        assert said.json()["message"]["preview"] == "On its way!"
        bobs = await world.create_ticket(bob)  # a later entry: Bob was handed what came before
        await bob_stream.wait_for(lambda e: e.json().get("ticket_id") == bobs["id"])
        assert bob_stream.of_ticket(ticket["id"]) == []


async def test_bad_resume_points_and_missing_credentials_are_4xx(
    world: World, live_url: str
) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        bad = await http.get(
            "/api/tickets/live", headers={**world.agent().headers, "Last-Event-ID": "yesterday"}
        )
        world.problem(bad, 422)
        world.problem(
            await http.get("/api/tickets/live?since=1-x", headers=world.agent().headers), 422
        )
        world.problem(await http.get("/api/tickets/live"), 401)
        world.problem(await http.get("/api/tickets/live", headers=world.integration.headers), 403)


async def test_streams_are_bounded_per_agent_and_per_process(
    world: World, live_app: FastAPI, live_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = live_app.state.runtime.provided(Settings)
    per_agent = settings.live_max_streams_per_agent
    alice, bob = world.agent(), world.agent()
    async with httpx.AsyncClient(base_url=live_url) as http:
        streams = [LiveStream(http, "/api/tickets/live", alice.headers) for _ in range(per_agent)]
        for stream in streams:
            await stream.__aenter__()
        try:
            one_more = await http.get("/api/tickets/live", headers=alice.headers)
            assert one_more.status_code == 429, one_more.text
            assert one_more.headers["content-type"] == "application/problem+json"
            assert one_more.headers["retry-after"] == "5"
            async with LiveStream(http, "/api/tickets/live", bob.headers):
                pass  # another agent is not held back by Alice's streams

            monkeypatch.setattr(settings, "live_max_streams", per_agent)
            full = await http.get("/api/tickets/live", headers=bob.headers)
            assert full.status_code == 503, full.text
            assert full.headers["retry-after"] == "5"
            monkeypatch.undo()
        finally:
            await streams.pop().close()
        # one of Alice's closed: once the server lets it go, she may open another
        hub = live_app.state.runtime.provided(LiveHub)

        def room_again() -> None:
            assert hub.streams_of(alice.agent_id) == per_agent - 1

        await eventually(room_again, timeout=10)
        async with LiveStream(http, "/api/tickets/live", alice.headers) as again:
            assert again.status == 200
        for stream in streams:
            await stream.close()
