"""When Quimbi misbehaves (real HTTP to the stand-in, faults injected through its admin API):
retries on 5xx and timeouts only, the circuit breaker, stale answers, and Redis down."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from quimbi_ai_proxy import domain
from quimbi_ai_proxy.service import AiProxy
from quimbi_ai_proxy.settings import Settings
from quimbi_ai_proxy.tickets import HttpTicketReader
from quimbi_common.enums import Role
from quimbi_common.testing import eventually

pytestmark = pytest.mark.service

AGENT = "agent-resilience"


def _intel(customer_id: str) -> str:
    return f"/api/ai/customers/{customer_id}/intelligence"


def _draft(ticket: dict[str, Any]) -> str:
    return f"/api/ai/tickets/{ticket['id']}/draft-response"


async def test_5xx_is_retried_until_quimbi_answers(proxy_app, tickets, standin) -> None:
    # given Quimbi fails its next two analyze calls with 503 (the proxy retries twice)
    await standin.fault("analyze", mode="error", status=503, count=2)
    async with proxy_app(quimbi_max_retries=2) as proxy:
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
    # then the third attempt answers
    assert response.status_code == 200, response.text
    assert (await standin.calls())["analyze"] == 3


async def test_persistent_5xx_gives_503_after_max_retries(proxy_app, tickets, standin) -> None:
    await standin.fault("analyze", mode="error", status=500)
    async with proxy_app(quimbi_max_retries=2) as proxy:
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503
    assert (await standin.calls())["analyze"] == 3


@pytest.mark.parametrize("status", [400, 422, 429])
async def test_4xx_is_not_retried(proxy_app, tickets, standin, status: int) -> None:
    ticket = tickets.add(assigned_agent_id=AGENT)
    await standin.fault("message", mode="error", status=status)
    async with proxy_app(quimbi_max_retries=3) as proxy:
        response = await proxy.client.get(_draft(ticket), headers=proxy.headers(Role.AGENT, AGENT))
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert (await standin.calls())["message"] == 1


async def test_quimbi_404_for_a_customer_is_a_404_without_retries(
    proxy_app, tickets, standin
) -> None:
    await standin.fault("analyze", mode="error", status=404)
    async with proxy_app(quimbi_max_retries=3) as proxy:
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
    assert response.status_code == 404
    assert (await standin.calls())["analyze"] == 1


async def test_a_timeout_is_retried_within_the_configured_timeout(
    proxy_app, tickets, standin
) -> None:
    # given Quimbi hangs (3 s, then 504) on the next analyze call
    await standin.fault("analyze", mode="timeout", count=1)
    async with proxy_app(quimbi_timeout=0.5, quimbi_max_retries=1) as proxy:
        started = time.monotonic()
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
        elapsed = time.monotonic() - started
    # then the proxy gave up on it after QUIMBI_TIMEOUT, not the hang, and the retry answered
    assert response.status_code == 200, response.text
    assert 0.5 <= elapsed < 2.5
    assert (await standin.calls())["analyze"] == 2


async def test_timeouts_on_every_attempt_give_503(proxy_app, tickets, standin) -> None:
    await standin.fault("analyze", mode="timeout")
    async with proxy_app(quimbi_timeout=0.3, quimbi_max_retries=1) as proxy:
        started = time.monotonic()
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    # two attempts of 0.3 s and a back-off; the upper bound only tells QUIMBI_TIMEOUT (30 s by
    # default) was applied, with room for a loaded machine (2.5 s failed at load average 20)
    assert 0.6 <= elapsed < 10
    assert (await standin.calls())["analyze"] == 2


async def test_open_breaker_fails_fast_without_calling_quimbi(proxy_app, tickets, standin) -> None:
    # given a breaker that opens after 3 failed attempts, and Quimbi failing
    await standin.fault("analyze", mode="error", status=500)
    async with proxy_app(
        quimbi_timeout=3.0,
        quimbi_max_retries=2,
        quimbi_breaker_failure_threshold=3,
        quimbi_breaker_reset_seconds=30,
    ) as proxy:
        first = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
        assert (await standin.calls())["analyze"] == 3
        # when more requests come in while it is open (and Quimbi would now hang for 3 s)
        await standin.fault("analyze", mode="timeout")
        started = time.monotonic()
        later = [
            await proxy.client.get(
                _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
            )
            for _ in range(4)
        ]
        elapsed = time.monotonic() - started
    # then they get 503 at once, with Retry-After, and Quimbi sees none of them
    assert first.status_code == 503
    assert all(r.status_code == 503 for r in later)
    assert 0 < int(later[0].headers["retry-after"]) <= 30
    assert elapsed < 2.0
    assert (await standin.calls())["analyze"] == 3


async def test_half_open_breaker_probes_once_and_closes_when_quimbi_is_back(
    proxy_app, tickets, standin
) -> None:
    await standin.fault("analyze", mode="error", status=500)
    async with proxy_app(
        quimbi_max_retries=0,
        quimbi_breaker_failure_threshold=1,
        quimbi_breaker_reset_seconds=0.3,
    ) as proxy:
        breaker = proxy.app.state.runtime.provided(AiProxy).quimbi.breaker

        async def ask() -> int:
            response = await proxy.client.get(
                _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
            )
            return response.status_code

        assert await ask() == 503
        assert breaker.state == "open"
        # when the cool-down passes with Quimbi still down, the probe fails and it reopens
        await _wait_half_open(breaker)
        assert await ask() == 503
        assert breaker.state == "open"
        assert (await standin.calls())["analyze"] == 2
        # when Quimbi is back and the cool-down passes again, one probe closes it
        await standin.heal()
        await _wait_half_open(breaker)
        assert await ask() == 200
        assert breaker.state == "closed"
        after = await ask()
    assert after == 200
    assert (await standin.calls())["analyze"] == 4


async def _wait_half_open(breaker: domain.CircuitBreaker) -> None:
    def half_open() -> None:
        assert breaker.state == domain.BreakerState.HALF_OPEN

    await eventually(half_open, timeout=5, interval=0.02)


async def test_stale_intelligence_is_served_while_quimbi_is_down(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    # given intelligence fetched once, whose fresh copy has since expired
    customer = tickets.add_customer()
    async with proxy_app() as proxy:
        fresh = await proxy.client.get(_intel(customer), headers=proxy.headers(Role.SENIOR_AGENT))
        await redis.delete(domain.intelligence_key(customer))
        # when Quimbi is down
        await standin.fault("all", mode="error", status=500)
        stale = await proxy.client.get(_intel(customer), headers=proxy.headers(Role.SENIOR_AGENT))
    # then the last answer comes back, marked stale
    assert stale.status_code == 200, stale.text
    assert stale.json()["stale"] is True
    assert stale.json()["predictions"] == fresh.json()["predictions"]


async def test_stale_draft_is_served_but_regeneration_is_refused_while_quimbi_is_down(
    proxy_app, tickets, standin, redis: aioredis.Redis
) -> None:
    ticket = tickets.add(assigned_agent_id=AGENT)
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, AGENT)
        fresh = await proxy.client.get(_draft(ticket), headers=headers)
        await redis.delete(
            domain.draft_key(ticket["id"], "empathetic", "medium"),
            domain.intelligence_key(ticket["customer_id"]),
        )
        await standin.fault("all", mode="error", status=503)
        stale = await proxy.client.get(_draft(ticket), headers=headers)
        regenerated = await proxy.client.post(
            f"/api/ai/tickets/{ticket['id']}/regenerate-draft", json={}, headers=headers
        )
    assert stale.status_code == 200, stale.text
    assert stale.json()["stale"] is True
    assert stale.json()["draft_content"] == fresh.json()["draft_content"]
    assert regenerated.status_code == 503


async def test_stale_recommendation_is_served_while_quimbi_is_down(
    proxy_app, tickets, standin
) -> None:
    ticket = tickets.add(assigned_agent_id=AGENT)
    url = f"/api/ai/tickets/{ticket['id']}/recommendation"
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, AGENT)
        fresh = await proxy.client.get(url, headers=headers)
        await standin.fault("actions", mode="error", status=500)
        stale = await proxy.client.get(url, headers=headers)
    assert stale.status_code == 200, stale.text
    assert stale.json()["stale"] is True
    assert stale.json()["next_best_actions"] == fresh.json()["next_best_actions"]


async def test_quimbi_down_without_a_cached_answer_is_503_problem(
    proxy_app, tickets, standin
) -> None:
    ticket = tickets.add(assigned_agent_id=AGENT)
    await standin.fault("all", mode="error", status=502)
    async with proxy_app() as proxy:
        response = await proxy.client.get(_draft(ticket), headers=proxy.headers(Role.AGENT, AGENT))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "Quimbi" in response.json()["detail"]


async def test_quimbi_unreachable_is_503(proxy_app, tickets) -> None:
    async with proxy_app(quimbi_base_url="http://127.0.0.1:9", quimbi_max_retries=1) as proxy:
        response = await proxy.client.get(
            _intel(tickets.add_customer()), headers=proxy.headers(Role.SENIOR_AGENT)
        )
    assert response.status_code == 503


async def test_redis_down_still_answers_uncached(proxy_app, tickets, standin) -> None:
    # given the cache's Redis is unreachable (auth's revocation store is still up)
    ticket = tickets.add(assigned_agent_id=AGENT)
    async with proxy_app(cache_redis_url="redis://127.0.0.1:9/0") as proxy:
        headers = proxy.headers(Role.AGENT, AGENT)
        # when the same draft is asked for twice
        first = await proxy.client.get(_draft(ticket), headers=headers)
        second = await proxy.client.get(_draft(ticket), headers=headers)
    # then both are answered, each straight from Quimbi
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is second.json()["cached"] is False
    assert await standin.calls() == {"analyze": 2, "message": 2, "actions": 0}


async def test_the_agents_token_never_reaches_quimbi(proxy_app, tickets, standin) -> None:
    ticket = tickets.add(assigned_agent_id=AGENT)
    async with proxy_app() as proxy:
        headers = proxy.headers(Role.AGENT, AGENT)
        await proxy.client.get(_draft(ticket), headers=headers)
        await proxy.client.get(f"/api/ai/tickets/{ticket['id']}/recommendation", headers=headers)
    seen = standin.recorder.headers
    assert len(seen) >= 3
    token = headers["Authorization"].removeprefix("Bearer ")
    for request_headers in seen:
        assert "authorization" not in request_headers
        assert token not in " ".join(request_headers.values())
        assert request_headers["x-api-key"] == proxy.settings.quimbi_api_key.get_secret_value()


async def test_a_read_on_a_connection_the_tickets_service_dropped_is_sent_again() -> None:
    """uvicorn closes an idle keep-alive connection after 5 s; a read that goes out on it as it
    closes fails in transport (ReadError, or a disconnect without an answer). That is not the
    service being down: the reader sends the read once more on a fresh connection."""
    answered = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while await reader.readuntil(b"\r\n\r\n"):
            if answered % 2 == 1:  # every second request: drop the connection unanswered
                answered += 1
                writer.close()
                return
            answered += 1
            body = b'{"id": "c1"}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = HttpTicketReader(Settings(tickets_url=f"http://127.0.0.1:{port}"))
    try:
        await reader.check_customer("c1", "Bearer x")  # opens the pooled connection
        await reader.check_customer("c1", "Bearer x")  # dropped on the reused one, then sent again
        assert answered == 3
    finally:
        await reader.aclose()
        server.close()
