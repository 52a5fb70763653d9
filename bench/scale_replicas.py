"""Scale past one machine: the suite with 1 and with 2 replicas of every serve and consume process.

Needs the local infrastructure (`make infra`). Starts the suite as `make run` does, split into
`serve` and `consume` processes (deploy/local/launcher.py `--split`), once with one process of
each role per service and once with two (`--replicas <name>=2 --replicas <name>-consume=2`: two
API replicas behind the gateway, which takes turns over a comma-separated upstream list; two
members of each consumer group, whose partitions rebalance; two outbox relays per database,
one of which publishes at a time). The same load each time (bench/suite_cost.py's: clients
creating a ticket + one customer message each through the gateway), then, once everything
settled, it reports:

- CPU per ticket+message over every suite process and the suite's PostgreSQL backends (from
  /proc, idle baseline subtracted; Kafka apart: the broker is shared), and 2 replicas against 1
  (goal: at most +10 %);
- per-ticket ordering violations (goal 0), two ways:
  * published: every topic read back from Kafka; per (topic, ticket) the events must come in
    the order their outbox rows were written (a relay publishing while another holds the lock
    would interleave them), and an event published twice is counted apart;
  * applied: per consumer (handler) and ticket, from `processed_events`, no event may be
    applied in a later transaction than an event of the same topic and ticket written after
    it (two group members working one partition during a rebalance would do that).

    uv run python bench/scale_replicas.py [--rate 15] [--seconds 20] [--variants 1,2]

Ports offset by 15500, Redis database 11, a private topic prefix per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from _shared import drop_scratch, flushed_redis, record
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from suite_cost import (
    ADMIN_DSN,
    CONSUMERS,
    CpuMeter,
    Load,
    consumed_counts,
    idle_cpu,
    wait_settled,
)

from quimbi_common.testing import KAFKA, unique

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from launcher import Options, Suite  # noqa: E402

PORT_OFFSET = 15500
REDIS_DB = 11


@dataclass
class Run:
    replicas: int
    done: int = 0
    failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # net CPU s per process
    events: int = 0
    published_out_of_order: int = 0
    published_twice: int = 0
    applied_out_of_order: int = 0
    sequences: int = 0  # (topic, ticket) sequences checked on Kafka
    applied_checked: int = 0  # (handler, topic, ticket) sequences checked in processed_events
    load: float = 0.0

    @property
    def own(self) -> float:
        return sum(v for k, v in self.cpu.items() if k != "kafka")

    def per_ticket(self, group: str | None = None) -> float:
        if group is None:
            return self.own / self.done * 1000
        return sum(v for k, v in self.cpu.items() if kind(k) == group) / self.done * 1000


def kind(process: str) -> str:
    """serve / consume / gateway / postgres / other, for the breakdown."""
    name = process.split("#", 1)[0]
    if name.endswith("-consume"):
        return "consume"
    if name in CONSUMERS:
        return "serve"
    return name if name in ("gateway", "postgres", "kafka") else "other"


async def read_back(prefix: str) -> dict[tuple[str, str], list[str]]:
    """Every event id on the suite's topics, per (topic, key), in offset order."""
    reader = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    await reader.start()
    try:
        topics = [t for t in await reader.topics() if t.startswith(prefix)]
        if not topics:
            admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
            await admin.start()
            try:
                topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
            finally:
                await admin.close()
        partitions = []
        for topic in topics:
            if topic.endswith(".dlq"):
                continue
            for p in reader.partitions_for_topic(topic) or await _partitions(reader, topic):
                partitions.append(TopicPartition(topic, p))
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        sequences: dict[tuple[str, str], list[str]] = defaultdict(list)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await reader.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for rec in records:
                    envelope = json.loads(rec.value)
                    key = (rec.key or b"").decode()
                    sequences[(tp.topic.removeprefix(prefix), key)].append(envelope["id"])
                    if rec.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        return sequences
    finally:
        await reader.stop()


async def _partitions(reader: AIOKafkaConsumer, topic: str) -> set[int]:
    await reader._client.force_metadata_update()  # aiokafka keeps no view of other topics
    return reader.partitions_for_topic(topic) or set()


async def outbox_positions(databases: dict[str, str]) -> dict[str, int]:
    """event id -> its outbox row's id (the order the producer wrote it, per database)."""
    positions: dict[str, int] = {}
    base = ADMIN_DSN.rsplit("/", 1)[0]
    for database in databases.values():
        conn = await asyncpg.connect(f"{base}/{database}")
        try:
            for row in await conn.fetch("SELECT event_id, id FROM outbox"):
                positions[str(row["event_id"])] = row["id"]
        finally:
            await conn.close()
    return positions


def publish_violations(
    sequences: dict[tuple[str, str], list[str]], positions: dict[str, int]
) -> tuple[int, int]:
    """(events published before an earlier-written event of the same topic and ticket,
    events published again). An id seen twice is a repeat (skipped by consumers), not a
    step back."""
    out_of_order = twice = 0
    for ids in sequences.values():
        seen: set[str] = set()
        highest = -1
        for event_id in ids:
            if event_id in seen:
                twice += 1
                continue
            seen.add(event_id)
            position = positions.get(event_id)
            if position is None:
                continue  # outbox rows older than the retention, or another producer's
            if position < highest:
                out_of_order += 1
            highest = max(highest, position)
    return out_of_order, twice


async def apply_violations(
    databases: dict[str, str],
    sequences: dict[tuple[str, str], list[str]],
    positions: dict[str, int],
) -> tuple[int, int]:
    """(events a consumer applied in a later transaction than a later-written event of the
    same topic and ticket, sequences checked), from every consumer's processed_events."""
    where = {event_id: topic_key for topic_key, ids in sequences.items() for event_id in set(ids)}
    base = ADMIN_DSN.rsplit("/", 1)[0]
    violations = checked = 0
    for database in databases.values():
        conn = await asyncpg.connect(f"{base}/{database}")
        try:
            rows = await conn.fetch("SELECT consumer, event_id, processed_at FROM processed_events")
        finally:
            await conn.close()
        applied: dict[tuple[str, str, str], list[tuple[float, int]]] = defaultdict(list)
        for row in rows:
            event_id = str(row["event_id"])
            if event_id not in where or event_id not in positions:
                continue
            topic, key = where[event_id]
            applied[(row["consumer"], topic, key)].append(
                (row["processed_at"].timestamp(), positions[event_id])
            )
        for steps in applied.values():
            checked += 1
            steps.sort()
            highest_before = -1  # the highest position applied in an earlier transaction
            i = 0
            while i < len(steps):
                j = i
                while j < len(steps) and steps[j][0] == steps[i][0]:  # one transaction
                    j += 1
                violations += sum(1 for _, position in steps[i:j] if position < highest_before)
                highest_before = max(highest_before, *(p for _, p in steps[i:j]))
                i = j
    return violations, checked


async def one_run(replicas: int, rate: float, seconds: float, clients: int, warmup: int) -> Run:
    namespace = unique("_scale")
    prefix = f"{namespace}."
    redis_url = flushed_redis(REDIS_DB)
    opts = Options(
        port_offset=PORT_OFFSET,
        namespace=namespace,
        redis_url=redis_url,
        kafka=KAFKA,
        log_dir=ROOT / ".local" / "logs" / namespace.strip("_"),
        seed=False,
        echo_logs=False,
        split=True,
        replicas={
            **{name: replicas for name in CONSUMERS},
            **{f"{name}-consume": replicas for name in CONSUMERS},
        }
        if replicas > 1
        else {},
        extra_env={
            "AUTO_ASSIGN": "false",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_AGENT": "1000000",
            "RATE_LIMIT_PER_API_KEY": "1000000",
            "RATE_LIMIT_PER_IP": "1000000",
        },
    )
    suite = Suite(opts)
    groups = [f"{prefix}{name}" for name in CONSUMERS]
    databases = {s.service: s.database for s in suite.services if s.database}
    base = ADMIN_DSN.rsplit("/", 1)[0]
    run = Run(replicas)
    print(
        f"\n== {replicas} replica(s) of each serve and consume process "
        f"({len(suite.services)} processes); load average {os.getloadavg()[0]:.1f}; "
        f"logs {opts.log_dir}",
        flush=True,
    )
    await suite.prepare_databases()
    await suite.start()
    try:
        await suite.wait_ready(timeout=240)
        meter = CpuMeter(suite, list(databases.values()))
        warm = Load(suite.gateway_url, f"{base}/{databases['tickets']}", clients)
        await warm.run(warmup, min(rate, 10.0))
        await wait_settled(prefix, groups, databases, 0.0, timeout=240)
        idle_before = await idle_cpu(meter)
        load = Load(suite.gateway_url, f"{base}/{databases['tickets']}", clients)
        since = time.time()
        before = await meter.sample()
        run.load = os.getloadavg()[0]
        await load.run(round(rate * seconds), rate)
        await wait_settled(prefix, groups, databases, since, timeout=400)
        after = await meter.sample()
        idle_after = await idle_cpu(meter)
        idle = {g: min(idle_before.get(g, 0.0), idle_after.get(g, 0.0)) for g in idle_after}
        used = CpuMeter.used(before, after)
        run.cpu = {g: used[g] - idle.get(g, 0.0) * (after.at - before.at) for g in used}
        run.done, run.failures = len(load.done), len(load.failures)
        if load.failures:
            print(f"  first failure: {load.failures[0]}")
        counts = await consumed_counts(databases, since)
        run.events = sum(sum(c.values()) for c in counts.values())
        sequences = await read_back(prefix)
        positions = await outbox_positions(databases)
        run.sequences = len(sequences)
        run.published_out_of_order, run.published_twice = publish_violations(sequences, positions)
        run.applied_out_of_order, run.applied_checked = await apply_violations(
            databases, sequences, positions
        )
        report(run)
        return run
    finally:
        await suite.stop()
        await drop_scratch(databases.values(), prefix, groups)


def report(run: Run) -> None:
    print(
        f"  {run.done} tickets + 1 message each ({run.failures} failed), load average "
        f"{run.load:.1f} at the start of the load"
    )
    print(
        f"  CPU per ticket+message (suite processes + their PostgreSQL backends, idle "
        f"subtracted): {run.per_ticket():.1f} ms; "
        f"Kafka {run.cpu.get('kafka', 0.0) / run.done * 1000:.1f} ms"
    )
    parts = ", ".join(
        f"{group} {run.per_ticket(group):.1f}"
        for group in ("serve", "consume", "gateway", "postgres", "other")
    )
    print(f"    by kind (ms per ticket+message): {parts}")
    print(f"  events consumed per ticket+message: {run.events / max(run.done, 1):.1f}")
    print(
        f"  ordering: {run.published_out_of_order} published out of order and "
        f"{run.published_twice} published twice over {run.sequences} (topic, ticket) sequences; "
        f"{run.applied_out_of_order} applied out of order over {run.applied_checked} "
        "(handler, topic, ticket) sequences"
    )


async def main(variants: list[int], rate: float, seconds: float, clients: int, warmup: int) -> None:
    runs = [await one_run(n, rate, seconds, clients, warmup) for n in variants]
    at = f"{rate:.0f}/s offered, {seconds:.0f} s"
    print("\nreplicas  CPU ms/ticket+msg  vs 1   violations (published / twice / applied)")
    first = runs[0]
    for run in runs:
        change = (run.per_ticket() / first.per_ticket() - 1) * 100
        print(
            f"{run.replicas:>8}  {run.per_ticket():17.1f}  {change:+5.1f} %  "
            f"{run.published_out_of_order} / {run.published_twice} / {run.applied_out_of_order}"
        )
        record(
            f"CPU per ticket + message, {run.replicas} replica(s) of each serve and consume",
            "2 replicas ≤ +10 % over 1",
            f"{run.per_ticket():.1f} ms ({change:+.1f} % vs {first.replicas})",
            at,
        )
        record(
            f"per-ticket ordering violations, {run.replicas} replica(s)",
            "0",
            f"{run.published_out_of_order + run.applied_out_of_order} "
            f"(published {run.published_out_of_order}, applied {run.applied_out_of_order}; "
            f"{run.published_twice} published twice, skipped by id)",
            at,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=15.0, help="tickets (+1 message) per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--variants", default="1,2", help="replica counts, in order")
    args = parser.parse_args()
    counts = [int(v) for v in args.variants.split(",")]
    asyncio.run(main(counts, args.rate, args.seconds, args.clients, args.warmup))
