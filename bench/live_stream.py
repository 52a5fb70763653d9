"""The live inbox: event on Kafka -> on the agent's stream, with N agents connected at M events/s.

Needs the local infrastructure (`make infra`). Starts its own tickets process (and a gateway
with `--via-gateway`) on free ports, with a scratch database and a private Kafka topic prefix:

1. N agents (role `agent`, real RS256 tokens) each create one ticket (so it is theirs), then
   open `GET /api/tickets/live` (raw HTTP/1.1 streams, one connection each); `--seniors K`
   makes K of them senior agents, who are streamed every event.
2. The script produces `ticket.scored` events for those tickets at M/s for S seconds (the
   feed looks each assignee up in the tickets database: the common path) and times each from
   just before the produce call until it arrives on the stream of the agent it belongs to.
3. CPU per event: user+system time of the tickets process (and the gateway) over the run,
   minus their idle rate with the same connections open (heartbeats), divided by the events.
   Redis and Kafka, shared with the rest of the machine, are not counted.

    uv run python bench/live_stream.py [--agents 200] [--rate 100] [--seconds 20]
                                       [--seniors 0] [--via-gateway] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from _shared import cpu_seconds, free_port, percentile, record
from aiokafka import AIOKafkaProducer
from scoring_latency import service, settled
from tickets_inbox import profile

from quimbi_common.enums import Role
from quimbi_common.events import ScoreParts, TicketScoredData, build_event
from quimbi_common.kafka import ensure_topics
from quimbi_common.settings import CommonSettings
from quimbi_common.testing import KAFKA, SigningKeys, migrated_database, unique

ROOT = Path(__file__).resolve().parents[1]
APPENDED: dict[str, float] = {}  # event id -> when the feed appended it to the live log


class Listener:
    """One agent's stream over a raw connection: when each event id arrived."""

    def __init__(self, host: str, port: int, token: str, arrived: dict[str, float]) -> None:
        """`arrived` is filled with event id -> arrival time (perf_counter)."""
        self.host, self.port, self.token = host, port, token
        self.arrived = arrived
        self.ready = asyncio.Event()
        self.frames = 0
        self.retries = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not await self._stream():  # a 503 (a dependency slow to answer): as a client
            self.retries += 1  # would, try again after its Retry-After
            await asyncio.sleep(1)

    async def _stream(self) -> bool:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            (
                f"GET /api/tickets/live HTTP/1.1\r\nhost: {self.host}\r\n"
                f"authorization: Bearer {self.token}\r\naccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            entry_id = "0-0"
            if head.startswith(b"HTTP/1.1 503"):
                return False
            assert head.startswith(b"HTTP/1.1 200"), head
            while True:
                line = await reader.readline()
                if not line:
                    return True
                if line.startswith(b"id: "):
                    entry_id = line[4:].strip().decode()
                elif line.startswith(b"event: ready"):
                    self.ready.set()
                elif line.startswith(b"data: {"):
                    self.frames += 1
                    event_id = json.loads(line[6:]).get("event_id")
                    if event_id:
                        self.arrived.setdefault(event_id, time.perf_counter())
                        # the entry id's first part: when the feed appended it (ms, wall clock)
                        APPENDED.setdefault(event_id, int(entry_id.split("-")[0]) / 1000)
        finally:
            writer.close()


def scored(ticket_id: str, version: int) -> TicketScoredData:
    parts = ScoreParts(priority=1.0, wait=random.random(), sentiment=0.4, value=1.0, churn=0.6)
    return TicketScoredData(
        ticket_id=ticket_id,
        smart_score=round(3.0 + random.random(), 2),
        parts=parts,
        computed_at=datetime.now(UTC),
        version=version,
    )


async def run(
    agents: int,
    rate: float,
    seconds: float,
    seniors: int,
    via_gateway: bool,
    profile_to: Path | None = None,
) -> None:
    prefix = f"{unique('bench')}."
    await ensure_topics(CommonSettings(kafka_topic_prefix=prefix, kafka_bootstrap_servers=KAFKA))
    keys = SigningKeys()
    group = unique("tickets-bench-")
    common = {
        "KAFKA_TOPIC_PREFIX": prefix,
        "JWKS_JSON": keys.jwks_json,
        "JWT_ISSUER": "quimbi-support",
        "JWT_AUDIENCE": "quimbi-support-api",
    }
    migrations = ROOT / "services" / "tickets" / "migrations"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    async with contextlib.AsyncExitStack() as stack:
        database = await stack.enter_async_context(migrated_database(migrations, "bench_live"))
        tickets_env = {**common, "DATABASE_URL": database, "KAFKA_CONSUMER_GROUP": group}
        tickets_port = free_port()
        tickets = await stack.enter_async_context(
            service("quimbi_tickets", tickets_env, tickets_port)
        )
        processes = {"tickets": tickets_port}
        target = tickets
        if via_gateway:
            gateway_port = free_port()
            target = await stack.enter_async_context(
                service(
                    "quimbi_gateway",
                    {
                        **common,
                        "TICKETS_URL": tickets,
                        "RATE_LIMIT_PER_AGENT": "1000000",
                        "RATE_LIMIT_PREFIX": unique("bench-rl-"),
                    },
                    gateway_port,
                )
            )
            processes["gateway"] = gateway_port
        pids = {name: _pid_on(port) for name, port in processes.items()}

        roles = [Role.SENIOR_AGENT] * seniors + [Role.AGENT] * (agents - seniors)
        people = [(unique("agent-"), role) for role in roles]
        tokens = {agent_id: keys.token(role, agent_id) for agent_id, role in people}
        owner: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=tickets, timeout=30) as client:
            for agent_id, _ in people:
                response = await client.post(
                    "/api/tickets",
                    headers={"Authorization": f"Bearer {tokens[agent_id]}"},
                    json={
                        "customer": {"email": f"{unique('c')}@example.com"},
                        "subject": "Where is my parcel",
                        "channel": "email",
                    },
                )
                response.raise_for_status()
                owner[response.json()["id"]] = agent_id
        await settled(f"{group}-live")
        host, port = target.removeprefix("http://").split(":")
        per_agent = {agent_id: dict[str, float]() for agent_id, _ in people}
        listeners = [
            Listener(host, int(port), tokens[agent_id], per_agent[agent_id])
            for agent_id, _ in people
        ]
        for n, listener in enumerate(listeners):  # agents arrive over a few seconds
            listener.start()
            if n % 20 == 19:
                await asyncio.sleep(0.5)
        await asyncio.wait_for(asyncio.gather(*(lst.ready.wait() for lst in listeners)), 120)
        await asyncio.sleep(3)  # the ticket.created entries have been handed out by now
        idle_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(5)
        idle = {name: (cpu_seconds(pid) - idle_start[name]) / 5 for name, pid in pids.items()}

        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=0)
        await producer.start()
        sent: dict[str, tuple[float, str]] = {}
        sent_wall: dict[str, float] = {}
        ticket_ids = list(owner)
        total = int(rate * seconds)
        spy = None
        if profile_to is not None:  # py-spy on tickets for the load's duration
            spy = await profile(pids["tickets"], seconds, profile_to)
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        began = time.perf_counter()
        futures = []
        for n in range(total):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            ticket_id = ticket_ids[n % len(ticket_ids)]
            key, event = build_event("ticket.scored", scored(ticket_id, n + 2), source="bench")
            sent[str(event.id)] = (time.perf_counter(), ticket_id)
            sent_wall[str(event.id)] = time.time()
            futures.append(
                await producer.send(
                    f"{prefix}ticket.scored", event.model_dump_json().encode(), key=key.encode()
                )
            )
        await asyncio.gather(*futures)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(e in per_agent[owner[t]] for e, (_, t) in sent.items()):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
        cpu = {
            name: cpu_seconds(pid) - cpu_start[name] - idle[name] * elapsed
            for name, pid in pids.items()
        }
        await producer.stop()
        if spy is not None:
            await spy.wait()
            print(f"  py-spy on tickets -> {profile_to}")
        await asyncio.gather(*(listener.stop() for listener in listeners))

    latencies = [
        (per_agent[owner[t]][e] - at) * 1000
        for e, (at, t) in sent.items()
        if e in per_agent[owner[t]]
    ]
    leaked = sum(
        1
        for agent_id, role in people
        if role == Role.AGENT
        for e in per_agent[agent_id]
        if e in sent and owner[sent[e][1]] != agent_id
    )
    frames = sum(listener.frames for listener in listeners)
    if os.environ.get("LIVE_BENCH_SLOWEST"):  # when the slowest events were sent: clusters?
        slowest = sorted(
            ((per_agent[owner[t]][e] - at) * 1000, at - began)
            for e, (at, t) in sent.items()
            if e in per_agent[owner[t]]
        )[-20:]
        print("  slowest (ms, sent at s):", [(round(ms), round(t, 2)) for ms, t in slowest])
    print(
        f"{agents} agents ({seniors} senior) {'via the gateway' if via_gateway else 'direct'}, "
        f"{rate:g} events/s for {seconds:g} s: {len(latencies)}/{total} delivered, "
        f"{frames} frames sent, {leaked} to an agent who may not see them, "
        f"{sum(lst.retries for lst in listeners)} connects answered 503 and retried"
    )
    if latencies:
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(
            f"  Kafka -> agent's stream: p50 {p50:.0f} ms  p99 {p99:.0f} ms  "
            f"max {max(latencies):.0f} ms"
        )
        for name, seconds_used in cpu.items():
            print(
                f"  {name} CPU per event {seconds_used / total * 1000:.3f} ms "
                f"(idle {idle[name] * 1000:.1f} ms/s subtracted)"
            )
        to_log = [(APPENDED[e] - at) * 1000 for e, at in sent_wall.items() if e in APPENDED]
        if to_log:
            print(
                f"  of which produce -> appended to the live log (feed): "
                f"p50 {percentile(to_log, 50):.0f} ms  p99 {percentile(to_log, 99):.0f} ms"
            )
        record(
            "live stream: Kafka -> agent p99",
            "< 300 ms (200 agents, 100/s)",
            f"{p99:.0f} ms ({agents} agents, {rate:g}/s)",
        )
    print(f"load average {os.getloadavg()[0]:.1f}")


def _pid_on(port: int) -> int:
    """The process listening on a loopback port (from /proc/net/tcp and the fds)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    assert inode is not None, f"nothing listens on {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
    raise AssertionError(f"no process owns port {port}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seniors", type=int, default=0)
    parser.add_argument("--via-gateway", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy the tickets process (raw stacks)")
    args = parser.parse_args()
    asyncio.run(
        run(args.agents, args.rate, args.seconds, args.seniors, args.via_gateway, args.profile)
    )
