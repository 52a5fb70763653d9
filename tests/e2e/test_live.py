"""The live inbox through the gateway (issue 19 items 7 and 8): visibility, resume after a
reconnect without gaps, logout ending the stream, and the `/live` page in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Browser
from launcher import Suite
from support import PASSWORD, Agent, ExternalStack

from quimbi_common.testing import LiveStream, SseEvent, unique

pytestmark = pytest.mark.e2e

LIVE = "/api/tickets/live"


async def create_ticket(gateway: httpx.AsyncClient, agent: Agent, **fields: Any) -> dict[str, Any]:
    body = {
        "customer": {"email": f"{unique('live-')}@example.com", "name": "Lee Live"},
        "subject": "Where is my parcel",
        "channel": "email",
        "message": {"content": "It has been a week.", "from_agent": False},
        **fields,
    }
    response = await gateway.post("/api/tickets", json=body, headers=agent.headers)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def _key(entry_id: str | None) -> tuple[int, int]:
    assert entry_id, "an event without an id"
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _created(ticket_id: str) -> Any:
    return lambda e: e.event == "ticket.created" and e.json()["ticket_id"] == ticket_id


async def test_an_agent_is_streamed_only_the_tickets_they_may_see(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    alice, bob, senior = await make_agent(), await make_agent(), await make_agent("senior_agent")
    async with (
        LiveStream(gateway, LIVE, alice.headers) as alice_stream,
        LiveStream(gateway, LIVE, senior.headers) as senior_stream,
    ):
        bobs = await create_ticket(gateway, bob, subject="Bob's own ticket")
        bobs_entry = await senior_stream.wait_for(_created(bobs["id"]))
        alices = await create_ticket(gateway, alice, subject="Alice's own ticket")
        mine = await alice_stream.wait_for(_created(alices["id"]))
        # the hub hands entries over in log order: Alice passed Bob's entry without getting it
        assert _key(mine.id) > _key(bobs_entry.id)
        assert alice_stream.of_ticket(bobs["id"]) == []
        await senior_stream.wait_for(_created(alices["id"]))  # a senior agent gets both
        # scores (computed by scoring, a service away) reach the assignee too, breakdown included
        scored = await alice_stream.wait_for(
            lambda e: e.event == "ticket.scored" and e.json()["ticket_id"] == alices["id"]
        )
        assert set(scored.json()["score"]["parts"]) >= {"priority", "wait", "churn"}


async def test_a_reconnect_resumes_without_gaps(
    gateway: httpx.AsyncClient, make_agent: Any
) -> None:
    senior = await make_agent("senior_agent")
    async with LiveStream(gateway, LIVE, senior.headers) as watching:
        async with LiveStream(gateway, LIVE, senior.headers) as first:
            before = await create_ticket(gateway, senior, subject="before the drop")
            await first.wait_for(_created(before["id"]))
        resume_from = first.last_id
        missed = [
            (await create_ticket(gateway, senior, subject=f"while away {n}"))["id"]
            for n in range(3)
        ]
        for ticket_id in missed:
            await watching.wait_for(_created(ticket_id))
        upto = max(_key(e.id) for e in watching.events if e.id and e.event != "ready")
        headers = {**senior.headers, "Last-Event-ID": str(resume_from)}
        async with LiveStream(gateway, LIVE, headers) as again:
            await again.wait_for(lambda e: e.id is not None and _key(e.id) >= upto)

        def after_drop(events: list[SseEvent]) -> list[str | None]:
            return [
                e.id
                for e in events
                if e.event != "ready" and _key(resume_from) < _key(e.id) <= upto
            ]

        assert after_drop(again.events) == after_drop(watching.events)
        created = [e.json()["ticket_id"] for e in again.events if e.event == "ticket.created"]
        # each once; their order is Kafka's, which keeps order per ticket, not across tickets
        assert sorted(t for t in created if t in missed) == sorted(missed)


async def test_logout_ends_the_stream(gateway: httpx.AsyncClient, make_agent: Any) -> None:
    agent = await make_agent()
    async with LiveStream(gateway, LIVE, agent.headers) as stream:
        out = await gateway.post("/api/agents/logout", headers=agent.headers)
        assert out.status_code == 204, out.text
        end = await stream.wait_for(lambda e: e.event == "end", timeout=15)
        assert end.json() == {"reason": "revoked"}
        await stream.ended.wait()  # the gateway closed the caller's stream too
    assert (await gateway.get(LIVE, headers=agent.headers)).status_code == 401


async def test_the_live_page_shows_a_new_ticket_and_its_score_breakdown(
    suite: Suite | ExternalStack, gateway: httpx.AsyncClient, make_agent: Any, tmp_path: Path
) -> None:
    agent = await make_agent()
    async with Browser(tmp_path) as browser:
        page = await browser.open(f"{suite.gateway_url}/live")
        await page.wait_for("document.getElementById('login-button') !== null")
        await page.evaluate(
            f"""(() => {{
              document.getElementById('email').value = {json.dumps(agent.email)};
              document.getElementById('password').value = {json.dumps(PASSWORD)};
              document.getElementById('login-button').click();
            }})()"""
        )
        await page.wait_for("document.getElementById('status').dataset.state === 'live'")
        subject = f"Live page {unique()}"
        ticket = await create_ticket(gateway, agent, subject=subject, priority="urgent")
        row = f"document.querySelector('tr[data-ticket-id=\"{ticket['id']}\"]')"
        await page.wait_for(f"{row} && {row}.innerText.includes({json.dumps(subject)})")
        # once scoring has reported, the row shows the score; hovering shows the breakdown
        await page.wait_for(f"!{row}.querySelector('td.score').classList.contains('pending')")
        await page.evaluate(f"{row}.dispatchEvent(new MouseEvent('mouseenter'))")
        tooltip = await page.wait_for(
            "(() => { const b = document.getElementById('breakdown');"
            " return b.style.display === 'block' && b.innerText.includes('churn')"
            " && b.innerText; })()"
        )
        assert "priority" in tooltip
        assert subject in tooltip
