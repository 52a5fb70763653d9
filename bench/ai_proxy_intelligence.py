"""Cost of the customer-visibility check on `GET /api/ai/customers/{id}/intelligence` (issue #13
item 7): cached answers, sequential, direct to ai-proxy, with the wall time and the CPU spent
per request by ai-proxy and by the tickets service (which now answers the visibility read).

Starts what it measures as `ai_proxy_draft.py` does (scratch databases, the Quimbi stand-in,
tickets and ai-proxy as processes). To compare with the code before the check, run it with
`PYTHONPATH` pointing at an older `services/ai-proxy/src` (e.g. from `git archive`).

    uv run python bench/ai_proxy_intelligence.py [--customers 20] [--hits 400]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from _shared import cpu_seconds
from ai_proxy_draft import Suite, create_tickets, line, running_suite

from quimbi_common.enums import Role


async def measure(suite: Suite, headers: dict[str, str], customers: int, hits: int) -> None:
    tickets = await create_tickets(suite.url("tickets"), headers, customers)
    urls = [f"/api/ai/customers/{t['customer_id']}/intelligence" for t in tickets]
    async with httpx.AsyncClient(base_url=suite.url("ai-proxy"), headers=headers) as client:
        for url in urls:  # warm: every answer cached
            (await client.get(url)).raise_for_status()
        pids = {name: suite.processes[name].pid for name in ("ai-proxy", "tickets")}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        latencies = []
        for i in range(hits):
            started = time.perf_counter()
            response = await client.get(urls[i % len(urls)])
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            if response.json()["cached"] is not True:
                raise RuntimeError(f"expected a cached answer: {response.text[:200]}")
        spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    print("cached intelligence, sequential requests, direct to ai-proxy")
    print(line("hit", latencies))
    for name, seconds in spent.items():
        print(f"  CPU per request, {name:<8} {seconds / hits * 1000:6.2f} ms")
    print(f"  CPU per request, both     {sum(spent.values()) / hits * 1000:6.2f} ms")


async def main(customers: int, hits: int) -> None:
    async with running_suite() as (suite, keys):
        await measure(suite, keys.headers(Role.SENIOR_AGENT), customers, hits)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--hits", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.hits))
