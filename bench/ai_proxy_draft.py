"""AI draft latency, `GET /api/ai/tickets/{id}/draft-response` direct to ai-proxy: cache hit vs
miss, with the Quimbi stand-in answering at once and with 500 ms added to every call.

Needs the local infrastructure (`make infra`). Starts everything it measures itself: scratch
databases for tickets and ai-proxy (migrated), the Quimbi stand-in (`python -m quimbi_standin`),
the tickets service (`python -m quimbi_tickets`) and ai-proxy (`python -m quimbi_ai_proxy`), each
on a spare port with one Kafka topic prefix of its own; creates tickets through the tickets API,
measures sequential requests (one at a time, so each figure is one agent's wait), then stops the
processes and drops the databases.

Three cases per stand-in latency:
- cold miss: nothing cached — ai-proxy reads the ticket, calls analyze, then message;
- draft miss: the customer's intelligence is cached (as after `ticket.created` warmed it), a
  draft for this ticket/tone/length is not — reads the ticket, calls message;
- hit: the draft is cached — reads the ticket (visibility, conversation check), answers.

    uv run python bench/ai_proxy_draft.py [--misses 100] [--slow-misses 10] [--hits 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from _shared import free_port, percentile, stop_processes

from quimbi_ai_proxy.domain import draft_key, intelligence_key
from quimbi_common.enums import Role
from quimbi_common.migrations import upgrade
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    SigningKeys,
    create_database,
    drop_database,
    unique,
)

ROOT = Path(__file__).resolve().parents[1]
ADMIN = {"X-Admin-Key": "standin-admin"}


class Suite:
    """The three processes under test, their logs in a temporary directory."""

    def __init__(self, keys: SigningKeys, prefix: str) -> None:
        self.keys = keys
        self.prefix = prefix
        self.ports = {name: free_port() for name in ("standin", "tickets", "ai-proxy")}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = Path(tempfile.mkdtemp(prefix="bench-ai-proxy-"))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str, module: str, database_url: str | None = None) -> None:
        env = {
            **os.environ,
            "PORT": str(self.ports[name]),
            "STANDIN_PORT": str(self.ports[name]),
            "STANDIN_HOST": "127.0.0.1",
            "REDIS_URL": REDIS_URL,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "JWKS_JSON": self.keys.jwks_json,
            "TICKETS_URL": self.url("tickets"),
            "QUIMBI_BASE_URL": self.url("standin"),
            "LOG_LEVEL": "WARNING",
        }
        if database_url:
            env["DATABASE_URL"] = database_url
        log = (self.logs / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    async def wait_live(self, name: str) -> None:
        async with httpx.AsyncClient(base_url=self.url(name)) as client:
            for _ in range(300):
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.logs}/{name}.log")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health/live")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not come up; see {self.logs}/{name}.log")

    def stop(self) -> None:
        stop_processes(self.processes.values())


async def create_tickets(base: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    created = []
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        for _ in range(count):
            response = await client.post(
                "/api/tickets",
                json={
                    "customer": {"email": f"{unique('c')}@example.com", "name": "Robin Hart"},
                    "subject": "My order arrived damaged",
                    "channel": "email",
                    "priority": "high",
                    "message": {
                        "content": "My order arrived damaged. Can you send a replacement?",
                        "from_agent": False,
                    },
                },
            )
            response.raise_for_status()
            created.append(response.json())
    return created


async def timed(call: Callable[[], Awaitable[httpx.Response]], expect_cached: bool) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    if response.json()["cached"] is not expect_cached:
        raise RuntimeError(f"expected cached={expect_cached}: {response.text[:200]}")
    return elapsed


def line(label: str, ms: list[float]) -> str:
    return (
        f"  {label:<11} n={len(ms):<4} p50 {percentile(ms, 50):7.1f} ms  "
        f"p95 {percentile(ms, 95):7.1f} ms  mean {statistics.mean(ms):7.1f} ms"
    )


async def measure(
    suite: Suite,
    redis: aioredis.Redis,
    headers: dict[str, str],
    latency_ms: int,
    misses: int,
    hits: int,
) -> None:
    tickets = await create_tickets(suite.url("tickets"), headers, misses)
    async with httpx.AsyncClient(base_url=suite.url("standin"), headers=ADMIN) as admin:
        body = {"mode": "ok", "latency_ms": latency_ms}
        (await admin.put("/_admin/faults/all", json=body)).raise_for_status()
    # ticket.created warms intelligence in the background; cold misses must start from nothing
    await asyncio.sleep(1.0)
    async with httpx.AsyncClient(base_url=suite.url("ai-proxy"), headers=headers) as client:
        await client.get("/health/ready")
        cold, miss, hit = [], [], []
        for ticket in tickets:
            url = f"/api/ai/tickets/{ticket['id']}/draft-response"
            await redis.delete(
                intelligence_key(ticket["customer_id"]),
                draft_key(ticket["id"], "empathetic", "medium"),
            )
            cold.append(await timed(lambda url=url: client.get(url), False))
            miss.append(
                await timed(lambda url=url: client.get(url, params={"tone": "friendly"}), False)
            )
        for i in range(hits):
            url = f"/api/ai/tickets/{tickets[i % len(tickets)]['id']}/draft-response"
            hit.append(await timed(lambda url=url: client.get(url), True))
    read = await ticket_reads(suite.url("tickets"), headers, tickets, hits)
    print(f"stand-in latency {latency_ms} ms per Quimbi call:")
    print(line("cold miss", cold))
    print(line("draft miss", miss))
    print(line("hit", hit))
    print(line("(ticket read", read) + "  — GET /api/tickets/{id} direct, part of every case)")


async def ticket_reads(
    base: str, headers: dict[str, str], tickets: list[dict[str, Any]], count: int
) -> list[float]:
    """The tickets service's own detail read, which every draft request makes first."""
    latencies = []
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        for i in range(count):
            started = time.perf_counter()
            response = await client.get(f"/api/tickets/{tickets[i % len(tickets)]['id']}")
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return latencies


@contextlib.asynccontextmanager
async def running_suite() -> AsyncIterator[tuple[Suite, SigningKeys]]:
    """The stand-in, tickets and ai-proxy as processes on scratch databases (dropped after)."""
    keys = SigningKeys()
    names = {svc: unique(f"bench_{svc}_") for svc in ("tickets", "ai_proxy")}
    urls = {svc: await create_database(name) for svc, name in names.items()}
    suite = Suite(keys, f"{unique('bench')}.")
    try:
        await asyncio.to_thread(upgrade, ROOT / "services/tickets/migrations", urls["tickets"])
        await asyncio.to_thread(upgrade, ROOT / "services/ai-proxy/migrations", urls["ai_proxy"])
        suite.start("standin", "quimbi_standin")
        suite.start("tickets", "quimbi_tickets", urls["tickets"])
        suite.start("ai-proxy", "quimbi_ai_proxy", urls["ai_proxy"])
        for name in suite.ports:
            await suite.wait_live(name)
        yield suite, keys
    finally:
        suite.stop()
        for name in names.values():
            await drop_database(name)


async def main(misses: int, slow_misses: int, hits: int) -> None:
    redis = aioredis.from_url(REDIS_URL)
    try:
        async with running_suite() as (suite, keys):
            headers = keys.headers(Role.SENIOR_AGENT)
            print("draft-response latency, sequential requests, direct to ai-proxy")
            await measure(suite, redis, headers, 0, misses, hits)
            await measure(suite, redis, headers, 500, slow_misses, hits)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--misses", type=int, default=100, help="misses at 0 ms")
    parser.add_argument("--slow-misses", type=int, default=10, help="misses at 500 ms")
    parser.add_argument("--hits", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.misses, args.slow_misses, args.hits))
