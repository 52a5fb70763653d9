"""Cost per ticket: the whole suite, N clients creating a ticket + one customer message each.

Needs the local infrastructure (`make infra`). Starts the suite as `make run` does (the
launcher in deploy/local), on ports offset by 15000 (`--port-offset`), with scratch
databases, a private topic prefix and consumer groups, Redis database 7 (`--redis-db`,
flushed); drives `--clients` clients through the gateway at `--rate` tickets/s for
`--seconds`, waits until everything settled (outboxes published,
consumer lag 0, processed_events still), then prints:

- CPU per ticket+message summed over every suite process, Kafka and the PostgreSQL backends
  of the suite's databases (+ its writer processes), from /proc, idle baseline subtracted;
- CPU per consumed event per service (the service's CPU / its processed_events rows; the
  tickets figure includes its HTTP work) and events consumed per ticket+message, per handler;
- the rate sustained, and created -> score visible in the tickets list, p50/p99.

`KAFKA_BOOTSTRAP_SERVERS` names another broker (one of your own, to measure its settings); the
Kafka CPU is then that broker's. Kafka and PostgreSQL are shared: their CPU includes whatever
else runs on them meanwhile (the idle baseline removes a steady background, not a burst).

    uv run python bench/suite_cost.py [--rate 10] [--seconds 30] [--clients 8]
                                      [--profile scoring]   # py-spy on one service (PyPI)
                                      [--baseline main]     # that revision's service code

`--profile` records that service with py-spy during the load (collapsed stacks, for a flame
graph or `sort | uniq` by frame) and prints the file's path. `--baseline REV` runs the
services' code of that revision (`git archive`, first on PYTHONPATH; this checkout's
environment, launcher and migrations), for before/after runs taken in turn; its figures are
not handed to `make bench`'s table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from _shared import (
    baseline_tree,
    cpu_seconds,
    drop_scratch,
    flushed_redis,
    percentile,
    py_spy_record,
    record,
)
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from quimbi_common.settings import DEV_API_KEY
from quimbi_common.testing import KAFKA, unique

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from launcher import Options, Suite  # noqa: E402

ADMIN_DSN = "postgresql://quimbi:quimbi@127.0.0.1:5432/postgres"
CONSUMERS = ("tickets", "agents", "sla", "scoring", "ai-proxy")
PG_WRITERS = ("walwriter", "checkpointer", "background writer")


def kafka_pid(bootstrap: str = KAFKA) -> int | None:
    """The JVM of the broker at `bootstrap` (KAFKA_BOOTSTRAP_SERVERS, default the shared one on
    :9092): the `kafka.Kafka` process whose server.properties listens on that address."""
    listener = f"PLAINTEXT://{bootstrap.split(',', 1)[0]}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"kafka.Kafka" in args and listener in Path(args[-2].decode()).read_bytes():
                    return int(entry.name)
    return None


def safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


@dataclass
class CpuSample:
    """CPU seconds per process group at one moment."""

    at: float
    by_group: dict[str, float] = field(default_factory=dict)
    postgres_pids: dict[int, float] = field(default_factory=dict)


class CpuMeter:
    """Reads the CPU time of the suite's processes, Kafka and the suite's PostgreSQL backends."""

    def __init__(self, suite: Suite, databases: list[str]) -> None:
        self.suite = suite
        self.databases = databases
        self.kafka = kafka_pid()

    async def sample(self) -> CpuSample:
        sample = CpuSample(time.monotonic())
        for service in self.suite.services:
            if service.process is not None:
                sample.by_group[service.name] = safe_cpu(service.process.pid)
        sample.by_group["kafka"] = safe_cpu(self.kafka) if self.kafka else 0.0
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])"
                " OR backend_type = ANY($2::text[])",
                self.databases,
                list(PG_WRITERS),
            )
            own = await conn.fetchval("SELECT pg_backend_pid()")
        finally:
            await conn.close()
        sample.postgres_pids = {r["pid"]: safe_cpu(r["pid"]) for r in rows if r["pid"] != own}
        return sample

    @staticmethod
    def used(before: CpuSample, after: CpuSample) -> dict[str, float]:
        """CPU seconds between two samples (a backend born in between counts from zero)."""
        used = {g: after.by_group[g] - before.by_group.get(g, 0.0) for g in after.by_group}
        used["postgres"] = sum(
            cpu - before.postgres_pids.get(pid, 0.0) for pid, cpu in after.postgres_pids.items()
        )
        return used


async def consumer_lag(prefix: str, groups: list[str]) -> int:
    """Messages not yet committed by the groups, over the partitions each has committed on."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    reader = AIOKafkaConsumer(bootstrap_servers=KAFKA)
    await admin.start()
    await reader.start()
    try:
        lag = 0
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            parts = [tp for tp in committed if tp.topic.startswith(prefix)]
            ends = await reader.end_offsets(parts) if parts else {}
            lag += sum(ends[tp] - committed[tp].offset for tp in parts)
        return lag
    finally:
        await reader.stop()
        await admin.close()


async def consumed_counts(databases: dict[str, str], since: float) -> dict[str, dict[str, int]]:
    """processed_events rows per service and handler since `since` (epoch seconds)."""
    counts: dict[str, dict[str, int]] = {}
    for name, database in databases.items():
        conn = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}")
        try:
            rows = await conn.fetch(
                "SELECT consumer, count(*) AS n FROM processed_events"
                " WHERE processed_at >= to_timestamp($1) GROUP BY consumer",
                since,
            )
        finally:
            await conn.close()
        counts[name] = {r["consumer"].split(":", 1)[-1]: r["n"] for r in rows}
    return counts


async def unpublished(databases: dict[str, str]) -> int:
    total = 0
    for database in databases.values():
        conn = await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}")
        try:
            total += await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        finally:
            await conn.close()
    return total


async def wait_settled(
    prefix: str, groups: list[str], databases: dict[str, str], since: float, timeout: float
) -> float:
    """Wait until outboxes are published, lag is 0 and nothing more is consumed for 1 s;
    returns when the last change was seen (monotonic)."""
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, int]] | None = None
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        counts = await consumed_counts(databases, since)
        if counts != last:
            last, last_change = counts, time.monotonic()
        elif (
            time.monotonic() - last_change >= 1.0
            and await unpublished(databases) == 0
            and await consumer_lag(prefix, groups) == 0
        ):
            return last_change
        await asyncio.sleep(0.25)
    raise TimeoutError(f"not settled after {timeout:.0f} s")


class Load:
    """N clients, each creating a ticket then posting one customer message, paced at a rate."""

    def __init__(self, gateway: str, tickets_dsn: str, clients: int) -> None:
        self.gateway = gateway
        self.tickets_dsn = tickets_dsn
        self.slots = asyncio.Semaphore(clients)
        self.created: dict[str, float] = {}
        self.visible: dict[str, float] = {}
        self.done: list[float] = []
        self.failures: list[str] = []
        self.request_ms: list[float] = []

    async def one(self, client: httpx.AsyncClient, i: int) -> None:
        async with self.slots:
            headers = {"X-API-Key": DEV_API_KEY}
            started = time.perf_counter()
            response = await client.post(
                "/api/tickets",
                headers=headers,
                json={
                    "customer": {"email": f"cost-{i % 500}@example.com", "name": "Cost Bench"},
                    "subject": f"Order {i} never arrived",
                    "priority": "high",
                    "channel": "email",
                },
            )
            answered = time.perf_counter()
            if response.status_code != 201:
                self.failures.append(f"create {response.status_code}: {response.text[:200]}")
                return
            ticket_id = response.json()["id"]
            self.created[ticket_id] = answered
            self.request_ms.append((answered - started) * 1000)
            started = time.perf_counter()
            response = await client.post(
                f"/api/tickets/{ticket_id}/messages",
                headers=headers,
                json={"content": "Still waiting for my parcel, please help.", "from_agent": False},
            )
            if response.status_code != 201:
                self.failures.append(f"message {response.status_code}: {response.text[:200]}")
                return
            self.request_ms.append((time.perf_counter() - started) * 1000)
            self.done.append(time.perf_counter())

    async def run(self, count: int, rate: float) -> float:
        """Returns the seconds from the first start to the last answer."""
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.gateway, timeout=60.0, limits=limits) as client:
            began = time.perf_counter()
            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(self.one(client, i)))
            await asyncio.gather(*tasks)
            return (max(self.done) if self.done else time.perf_counter()) - began

    async def poll_scores(self) -> None:
        """Record when each ticket's score is committed where GET /api/tickets reads it."""
        conn = await asyncpg.connect(self.tickets_dsn)
        try:
            while True:
                pending = [t for t in self.created if t not in self.visible]
                if pending:
                    rows = await conn.fetch(
                        "SELECT id FROM tickets WHERE id = ANY($1::text[]) AND score_version > 0",
                        pending,
                    )
                    now = time.perf_counter()
                    for row in rows:
                        self.visible[row["id"]] = now
                await asyncio.sleep(0.01)
        finally:
            await conn.close()


async def idle_cpu(meter: CpuMeter, seconds: float = 5.0) -> dict[str, float]:
    """CPU seconds per second each process group uses with no load."""
    before = await meter.sample()
    await asyncio.sleep(seconds)
    after = await meter.sample()
    return {g: v / (after.at - before.at) for g, v in CpuMeter.used(before, after).items()}


async def start_profiler(suite: Suite, name: str, seconds: float) -> asyncio.subprocess.Process:
    """py-spy (from PyPI, through uv) on one service for the load's duration."""
    [service] = [s for s in suite.services if s.name == name]
    assert service.process is not None
    output = suite.opts.log_dir / f"{name}.pyspy.txt"
    return await py_spy_record(service.process.pid, seconds, output, 200)


async def main(
    rate: float,
    seconds: float,
    clients: int,
    warmup: int,
    profile: str | None,
    code: str | None = None,
    port_offset: int = 15000,
    redis_db: int = 7,
) -> None:
    namespace = unique("_cost")
    prefix = f"{namespace}."
    redis_url = flushed_redis(redis_db)
    opts = Options(
        port_offset=port_offset,
        namespace=namespace,
        kafka=KAFKA,
        redis_url=redis_url,
        log_dir=ROOT / ".local" / "logs" / namespace.strip("_"),
        seed=False,
        echo_logs=False,
        extra_env={
            "AUTO_ASSIGN": "false",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_AGENT": "1000000",
            "RATE_LIMIT_PER_API_KEY": "1000000",
            "RATE_LIMIT_PER_IP": "1000000",
            **({"PYTHONPATH": code} if code else {}),
        },
    )
    suite = Suite(opts)
    groups = [f"{prefix}{name}" for name in CONSUMERS]  # CommonSettings.consumer_group
    databases = {s.name: s.database for s in suite.services if s.database}
    base = ADMIN_DSN.rsplit("/", 1)[0]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; logs {opts.log_dir}")
    await suite.prepare_databases()
    await suite.start()
    try:
        await suite.wait_ready(timeout=180)
        meter = CpuMeter(suite, list(databases.values()))
        warm = Load(suite.gateway_url, f"{base}/{databases['tickets']}", clients)
        await warm.run(warmup, min(rate, 10.0))
        await wait_settled(prefix, groups, databases, 0.0, timeout=180)
        idle_rates = await idle_cpu(meter)
        count = round(rate * seconds)
        load = Load(suite.gateway_url, f"{base}/{databases['tickets']}", clients)
        since = time.time()
        poller = asyncio.create_task(load.poll_scores())
        before = await meter.sample()
        spy = await start_profiler(suite, profile, seconds) if profile else None
        took = await load.run(count, rate)
        last_change = await wait_settled(prefix, groups, databases, since, timeout=300)
        after = await meter.sample()
        later = await idle_cpu(meter)  # the idle rate again: the shared servers' load varies
        idle = {g: min(idle_rates.get(g, 0.0), later.get(g, 0.0)) for g in later}
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        if spy is not None:
            await spy.wait()
            print(f"py-spy profile of {profile}: {opts.log_dir / f'{profile}.pyspy.txt'}")
        span = last_change - before.at
        used = CpuMeter.used(before, after)
        # the settle check's own quiet wait is idle time too: subtract idle over the whole span
        net = {g: used[g] - idle.get(g, 0.0) * (after.at - before.at) for g in used}
        counts = await consumed_counts(databases, since)
        report(rate, clients, load, count, took, span, net, idle, counts, to_table=code is None)
        await report_pipeline(databases, list(load.created))
        await report_batches(suite, len(load.done) + warmup)
    finally:
        await suite.stop()
        await drop_scratch(databases.values(), prefix, groups)


async def report_batches(suite: Suite, tickets: int) -> None:
    """Batches each consumer applied (since start), from its /metrics; and the deliveries it
    dropped unread as news for their producer alone (`events.for_others`), which leave no
    processed_events row and so are not in "events consumed"."""
    print("  consumer batches since start (count, mean records, mean / max-bucket seconds):")
    dropped: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5.0) as client:
        for service in suite.services:
            if service.name not in CONSUMERS:
                continue
            text = (await client.get(f"{service.url}/metrics")).text
            found: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (
                        sample.name == "events_consumed_total"
                        and sample.labels.get("outcome") == "producer_only"
                    ):
                        dropped[service.name] = dropped.get(service.name, 0.0) + sample.value
                    if sample.name in (
                        "consumer_batch_records_count",
                        "consumer_batch_records_sum",
                        "consumer_batch_seconds_sum",
                    ):
                        found[sample.name] = sample.value
            count = found.get("consumer_batch_records_count", 0.0)
            if count:
                print(
                    f"    {service.name}: {count:.0f} batches, "
                    f"{found['consumer_batch_records_sum'] / count:.1f} records, "
                    f"{found['consumer_batch_seconds_sum'] / count * 1000:.1f} ms each"
                )
    if dropped:
        text = ", ".join(f"{name} {n / tickets:.2f}" for name, n in sorted(dropped.items()))
        print(
            f"  dropped unread, news for the producer alone, per ticket+message (warm-up "
            f"included): {sum(dropped.values()) / tickets:.2f} ({text})"
        )


async def report_pipeline(databases: dict[str, str], ids: list[str]) -> None:
    """Where created -> score visible goes, from the databases' own clocks (one machine):
    commit of the create, its ticket.created acknowledged by Kafka, scoring's transaction,
    ticket.scored acknowledged, the tickets transaction that stored it."""
    base = ADMIN_DSN.rsplit("/", 1)[0]
    tickets = await asyncpg.connect(f"{base}/{databases['tickets']}")
    scoring = await asyncpg.connect(f"{base}/{databases['scoring']}")
    try:
        created = await tickets.fetch(
            "SELECT key, event_id, created_at, published_at FROM outbox"
            " WHERE topic = 'ticket.created' AND key = ANY($1::text[])",
            ids,
        )
        handled = {
            r["event_id"]: r["processed_at"]
            for r in await scoring.fetch(
                "SELECT event_id, processed_at FROM processed_events"
                " WHERE event_id = ANY($1::uuid[])",
                [r["event_id"] for r in created],
            )
        }
        scored = {
            r["key"]: r
            for r in await scoring.fetch(
                "SELECT DISTINCT ON (key) key, event_id, created_at, published_at FROM outbox"
                " WHERE topic = 'ticket.scored' AND key = ANY($1::text[]) ORDER BY key, id",
                ids,
            )
        }
        stored = {
            r["event_id"]: r["processed_at"]
            for r in await tickets.fetch(
                "SELECT event_id, processed_at FROM processed_events"
                " WHERE event_id = ANY($1::uuid[])",
                [r["event_id"] for r in scored.values()],
            )
        }
    finally:
        await tickets.close()
        await scoring.close()
    stages: dict[str, list[float]] = {
        "tickets relay: create committed -> ticket.created acknowledged": [],
        "scoring consumer: acknowledged -> its transaction starts": [],
        "scoring: transaction starts -> ticket.scored acknowledged": [],
        "tickets consumer: acknowledged -> its transaction starts": [],
    }
    values = list(stages.values())
    for row in created:
        first = scored.get(row["key"])
        if row["published_at"] is None or row["event_id"] not in handled or first is None:
            continue
        if first["published_at"] is None or first["event_id"] not in stored:
            continue
        times = [
            row["created_at"],
            row["published_at"],
            handled[row["event_id"]],
            first["published_at"],
            stored[first["event_id"]],
        ]
        for i, stage in enumerate(values):
            stage.append((times[i + 1] - times[i]).total_seconds() * 1000)
    print("  created -> first score stored, by stage (database clocks):")
    for label, ms in stages.items():
        if ms:
            print(f"    {label}: p50 {percentile(ms, 50):.0f} ms  p99 {percentile(ms, 99):.0f} ms")


def report(
    rate: float,
    clients: int,
    load: Load,
    count: int,
    took: float,
    span: float,
    net: dict[str, float],
    idle: dict[str, float],
    counts: dict[str, dict[str, int]],
    *,
    to_table: bool = True,
) -> None:
    done = len(load.done)
    print(
        f"\n{count} tickets + 1 customer message each, offered at {rate:.0f}/s by {clients} clients"
    )
    print(
        f"  completed {done}, failed {len(load.failures)}"
        + (f": {load.failures[0]}" if load.failures else "")
    )
    print(f"  requests answered in {took:.1f} s: {done / took:.1f} tickets+messages/s")
    print(
        f"  settled (lag 0, outboxes sent) {span:.1f} s after the first request: "
        f"{done / span:.1f}/s sustained end to end"
    )
    if load.request_ms:
        print(
            f"  request p50 {percentile(load.request_ms, 50):.0f} ms  "
            f"p99 {percentile(load.request_ms, 99):.0f} ms"
        )
    to_visible = [
        (load.visible[t] - load.created[t]) * 1000 for t in load.created if t in load.visible
    ]
    if to_visible:
        print(
            f"  created (201) -> score visible in the list: p50 {percentile(to_visible, 50):.0f} ms"
            f"  p99 {percentile(to_visible, 99):.0f} ms  ({len(to_visible)}/{len(load.created)})"
        )
    own = sum(v for g, v in net.items() if g != "kafka")
    events = {name: sum(c.values()) for name, c in counts.items()}
    print(
        f"\n  CPU per ticket+message, idle subtracted: suite processes + their PostgreSQL "
        f"backends {own / done * 1000:.1f} ms; with Kafka {(own + net['kafka']) / done * 1000:.1f}"
        " ms (the broker is shared: its figure includes other users' load)"
    )
    print(f"  events consumed per ticket+message: {sum(events.values()) / done:.1f}")
    print(
        f"  {'process':<10} {'CPU s':>7} {'idle %':>7} {'ms/ticket':>10} {'events':>7} "
        f"{'ev/ticket':>9} {'ms/event':>9}"
    )
    for name in sorted(net, key=lambda g: -net[g]):
        n = events.get(name, 0)
        per_event = f"{net[name] / n * 1000:9.2f}" if n else f"{'':>9}"
        per_ticket_events = f"{n / done:9.2f}" if n else f"{'':>9}"
        print(
            f"  {name:<10} {net[name]:7.2f} {idle.get(name, 0.0) * 100:7.1f} "
            f"{net[name] / done * 1000:10.1f} {n or '':>7} {per_ticket_events} {per_event}"
        )
    if to_table:
        record_figures(rate, done, span, own, net, events, to_visible)
    print("  consumed per handler (per ticket+message):")
    for name, per_handler in counts.items():
        text = ", ".join(f"{h} {n / done:.2f}" for h, n in sorted(per_handler.items()))
        print(f"    {name}: {text}")


def record_figures(
    rate: float,
    done: int,
    span: float,
    own: float,
    net: dict[str, float],
    events: dict[str, int],
    to_visible: list[float],
) -> None:
    """The issue #15 figures of this run, for `make bench`'s table."""
    at = f"{rate:.0f}/s offered"
    per_ticket = f"{own / done * 1000:.1f} ms ({(own + net['kafka']) / done * 1000:.1f} with Kafka)"
    record("CPU per ticket + 1 message, all suite processes, settled", "≤ 25 ms", per_ticket, at)
    record("events consumed per ticket + message", "≤ 10", f"{sum(events.values()) / done:.1f}", at)
    per_event = ", ".join(
        f"{name} {net[name] / n * 1000:.2f}" for name, n in sorted(events.items()) if n
    )
    record("CPU per consumed event, per service (ms)", "≤ 1 ms", per_event, at)
    record(
        "sustained creates (+1 message), settled end to end", "≥ 100/s", f"{done / span:.1f}/s", at
    )
    if to_visible:
        seen = f"p50 {percentile(to_visible, 50):.0f} ms, p99 {percentile(to_visible, 99):.0f} ms"
        record("created → score visible in the list", "p99 < 250 ms at 50/s", seen, at)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10.0, help="tickets (+1 message) per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients at most")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profile", choices=(*CONSUMERS, "gateway"), help="py-spy a service")
    parser.add_argument("--baseline", help="run the services' code of this git revision")
    parser.add_argument("--port-offset", type=int, default=15000, help="so runs can coexist")
    parser.add_argument("--redis-db", type=int, default=7, help="flushed at the start")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        code = stack.enter_context(baseline_tree(args.baseline)) if args.baseline else None
        if code:
            print(f"services' code of {args.baseline}")
        asyncio.run(
            main(
                args.rate,
                args.seconds,
                args.clients,
                args.warmup,
                args.profile,
                code,
                args.port_offset,
                args.redis_db,
            )
        )
