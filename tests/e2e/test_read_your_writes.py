"""Read-your-writes through the gateway (issue 14): every follow-up of a 2xx that depends on it
behaves as if the write were already visible everywhere, with no sleep in between.

Each round creates a ticket and follows it up at once, on every route whose service learns of
tickets from events: accept, assignment history (agents), SLA read, pause, resume (sla), score
breakdown (scoring), draft and recommendation (ai-proxy), and the ticket's own detail and list
item (score and SLA shown, or marked pending). In the same round a senior assigns an older
ticket to the agent, who opens it at once (detail, SLA, score): tickets, sla and scoring learn
of the new assignee only from events, and an `agent` sees only its own tickets. Then the same
against a suite running two replicas of each projecting service (agents, sla, scoring) behind
the gateway, which sends each request to the next replica, so the replica answering is often
not the one that consumed.

Then changes to tickets every service already holds (priority, assignee, a reply, status):
each follow-up sends back the write's `X-Consistency-Token` and must see the change, with one
and with two replicas: 200 rounds by default (`E2E_RYW_TOKEN_ROUNDS`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from launcher import Suite
from support import ADMIN, GATEWAY_LIMITS, PASSWORD, RYW_ENV, Agent, ExternalStack, login

from quimbi_common.consistency import HEADER
from quimbi_common.testing import unique

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("E2E_RYW_ROUNDS", "200"))
CONCURRENT_ROUNDS = int(os.environ.get("E2E_RYW_CONCURRENCY", "2"))
OLD_ENOUGH_SECONDS = 2.5
REPLICATED = {"agents": 2, "sla": 2, "scoring": 2}
Check = Callable[[Any], bool]


@dataclass
class Team:
    agent: Agent
    senior: Agent
    customer_id: str


async def _agent(gateway: httpx.AsyncClient, admin: Agent, role: str) -> Agent:
    email = f"{unique(role.replace('_', '-') + '-ryw-')}@example.com"
    body = {"email": email, "password": PASSWORD, "name": f"RYW {role}", "role": role}
    response = await gateway.post("/api/agents", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return Agent(response.json()["id"], email, role, await login(gateway, email, PASSWORD))


async def _team(gateway: httpx.AsyncClient) -> Team:
    token = await login(gateway, ADMIN["email"], ADMIN["password"])
    me = (await gateway.get("/api/agents/me", headers={"Authorization": f"Bearer {token}"})).json()
    admin = Agent(me["id"], ADMIN["email"], "admin", token)
    agent, senior = (
        await _agent(gateway, admin, "agent"),
        await _agent(gateway, admin, "senior_agent"),
    )
    first = await _create(gateway, senior, customer={"email": f"{unique('ryw-')}@example.com"})
    return Team(agent, senior, first["customer_id"])


async def _create(gateway: httpx.AsyncClient, by: Agent, **fields: Any) -> dict[str, Any]:
    body = {"subject": "Refund not received", "priority": "urgent", "channel": "email", **fields}
    response = await gateway.post("/api/tickets", json=body, headers=by.headers)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def _expect(
    label: str, call: Awaitable[httpx.Response], status: int, check: Check
) -> list[str]:
    """[] when the answer has the status and passes the check, else what went wrong."""
    response = await call
    if response.status_code != status:
        return [f"{label}: {response.status_code} {response.text[:200]}"]
    if not check(response.json()):
        return [f"{label}: stale answer {response.text[:300]}"]
    return []


def _detail_is_honest(ticket: dict[str, Any]) -> bool:
    """The score is there or marked pending; so is the SLA (never a bare 0 or null)."""
    score_ok = ticket["score_status"] == "scored" or (
        ticket["score_status"] == "pending" and ticket["smart_score"] == 0
    )
    sla_ok = (ticket["sla_status"] == "tracked" and ticket["sla"] is not None) or (
        ticket["sla_status"] == "pending" and ticket["sla"] is None
    )
    return score_ok and sla_ok


async def _round(gateway: httpx.AsyncClient, team: Team, held: str) -> list[str]:
    """A new ticket followed up at once on every route; a new and an older ticket (`held`) of
    the senior's assigned to the agent at once, who opens each at once."""
    fresh = (await _create(gateway, team.senior, customer_id=team.customer_id))["id"]
    outcomes = await asyncio.gather(
        _new_ticket(gateway, team),
        _transfer(gateway, team, fresh, "new ticket "),
        _transfer(gateway, team, held, "older ticket "),
    )
    return [failure for outcome in outcomes for failure in outcome]


async def _new_ticket(gateway: httpx.AsyncClient, team: Team) -> list[str]:
    agent = team.agent
    # a new customer's only ticket: the agent's list filtered by customer shows just this one
    ticket = await _create(gateway, agent, customer={"email": f"{unique('ryw-')}@example.com"})
    tid = ticket["id"]
    path = f"/api/tickets/{tid}"

    async def pause_then_resume() -> list[str]:
        paused = await _expect(
            "sla/pause",
            gateway.post(f"{path}/sla/pause", headers=agent.headers),
            200,
            lambda b: b["is_paused"] is True,
        )
        if paused:
            return paused
        return await _expect(
            "sla/resume",
            gateway.post(f"{path}/sla/resume", headers=agent.headers),
            200,
            lambda b: b["is_paused"] is False,
        )

    outcomes = await asyncio.gather(
        _expect(
            "assignment/accept",
            gateway.post(f"{path}/assignment/accept", headers=agent.headers),
            200,
            lambda b: b["status"] == "accepted" and b["agent_id"] == agent.id,
        ),
        _expect(
            "assignments",
            gateway.get(f"{path}/assignments", headers=agent.headers),
            200,
            lambda b: [a["agent_id"] for a in b["assignments"]] == [agent.id],
        ),
        _expect(
            "sla",
            gateway.get(f"{path}/sla", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == tid and b["priority"] == "urgent",
        ),
        pause_then_resume(),
        _expect(
            "score-breakdown",
            gateway.get(f"{path}/score-breakdown", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == tid and b["parts"]["priority"]["points"] == 4,
        ),
        _expect(
            "draft-response",
            gateway.get(f"/api/ai/tickets/{tid}/draft-response", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == tid and bool(b["draft_content"]),
        ),
        _expect(
            "recommendation",
            gateway.get(f"/api/ai/tickets/{tid}/recommendation", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == tid,
        ),
        _expect("detail", gateway.get(path, headers=agent.headers), 200, _detail_is_honest),
        _expect(
            "list",
            gateway.get(
                "/api/tickets",
                params={"customer_id": ticket["customer_id"]},
                headers=agent.headers,
            ),
            200,
            lambda b: [t["id"] for t in b["tickets"]] == [tid] and _item_is_honest(b["tickets"][0]),
        ),
    )
    return [failure for outcome in outcomes for failure in outcome]


def _item_is_honest(item: dict[str, Any]) -> bool:
    """A list item's score is there or marked pending (never a bare 0); so is its SLA."""
    score_ok = item["score_status"] == "scored" or (
        item["score_status"] == "pending" and item["smart_score"] == 0
    )
    return score_ok and item["sla_status"] in ("pending", "tracked")


async def _transfer(gateway: httpx.AsyncClient, team: Team, held: str, label: str) -> list[str]:
    """The new holder (an `agent`, who sees only its own tickets) opens the ticket right after
    the 201: tickets, sla and scoring learn of the new assignee only from events."""
    agent, senior = team.agent, team.senior
    path = f"/api/tickets/{held}"
    assigned = await _expect(
        f"{label}assign",
        gateway.post(f"{path}/assign", json={"agent_id": agent.id}, headers=senior.headers),
        201,
        lambda b: b["agent_id"] == agent.id and b["previous_agent_id"] == senior.id,
    )
    if assigned:
        return assigned
    outcomes = await asyncio.gather(
        _expect(
            f"{label}transferred: detail",
            gateway.get(path, headers=agent.headers),
            200,
            lambda b: b["assigned_agent_id"] == agent.id,
        ),
        _expect(
            f"{label}transferred: sla",
            gateway.get(f"{path}/sla", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == held,
        ),
        _expect(
            f"{label}transferred: score-breakdown",
            gateway.get(f"{path}/score-breakdown", headers=agent.headers),
            200,
            lambda b: b["ticket_id"] == held,
        ),
    )
    return [failure for outcome in outcomes for failure in outcome]


async def _rounds(gateway: httpx.AsyncClient) -> tuple[list[str], float]:
    team = await _team(gateway)
    limit = asyncio.Semaphore(CONCURRENT_ROUNDS)

    async def older_ticket() -> str:
        async with limit:
            return str((await _create(gateway, team.senior, customer_id=team.customer_id))["id"])

    held = await asyncio.gather(*(older_ticket() for _ in range(ROUNDS)))
    await asyncio.sleep(OLD_ENOUGH_SECONDS)  # seen everywhere by now: transfers of known tickets

    async def limited(ticket_id: str) -> list[str]:
        async with limit:
            return await _round(gateway, team, ticket_id)

    started = time.monotonic()
    results = await asyncio.gather(*(limited(ticket_id) for ticket_id in held))
    return [failure for result in results for failure in result], time.monotonic() - started


async def _waits(suite: Suite | ExternalStack) -> str:
    """How many requests waited for a projection, and how long in all (each process's
    `projection_wait_seconds`), for the log: the figures behind the README's decision."""
    if not isinstance(suite, Suite):
        return "n/a (external stack)"
    totals: dict[str, list[float]] = {}  # waits, seconds in all, waits ≤ 1 s, waits ≤ 2 s
    columns = {
        "projection_wait_seconds_count": 0,
        "projection_wait_seconds_sum": 1,
        'projection_wait_seconds_bucket{le="1.0"': 2,
        'projection_wait_seconds_bucket{le="2.0"': 3,
    }
    async with httpx.AsyncClient(timeout=5.0) as client:
        for service in suite.services:
            if service.service not in REPLICATED:
                continue
            text = (await client.get(f"{service.url}/metrics")).text
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                column = next((c for k, c in columns.items() if name.startswith(k)), None)
                if column is None:
                    continue
                outcome = name.split('outcome="', 1)[1].split('"', 1)[0]
                entry = totals.setdefault(f"{service.service}/{outcome}", [0.0] * 4)
                entry[column] += float(value)
    return ", ".join(
        f"{key}: {int(n)} waits, mean {1000 * s / n:.0f} ms, over 1 s {int(n - one)},"
        f" over 2 s {int(n - two)}"
        for key, (n, s, one, two) in totals.items()
        if n
    )


async def test_every_follow_up_of_a_new_ticket_sees_it(
    gateway: httpx.AsyncClient, suite: Suite | ExternalStack
) -> None:
    failures, took = await _rounds(gateway)
    print(f"{ROUNDS} rounds x 16 follow-ups in {took:.1f}s; {await _waits(suite)}")
    assert failures == [], f"{len(failures)} failures, first: {failures[:5]}"


@pytest.fixture(scope="module")
async def replicated(launch_suite) -> AsyncIterator[tuple[Suite, httpx.AsyncClient]]:  # type: ignore[no-untyped-def]
    """A suite of its own whose agents, sla and scoring run two replicas each."""
    if os.environ.get("E2E_GATEWAY_URL"):
        pytest.skip("a running stack (E2E_GATEWAY_URL) has the replicas its deployment gives it")
    offset = int(os.environ.get("E2E_PORT_OFFSET", "10000")) + 400
    async with (
        launch_suite(
            "ryw",
            port_offset=int(os.environ.get("E2E_REPLICA_PORT_OFFSET", str(offset))),
            redis_db=int(os.environ.get("E2E_REDIS_DB", "2")) + 2,
            env=RYW_ENV,
            replicas=REPLICATED,
        ) as suite,
        httpx.AsyncClient(
            base_url=suite.gateway_url, timeout=30.0, limits=GATEWAY_LIMITS
        ) as client,
    ):
        yield suite, client


async def test_with_two_replicas_every_follow_up_sees_it(
    replicated: tuple[Suite, httpx.AsyncClient],
) -> None:
    suite, gateway = replicated
    failures, took = await _rounds(gateway)
    print(f"2 replicas: {ROUNDS} rounds x 16 follow-ups in {took:.1f}s; {await _waits(suite)}")
    assert failures == [], f"{len(failures)} failures, first: {failures[:5]}"


# --- changes to known tickets: consistency tokens ----------------------------------------------

TOKEN_ROUNDS = int(os.environ.get("E2E_RYW_TOKEN_ROUNDS", "200"))
TOKEN_CONCURRENCY = int(os.environ.get("E2E_RYW_TOKEN_CONCURRENCY", "8"))


async def _write(
    label: str, call: Awaitable[httpx.Response], status: int
) -> tuple[dict[str, str], list[str]]:
    """The headers a follow-up of this write sends back (its consistency token), or failures."""
    response = await call
    if response.status_code != status:
        return {}, [f"{label}: {response.status_code} {response.text[:200]}"]
    token = response.headers.get(HEADER)
    if not token:
        return {}, [f"{label}: no {HEADER} in the answer"]
    return {HEADER: token}, []


async def _changes(gateway: httpx.AsyncClient, team: Team, tid: str) -> list[str]:
    """A known ticket changed four ways; each follow-up, sent with the write's token at once,
    sees the change (never the state before it)."""
    agent, senior = team.agent, team.senior
    path = f"/api/tickets/{tid}"
    sent, failed = await _write(
        "priority", gateway.patch(path, json={"priority": "high"}, headers=senior.headers), 200
    )
    if failed:
        return failed
    failures = [
        failure
        for outcome in await asyncio.gather(
            _expect(
                "priority → sla",
                gateway.get(f"{path}/sla", headers={**senior.headers, **sent}),
                200,
                lambda b: b["priority"] == "high",
            ),
            _expect(
                "priority → score-breakdown",
                gateway.get(f"{path}/score-breakdown", headers={**senior.headers, **sent}),
                200,
                lambda b: b["priority"] == "high",
            ),
        )
        for failure in outcome
    ]
    sent, failed = await _write(
        "assign",
        gateway.post(f"{path}/assign", json={"agent_id": agent.id}, headers=senior.headers),
        201,
    )
    if failed:
        return failures + failed
    failures += await _expect(
        "assign → detail (senior)",
        gateway.get(path, headers={**senior.headers, **sent}),
        200,
        lambda b: b["assigned_agent_id"] == agent.id,
    )
    sent, failed = await _write(
        "reply",
        gateway.post(f"{path}/messages", json={"content": "On it."}, headers=agent.headers),
        201,
    )
    if failed:
        return failures + failed
    failures += await _expect(
        "reply → score-breakdown",
        gateway.get(f"{path}/score-breakdown", headers={**agent.headers, **sent}),
        200,
        lambda b: b["parts"]["wait"]["inputs"]["waiting_since"] is None,
    )
    sent, failed = await _write(
        "pending", gateway.patch(path, json={"status": "pending"}, headers=agent.headers), 200
    )
    if failed:
        return failures + failed
    failures += await _expect(
        "pending → sla",
        gateway.get(f"{path}/sla", headers={**agent.headers, **sent}),
        200,
        lambda b: b["is_paused"] is True,
    )
    sent, failed = await _write(
        "resolved", gateway.patch(path, json={"status": "resolved"}, headers=agent.headers), 200
    )
    if failed:
        return failures + failed
    failures += await _expect(
        "resolved → assignments",
        gateway.get(f"{path}/assignments", headers={**agent.headers, **sent}),
        200,
        lambda b: (
            [a["status"] for a in b["assignments"] if a["agent_id"] == agent.id] == ["completed"]
        ),
    )
    return failures


async def _token_rounds(gateway: httpx.AsyncClient) -> tuple[list[str], float]:
    team = await _team(gateway)
    limit = asyncio.Semaphore(TOKEN_CONCURRENCY)

    async def known_ticket() -> str:
        async with limit:
            body = await _create(gateway, team.senior, customer_id=team.customer_id)
            return str(body["id"])

    known = await asyncio.gather(*(known_ticket() for _ in range(TOKEN_ROUNDS)))
    await asyncio.sleep(OLD_ENOUGH_SECONDS)  # every service has seen them: only changes remain

    async def limited(ticket_id: str) -> list[str]:
        async with limit:
            return await _changes(gateway, team, ticket_id)

    started = time.monotonic()
    results = await asyncio.gather(*(limited(ticket_id) for ticket_id in known))
    return [failure for result in results for failure in result], time.monotonic() - started


async def test_every_follow_up_with_a_token_sees_the_change(
    gateway: httpx.AsyncClient, suite: Suite | ExternalStack
) -> None:
    failures, took = await _token_rounds(gateway)
    print(f"{TOKEN_ROUNDS} known tickets x 6 follow-ups in {took:.1f}s; {await _waits(suite)}")
    assert failures == [], f"{len(failures)} failures, first: {failures[:5]}"


async def test_with_two_replicas_every_follow_up_with_a_token_sees_the_change(
    replicated: tuple[Suite, httpx.AsyncClient],
) -> None:
    suite, gateway = replicated
    failures, took = await _token_rounds(gateway)
    print(f"2 replicas: {TOKEN_ROUNDS} x 6 token follow-ups in {took:.1f}s; {await _waits(suite)}")
    assert failures == [], f"{len(failures)} failures, first: {failures[:5]}"
