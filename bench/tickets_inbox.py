"""Smart inbox: `GET /api/tickets?limit=50&status=open` on 100k tickets (10k open): tickets CPU
per request direct to the service (concurrency 16), p99 through the gateway at concurrency 32,
and the raw SQL p99 of the same statement in the same run (goals of issue #15: tickets CPU
<= 0.5 ms per request; gateway p99 <= 5x raw SQL p99).

Needs the local infrastructure (`make infra`). Starts everything it measures itself: creates a
scratch database migrated with the service's migrations, fills it with COPY (100k tickets,
20k customers, one message per ticket), starts `python -m quimbi_tickets` and
`python -m quimbi_gateway` on spare ports (ports offset by --port-offset when given, Redis db
from REDIS_URL, own Kafka topic prefix), measures, then stops them and drops the database.
The load generator is gateway_overhead's pre-built keep-alive HTTP/1.1 client, so that it
costs little of the CPU it shares with the services. CPU per request is from /proc.

    uv run python bench/tickets_inbox.py [--tickets 100000] [--open 10000] [--requests 2000]
                                         [--profile]   # py-spy on tickets and the gateway
                                         [--keep | --database NAME]  # keep / reuse the data
                                         [--src /work/main]  # serve another checkout's code

Also measures ticket detail (`GET /api/tickets/{id}`, one message) direct to tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from _shared import cpu_seconds, free_port, percentile, record, stop_processes
from gateway_overhead import Connection, build_request

from quimbi_common.auth import Principal
from quimbi_common.db import asyncpg_dsn
from quimbi_common.enums import Channel, Role, TicketPriority, TicketStatus
from quimbi_common.migrations import upgrade
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    SigningKeys,
    create_database,
    database_url,
    drop_database,
    unique,
)
from quimbi_tickets.queries import InboxQuery, inbox_sql

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "services" / "tickets" / "migrations"
CONCURRENCY = 16
GATEWAY_CONCURRENCY = 32
PER_REQUEST: dict[str, dict[str, float]] = {}  # run label -> process -> CPU ms per request
IDLE: dict[str, float] = {}  # process name -> CPU seconds per second when not serving
RARE_WORD, RARE_SHARE = "chargeback", 0.01
WARM_UP = 50
DETAIL_TICKET = "ticket_000001"  # open, one message
WORDS = [
    *("order", "parcel", "refund", "payment", "card", "charged", "twice", "delivery", "late"),
    *("broken", "missing", "login", "password", "account", "address", "invoice", "discount"),
    *("subscription", "cancel", "coupon", "size", "exchange"),
]


async def fill(dsn: str, tickets: int, open_tickets: int, agents: list[str]) -> None:
    """100k tickets, `open_tickets` of them open, spread over 20k customers; one message each."""
    rng = random.Random(42)
    now = datetime.now(UTC)
    customers = max(1, tickets // 5)
    other_statuses = [s.value for s in TicketStatus if s != TicketStatus.OPEN]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "customers",
            columns=["id", "email", "name", "created_at", "updated_at", "lifetime_value"],
            records=[
                (f"cust_{i}", f"c{i}@example.com", f"Customer {i}", now, now, rng.uniform(0, 3000))
                for i in range(customers)
            ],
        )
        ticket_rows = []
        message_rows = []
        for i in range(tickets):
            created = now - timedelta(minutes=rng.randint(0, 60 * 24 * 90))
            status = "open" if i < open_tickets else rng.choice(other_statuses)
            subject = " ".join(rng.choices(WORDS, k=5))
            content = " ".join(rng.choices(WORDS, k=30))
            if rng.random() < RARE_SHARE:  # a rare topic, for a realistic topic alert
                content += f" {RARE_WORD}"
            ticket_id = f"ticket_{i:06d}"
            ticket_rows.append(
                (
                    ticket_id,
                    f"cust_{rng.randrange(customers)}",
                    subject,
                    status,
                    rng.choice([p.value for p in TicketPriority]),
                    rng.choice([c.value for c in Channel]),
                    rng.choice([*agents, None]),
                    created,
                    created,
                    1,
                    round(rng.uniform(0, 14), 2),
                    round(rng.uniform(0, 1), 2),
                    round(rng.uniform(0, 1), 2),
                )
            )
            message_rows.append(
                (
                    f"msg_{i:06d}",
                    ticket_id,
                    False,
                    content,
                    created,
                    created,
                    0.5,
                    "other",
                    1,
                )
            )
        await conn.copy_records_to_table(
            "tickets",
            columns=[
                "id",
                "customer_id",
                "subject",
                "status",
                "priority",
                "channel",
                "assigned_agent_id",
                "created_at",
                "updated_at",
                "version",
                "smart_score",
                "customer_sentiment",
                "estimated_difficulty",
            ],
            records=ticket_rows,
        )
        await conn.copy_records_to_table(
            "messages",
            columns=[
                "id",
                "ticket_id",
                "from_agent",
                "content",
                "created_at",
                "updated_at",
                "sentiment_score",
                "detected_intent",
                "version",
            ],
            records=message_rows,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def start(module: str, port: int, keys: SigningKeys, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "REDIS_URL": REDIS_URL,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "KAFKA_TOPIC_PREFIX": f"{unique('bench')}.",
        "JWKS_JSON": keys.jwks_json,
        "JWT_ISSUER": TEST_ISSUER,
        "JWT_AUDIENCE": TEST_AUDIENCE,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", module], env=environment)


async def wait_until_live(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{base} exited")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health/live")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


async def load(
    base: str, token: str, path: str, requests: int, concurrency: int
) -> tuple[list[float], float]:
    """`requests` GETs over `concurrency` keep-alive connections (after a warm-up); latencies
    in ms and the wall time. Anything but a 200 stops the benchmark."""
    host, port, raw = build_request(base, token, path)
    connections = [Connection(host, port, raw) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    latencies: list[float] = []
    remaining = requests

    async def worker(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status, _ = await connection.fetch()
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")

    try:
        for _ in range(WARM_UP // concurrency + 1):  # connections, prepared statements
            await asyncio.gather(*(c.fetch() for c in connections))
        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        return latencies, time.perf_counter() - began
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def raw_sql(
    dsn: str, query: InboxQuery, principal: Principal, runs: int, concurrency: int = 1
) -> dict[str, float]:
    """The service's inbox statement (the one the route runs) over plain asyncpg, from
    `concurrency` connections at once, and EXPLAIN ANALYZE's server-side time for it."""
    sql, args = inbox_sql(query, principal, boost=5.0)
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    timings: list[float] = []
    remaining = runs

    async def worker(conn: asyncpg.Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await conn.fetchrow(sql, *args)
            timings.append((time.perf_counter() - started) * 1000)

    try:
        for conn in conns:
            await conn.execute("SET jit = off")  # as the service's migration sets
            for _ in range(5):
                await conn.fetchrow(sql, *args)
        await asyncio.gather(*(worker(c) for c in conns))
        plan = await conns[0].fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        for conn in conns:
            await conn.close()
    return {
        "p50": statistics.median(timings),
        "p99": percentile(timings, 99),
        "server": json.loads(plan)[0]["Execution Time"],
    }


def alert(query: InboxQuery, keyword: str) -> InboxQuery:
    return InboxQuery(status=query.status, limit=query.limit, topic_alerts=[keyword])


async def measure(
    label: str,
    pids: dict[str, int],
    base: str,
    token: str,
    path: str,
    n: int,
    concurrency: int = CONCURRENCY,
) -> float:
    """One load run; prints latencies and CPU per request of `pids` (their idle CPU rate
    subtracted); returns the p99."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    client_before, began = time.process_time(), time.perf_counter()
    latencies, wall = await load(base, token, path, n, concurrency)
    elapsed = time.perf_counter() - began
    warm = (WARM_UP // concurrency + 1) * concurrency
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu = {name: (used[name] - IDLE.get(name, 0.0) * elapsed) / (n + warm) * 1000 for name in pids}
    cpu["client"] = (time.process_time() - client_before) / (n + warm) * 1000
    p99 = percentile(latencies, 99)
    PER_REQUEST[label] = cpu
    raw = ", ".join(f"{name} {used[name] / (n + warm) * 1000:.2f}" for name in pids)
    print(
        f"{label:<46} p50 {statistics.median(latencies):6.2f} ms   p99 {p99:6.2f} ms   "
        f"{len(latencies) / wall:5.0f} req/s   CPU ms/request: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
        + f"   (idle not subtracted: {raw})"
    )
    return p99


async def histogram(base: str, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound in s -> count) of one Prometheus histogram."""
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        text = (await client.get("/metrics")).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith(f"{name}_bucket{{"):
            continue
        label_text, _, count = line.rpartition(" ")
        found = dict(
            part.split("=", 1) for part in label_text[label_text.index("{") + 1 : -1].split(",")
        )
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            bound = found["le"].strip('"')
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(count)
    return buckets


def bucket_percentile(before: dict[float, float], after: dict[float, float], pct: float) -> str:
    """The bucket holding the `pct` percentile of what was observed between two snapshots."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return "n/a"
    previous = 0.0
    for bound, count in counts.items():
        if count >= pct / 100 * total:
            return f"{previous * 1000:g}-{bound * 1000:g} ms"
        previous = bound
    return "n/a"


STAGES = {  # where a request through the gateway spends its time, from the services' metrics
    "gateway, in its app (admit + proxy)": (
        "gateway",
        "http_request_duration_seconds",
        {"route": "/api/{path:path}", "method": "GET"},  # `unmatched` before 7bbf07a
    ),
    "gateway -> tickets' response headers": (
        "gateway",
        "gateway_upstream_seconds",
        {"upstream": "tickets"},
    ),
    "tickets, in its app": (
        "tickets",
        "http_request_duration_seconds",
        {"route": "/api/tickets", "method": "GET"},
    ),
}


async def stage_snapshot(bases: dict[str, str]) -> dict[str, dict[float, float]]:
    snapshot = {}
    for stage, (process, name, labels) in STAGES.items():
        found = await histogram(bases[process], name, **labels)
        if not found and labels.get("route") == "/api/{path:path}":  # an older gateway
            found = await histogram(bases[process], name, **{**labels, "route": "unmatched"})
        snapshot[stage] = found
    return snapshot


def print_stages(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> None:
    print("  where the time goes (bucket of p50 / p99, from the services' histograms):")
    for stage in STAGES:
        p50 = bucket_percentile(before[stage], after[stage], 50)
        p99 = bucket_percentile(before[stage], after[stage], 99)
        print(f"    {stage:<40} p50 {p50:<14} p99 {p99}")


async def measure_idle(pids: dict[str, int], seconds: float = 8.0) -> None:
    """Background CPU of the idle processes (Kafka metadata, health watches, relay polls):
    the shared development broker holds thousands of topics, which inflates it."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    IDLE.update({name: (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()})
    rates = ", ".join(f"{name} {rate * 1000:.0f} ms/s" for name, rate in IDLE.items())
    print(f"idle CPU (subtracted below): {rates}")


async def profile(pid: int, seconds: float, output: Path) -> asyncio.subprocess.Process:
    """py-spy (from PyPI, through uv) on a service process while it serves the load."""
    return await asyncio.create_subprocess_exec(
        *["uv", "tool", "run", "py-spy", "record", "--pid", str(pid), "--rate", "250"],
        *["--duration", str(round(seconds)), "--format", "raw", "--output", str(output)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def source_path(args: argparse.Namespace, service: str) -> dict[str, str]:
    """PYTHONPATH for a before/after run: another checkout's service and common library
    shadow this worktree's editable installs."""
    if args.src:
        root = Path(args.src)
        paths = [root / "services" / service / "src", root / "libs" / "common" / "src"]
        return {"PYTHONPATH": os.pathsep.join(str(path) for path in paths)}
    if service == "tickets" and args.tickets_src:
        return {"PYTHONPATH": args.tickets_src}
    return {}


async def spy_on(
    args: argparse.Namespace, pid: int, name: str
) -> asyncio.subprocess.Process | None:
    """With --profile: py-spy on a process for the next 10 s of load (`name`: the file)."""
    if not args.profile:
        return None
    output = ROOT / ".local" / f"tickets_inbox.{name}.pyspy.txt"
    output.parent.mkdir(exist_ok=True)
    print(f"  (py-spy on {name} for 10 s -> {output})")
    return await profile(pid, 10, output)


async def main(args: argparse.Namespace) -> None:
    name = args.database or unique("bench_tickets_")
    url = database_url(name) if args.database else await create_database(name)
    dsn = asyncpg_dsn(url)
    keys = SigningKeys()
    processes: list[subprocess.Popen[bytes]] = []
    requests = args.requests
    try:
        started = time.perf_counter()
        if args.database:  # a kept database: its agents are the tickets' assignees
            conn = await asyncpg.connect(dsn)
            try:
                agents = [
                    row["assigned_agent_id"]
                    for row in await conn.fetch(
                        "SELECT DISTINCT assigned_agent_id FROM tickets"
                        " WHERE assigned_agent_id IS NOT NULL ORDER BY 1"
                    )
                ]
            finally:
                await conn.close()
            print(f"setup: reusing database {name}")
        else:
            agents = [unique("agent-") for _ in range(100)]
            await asyncio.to_thread(upgrade, MIGRATIONS, url)
            await fill(dsn, args.tickets, args.open, agents)
            elapsed = time.perf_counter() - started
            print(f"setup: {args.tickets} tickets ({args.open} open) in {elapsed:.1f} s")

        ports = [args.port_offset + p if args.port_offset else free_port() for p in (8002, 8001)]
        tickets, gateway = (f"http://127.0.0.1:{port}" for port in ports)
        source = source_path(args, "tickets")
        processes.append(start("quimbi_tickets", ports[0], keys, DATABASE_URL=url, **source))
        processes.append(
            start(
                "quimbi_gateway",
                ports[1],
                keys,
                **source_path(args, "gateway"),
                TICKETS_URL=tickets,
                RATE_LIMIT_PER_AGENT=str(10**9),
                RATE_LIMIT_PREFIX=unique("bench-inbox-rl:"),
            )
        )
        await asyncio.gather(
            *(wait_until_live(u, p) for u, p in zip((tickets, gateway), processes, strict=True))
        )
        service = {"tickets": processes[0].pid}
        both = {**service, "gateway": processes[1].pid}

        senior = keys.token(Role.SENIOR_AGENT, ttl_seconds=3600)
        agent = keys.token(Role.AGENT, agent_id=agents[0], ttl_seconds=3600)
        path = "/api/tickets?limit=50&status=open"
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")
        await measure_idle(both)
        print(f"HTTP, {requests} requests each:")
        spy = await spy_on(args, processes[0].pid, "tickets")
        direct = f"direct to tickets, concurrency {CONCURRENCY}"
        await measure(direct, service, tickets, senior, path, requests)
        if spy is not None:
            await spy.wait()
        spy = await spy_on(args, processes[1].pid, "gateway")
        label = f"via the gateway, concurrency {GATEWAY_CONCURRENCY}"
        bases = {"gateway": gateway, "tickets": tickets}
        stages = await stage_snapshot(bases)
        gateway_p99 = await measure(
            label, both, gateway, senior, path, requests, GATEWAY_CONCURRENCY
        )
        print_stages(stages, await stage_snapshot(bases))
        if spy is not None:
            await spy.wait()
        label = f"direct to tickets, concurrency {GATEWAY_CONCURRENCY} (the same load, no gateway)"
        await measure(label, service, tickets, senior, path, requests, GATEWAY_CONCURRENCY)
        spy = await spy_on(args, processes[0].pid, "detail")
        detail = f"detail (GET /api/tickets/{DETAIL_TICKET}), direct, concurrency {CONCURRENCY}"
        await measure(detail, service, tickets, senior, f"/api/tickets/{DETAIL_TICKET}", requests)
        if spy is not None:
            await spy.wait()
        label = f"  direct + topic_alerts={RARE_WORD} (1%)"
        await measure(
            label, service, tickets, senior, f"{path}&topic_alerts={RARE_WORD}", requests // 4
        )
        label = "  direct, as an agent (own tickets only)"
        await measure(label, service, tickets, agent, path, requests // 4)

        print("raw SQL (the route's statement over asyncpg):")
        principal = Principal(kind="agent", agent_id="bench", role=Role.SENIOR_AGENT)
        open_only = InboxQuery(status=TicketStatus.OPEN, limit=50)
        raw_p99: dict[int, float] = {}
        for label, query, runs, concurrency in [
            ("status=open, one at a time", open_only, 500, 1),
            (
                f"status=open, concurrency {GATEWAY_CONCURRENCY}",
                open_only,
                requests,
                GATEWAY_CONCURRENCY,
            ),
            (f"  + topic alert {RARE_WORD} (1% of tickets)", alert(open_only, RARE_WORD), 300, 1),
            ("  + topic alert refund (75% of tickets)", alert(open_only, "refund"), 10, 1),
        ]:
            sql = await raw_sql(dsn, query, principal, runs, concurrency)
            raw_p99[concurrency] = raw_p99.get(concurrency, sql["p99"])
            print(
                f"{label:<46} p50 {sql['p50']:6.2f} ms   p99 {sql['p99']:6.2f} ms   "
                f"(EXPLAIN ANALYZE: {sql['server']:.2f} ms, {runs} runs)"
            )
        print(
            f"gateway p99 at concurrency {GATEWAY_CONCURRENCY} / raw SQL p99: "
            f"{gateway_p99 / raw_p99[1]:.1f}x one at a time, "
            f"{gateway_p99 / raw_p99[GATEWAY_CONCURRENCY]:.1f}x at the same concurrency"
            "  [goal <= 5x]"
        )
        print(f"load average at the end {os.getloadavg()[0]:.1f} (1 min)")
        record(
            "inbox page (limit=50, status=open, 100k tickets): tickets CPU per request",
            "≤ 0.5 ms",
            f"{PER_REQUEST[direct]['tickets']:.2f} ms",
            f"direct, concurrency {CONCURRENCY}, idle subtracted",
        )
        record(
            "ticket detail (one message): tickets CPU per request",
            "≤ 0.5 ms",
            f"{PER_REQUEST[detail]['tickets']:.2f} ms",
            f"direct, concurrency {CONCURRENCY}, idle subtracted",
        )
        record(
            f"inbox via the gateway at concurrency {GATEWAY_CONCURRENCY}: p99 / raw SQL p99",
            "≤ 5x",
            f"{gateway_p99 / raw_p99[GATEWAY_CONCURRENCY]:.1f}x (SQL at the same concurrency), "
            f"{gateway_p99 / raw_p99[1]:.1f}x (SQL one at a time)",
            f"gateway p99 {gateway_p99:.1f} ms",
        )
    finally:
        stop_processes(processes)
        if args.keep or args.database:
            print(f"kept database {name}")
        else:
            await drop_database(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port-offset", type=int, default=0, help="ports 8001/8002 + this")
    parser.add_argument("--profile", action="store_true", help="py-spy the tickets process")
    parser.add_argument(
        "--tickets-src", help="run the tickets service from this src folder (a before/after run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--database", help="reuse a database kept by --keep (not dropped)")
    parser.add_argument(
        "--src", help="serve tickets and the gateway from this checkout (e.g. /work/main)"
    )
    asyncio.run(main(parser.parse_args()))
