"""What the fault suite needs: private servers it may kill, a steady load through the gateway
that remembers every acknowledged write, and the checks that every one of them arrived.

The servers are this suite's own (deploy/local/infra.sh with a private data dir and ports),
never the shared ones: PostgreSQL, Redis and Kafka are killed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

if TYPE_CHECKING:
    from launcher import Suite

    from quimbi_common.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy" / "local" / "infra.sh"
OFFSET = int(os.environ.get("FAULTS_PORT_OFFSET", "14000"))


@dataclass
class PrivateInfra:
    """PostgreSQL, Redis and Kafka of this suite alone, under .local/faults."""

    local: Path = ROOT / ".local" / "faults"
    pg_port: int = 5432 + OFFSET
    redis_port: int = 6379 + OFFSET
    kafka_port: int = 9192 + OFFSET  # the broker itself
    kafka_advertised_port: int = 9092 + OFFSET  # what clients use: the Kafka fault proxy
    kafka_controller_port: int = 9093 + OFFSET

    def env(self) -> dict[str, str]:
        shared_libs = Path(os.environ.get("FAULTS_KAFKA_LIBS", ROOT / ".local" / "kafka" / "libs"))
        env = {
            **os.environ,
            "QUIMBI_LOCAL_DIR": str(self.local),
            "PG_PORT": str(self.pg_port),
            "REDIS_PORT": str(self.redis_port),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_ADVERTISED_PORT": str(self.kafka_advertised_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "DATABASES": "",
            "INFRA_S3": "0",  # attachments stay in a directory here
        }
        if (shared_libs / ".complete").exists():  # reuse the jars `make infra` fetched
            env["KAFKA_LIBS"] = str(shared_libs)
        return env

    def run(self, *args: str) -> None:
        result = subprocess.run(
            [str(INFRA), *args], env=self.env(), capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"infra.sh {' '.join(args)} failed: {result.stdout}{result.stderr}")

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://quimbi:quimbi@127.0.0.1:{self.pg_port}/postgres"

    def _pid(self, path: Path) -> int:
        return int(path.read_text().split()[0])

    async def start(self) -> None:
        await asyncio.to_thread(self.run, "start")

    async def stop(self) -> None:
        await asyncio.to_thread(self.run, "stop")

    async def kill_kafka(self) -> None:
        await _kill_and_wait(self._pid(self.local / "kafka" / "kafka.pid"), signal.SIGKILL)

    async def start_kafka(self) -> None:
        await asyncio.to_thread(self.run, "start-kafka")

    async def crash_postgres(self) -> None:
        """SIGQUIT to the postmaster: what `pg_ctl stop -m immediate` does (no checkpoint)."""
        await _kill_and_wait(self._pid(self.local / "postgres" / "postmaster.pid"), signal.SIGQUIT)

    async def kill_redis(self) -> None:
        await _kill_and_wait(self._pid(self.local / "redis.pid"), signal.SIGKILL)

    async def start_all(self) -> None:
        """`infra.sh start` leaves what runs alone and starts what does not."""
        await asyncio.to_thread(self.run, "start")


async def _kill_and_wait(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)
    for _ in range(300):
        if _process_state(pid) in (None, "Z"):  # gone, or a zombie nobody reaped yet
            return
        await asyncio.sleep(0.1)


def _process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    at: float
    op: str
    status: int | None  # None: no answer (connection refused/reset, timeout)
    retry_after: bool
    seconds: float
    detail: str = ""


@dataclass
class Write:
    at: float
    kind: str  # ticket, message, status, assignment
    ticket_id: str
    ref: str  # the written id, or the value set


@dataclass
class TicketState:
    email: str
    status: str | None = "open"  # None: an unanswered change left it uncertain
    assignee: str | None = None
    assignee_certain: bool = True
    messages: set[str] = field(default_factory=set)


class Load:
    """`workers` clients creating tickets (+ a customer message), replying, parking them as
    pending and assigning them, through the gateway, until stopped."""

    def __init__(
        self, client: httpx.AsyncClient, token: str, agent_ids: list[str], workers: int = 6
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}
        self.agent_ids = agent_ids
        self.workers = workers
        self.answers: list[Answer] = []
        self.writes: list[Write] = []
        self.tickets: dict[str, TicketState] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _call(self, op: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, headers=self.headers, **kw)
        except httpx.HTTPError as exc:
            self.answers.append(
                Answer(started, op, None, False, time.monotonic() - started, type(exc).__name__)
            )
            await asyncio.sleep(0.2)
            return None
        self.answers.append(
            Answer(
                started,
                op,
                response.status_code,
                "retry-after" in response.headers,
                time.monotonic() - started,
                response.text[:200] if response.status_code >= 400 else "",
            )
        )
        if response.status_code >= 500 or response.status_code == 429:
            await asyncio.sleep(0.2)
        return response

    async def _worker(self, n: int) -> None:
        pending_assign: list[str] = []
        i = 0
        while not self._stop.is_set():
            i += 1
            email = f"fault-{n}-{i}-{uuid.uuid4().hex[:8]}@example.com"
            body = {
                "customer": {"email": email, "name": "Fault Customer"},
                "subject": f"order {email}",
                "priority": "high",
                "channel": "email",
                "message": {"content": f"first {email}", "from_agent": False},
            }
            created = await self._call("create", "POST", "/api/tickets", json=body)
            if created is None or created.status_code != 201:
                continue
            ticket_id = created.json()["id"]
            self.tickets[ticket_id] = state = TicketState(email)
            self.writes.append(Write(time.monotonic(), "ticket", ticket_id, email))
            reply = await self._call(
                "message",
                "POST",
                f"/api/tickets/{ticket_id}/messages",
                json={"content": f"reply {email}", "from_agent": True},
            )
            if reply is not None and reply.status_code == 201:
                state.messages.add(reply.json()["id"])
                self.writes.append(
                    Write(time.monotonic(), "message", ticket_id, reply.json()["id"])
                )
            parked = await self._call(
                "status", "PATCH", f"/api/tickets/{ticket_id}", json={"status": "pending"}
            )
            if parked is None or parked.status_code >= 500:
                state.status = None
            elif parked.status_code == 200:
                state.status = "pending"
                self.writes.append(Write(time.monotonic(), "status", ticket_id, "pending"))
            pending_assign.append(ticket_id)
            if len(pending_assign) > 1:  # assign the previous one: agents has seen it by now
                await self._assign(pending_assign.pop(0), i)

    async def _assign(self, ticket_id: str, i: int) -> None:
        agent = self.agent_ids[i % len(self.agent_ids)]
        state = self.tickets[ticket_id]
        answer = await self._call(
            "assign", "POST", f"/api/tickets/{ticket_id}/assign", json={"agent_id": agent}
        )
        if answer is None or answer.status_code >= 500:
            state.assignee_certain = False
        elif answer.status_code == 201:
            state.assignee = agent
            self.writes.append(Write(time.monotonic(), "assignment", ticket_id, agent))


# --- checks -------------------------------------------------------------------------------------


@dataclass
class Findings:
    missing: dict[str, list[str]] = field(default_factory=dict)  # where -> what is not there
    duplicated: dict[str, list[str]] = field(default_factory=dict)

    @property
    def lost_ids(self) -> set[str]:
        return {ref for refs in self.missing.values() for ref in refs}


async def find_missing(load: Load, pg_dsn: str, namespace: str) -> Findings:
    """Every acknowledged write in its owner and every projection that should hold it."""
    found = Findings()
    tickets = list(load.tickets)
    messages = [m for t in load.tickets.values() for m in t.messages]

    async def rows(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(pg_dsn.rsplit("/", 1)[0] + f"/{database}{namespace}")
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    def missing(where: str, wanted: list[str], have: set[str]) -> None:
        absent = [w for w in wanted if w not in have]
        if absent:
            found.missing[where] = absent

    owner = await rows(
        "tickets", "SELECT id, status, assigned_agent_id FROM tickets WHERE id = ANY($1)", tickets
    )
    missing("tickets.tickets", tickets, {r["id"] for r in owner})
    by_id = {r["id"]: r for r in owner}
    wrong_status = [
        t
        for t, s in load.tickets.items()
        if s.status and t in by_id and by_id[t]["status"] != s.status
    ]
    if wrong_status:
        found.missing["tickets.status"] = wrong_status
    wrong_assignee = [
        t
        for t, s in load.tickets.items()
        if s.assignee
        and s.assignee_certain
        and by_id.get(t, {}).get("assigned_agent_id") != s.assignee
    ]
    if wrong_assignee:
        found.missing["tickets.assigned_agent_id"] = wrong_assignee
    got = await rows("tickets", "SELECT id FROM messages WHERE id = ANY($1)", messages)
    missing("tickets.messages", messages, {r["id"] for r in got})
    emails = [s.email for s in load.tickets.values()]
    dup = await rows(
        "tickets",
        "SELECT subject, count(*) AS n FROM tickets WHERE subject = ANY($1) "
        "GROUP BY subject HAVING count(*) > 1",
        [f"order {e}" for e in emails],
    )
    if dup:
        found.duplicated["tickets.tickets"] = [r["subject"].removeprefix("order ") for r in dup]
    dup_messages = await rows(
        "tickets",
        "SELECT content FROM messages WHERE content = ANY($1) GROUP BY content HAVING count(*) > 1",
        [f"{kind} {e}" for e in emails for kind in ("first", "reply")],
    )
    if dup_messages:
        found.duplicated["tickets.messages"] = [r["content"].split(" ", 1)[1] for r in dup_messages]

    scored = await rows(
        "scoring", "SELECT ticket_id FROM ticket_scores WHERE ticket_id = ANY($1)", tickets
    )
    missing("scoring.ticket_scores", tickets, {r["ticket_id"] for r in scored})
    projected = await rows("scoring", "SELECT id, status FROM tickets WHERE id = ANY($1)", tickets)
    missing("scoring.tickets", tickets, {r["id"] for r in projected})
    seen_messages = await rows("scoring", "SELECT id FROM messages WHERE id = ANY($1)", messages)
    missing("scoring.messages", messages, {r["id"] for r in seen_messages})
    clocks = await rows(
        "sla",
        "SELECT ticket_id, ticket_status, first_response_at, assigned_agent_id "
        "FROM sla_tracking WHERE ticket_id = ANY($1)",
        tickets,
    )
    missing("sla.sla_tracking", tickets, {r["ticket_id"] for r in clocks})
    answered = {r["ticket_id"] for r in clocks if r["first_response_at"] is not None}
    missing("sla.first_response_at", [t for t, s in load.tickets.items() if s.messages], answered)
    clock_agent = {r["ticket_id"]: r["assigned_agent_id"] for r in clocks}
    wrong_agent = [
        t
        for t, s in load.tickets.items()
        if s.assignee and s.assignee_certain and t in clock_agent and clock_agent[t] != s.assignee
    ]
    if wrong_agent:
        found.missing["sla.assigned_agent_id"] = wrong_agent
    clock_status = {r["ticket_id"]: r["ticket_status"] for r in clocks}
    stale = [
        t
        for t, s in load.tickets.items()
        if s.status and t in clock_status and clock_status[t] != s.status
    ]
    if stale:
        found.missing["sla.ticket_status"] = stale
    agents_view = await rows(
        "agents", "SELECT id, assigned_agent_id FROM ticket_projection WHERE id = ANY($1)", tickets
    )
    missing("agents.ticket_projection", tickets, {r["id"] for r in agents_view})
    agents_see = {r["id"]: r["assigned_agent_id"] for r in agents_view}
    stale_view = [
        t
        for t, s in load.tickets.items()
        if s.assignee and s.assignee_certain and t in agents_see and agents_see[t] != s.assignee
    ]
    if stale_view:
        found.missing["agents.ticket_projection.assigned_agent_id"] = stale_view
    assigned = await rows(
        "agents",
        "SELECT ticket_id, agent_id FROM ticket_assignments "
        "WHERE is_active AND ticket_id = ANY($1)",
        tickets,
    )
    active = defaultdict(list)
    for r in assigned:
        active[r["ticket_id"]].append(r["agent_id"])
    wrong = [
        t
        for t, s in load.tickets.items()
        if s.assignee and s.assignee_certain and active.get(t) != [s.assignee]
    ]
    if wrong:
        found.missing["agents.ticket_assignments"] = wrong
    twice = [t for t, agents in active.items() if len(agents) > 1]
    if twice:
        found.duplicated["agents.active_assignments"] = twice
    return found


async def read_topics(
    bootstrap: str, prefix: str
) -> dict[str, list[tuple[int, bytes | None, dict[str, Any]]]]:
    """Every record of every topic with the prefix, as an analytics consumer reads them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    records: dict[str, list[tuple[int, bytes | None, dict[str, Any]]]] = defaultdict(list)
    try:
        # The partitions come from a metadata request of their own: `consumer.topics()` fetches
        # a cluster view it does not keep, so `consumer.partitions_for_topic` (the consumer's
        # bootstrap view, which asked for no topics) knows none of them.
        described = await admin.describe_topics(
            [t for t in await admin.list_topics() if t.startswith(prefix)]
        )
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        if not partitions:
            raise AssertionError(f"no topics starting with {prefix!r} on {bootstrap}")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + 120
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"topics not read to their end in 120 s: {remaining}")
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, messages in batch.items():
                for m in messages:
                    with contextlib.suppress(ValueError):
                        records[tp.topic].append((tp.partition, m.key, json.loads(m.value)))
                    if m.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            if not batch:
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
        await admin.close()
    return records


async def explain_missing(found: Findings, pg_dsn: str, namespace: str) -> list[str]:
    """For a few projection rows that did not catch up: the owner's events about the ticket
    (from its outbox) and whether the projection's consumer recorded each one as processed."""
    base = pg_dsn.rsplit("/", 1)[0]
    lines = []
    owners = {"tickets": "tickets", "agents": "agents"}
    for where, ids in found.missing.items():
        service = where.split(".", 1)[0]
        if service in owners:
            continue
        for ticket_id in ids[:3]:
            tickets = await asyncpg.connect(f"{base}/tickets{namespace}")
            projection = await asyncpg.connect(f"{base}/{service}{namespace}")
            try:
                events = await tickets.fetch(
                    "SELECT event_id, topic, payload->'data'->>'version' AS v, "
                    "payload->'data'->>'status' AS status, published_at FROM outbox "
                    "WHERE key = $1 ORDER BY id",
                    ticket_id,
                )
                processed = await projection.fetch(
                    "SELECT consumer, event_id FROM processed_events WHERE event_id = ANY($1)",
                    [e["event_id"] for e in events],
                )
                seen = {r["event_id"]: r["consumer"] for r in processed}
                lines.append(
                    f"{where} {ticket_id}: "
                    + "; ".join(
                        f"{e['topic']} v{e['v']} {e['status']} "
                        f"published={e['published_at'] is not None} "
                        f"processed_by={seen.get(e['event_id'])}"
                        for e in events
                    )
                )
            finally:
                await tickets.close()
                await projection.close()
    return lines


def events_missing(
    load: Load, records: dict[str, list[tuple[int, bytes | None, dict[str, Any]]]], prefix: str
) -> dict[str, list[str]]:
    """Acknowledged tickets and messages an analytics consumer never sees on their topics."""

    def ids(topic: str) -> set[str]:
        return {
            (event.get("data") or {}).get("id") for _, _, event in records.get(prefix + topic, [])
        }

    created, added = ids("ticket.created"), ids("message.added")
    absent = {
        "ticket.created": [t for t in load.tickets if t not in created],
        "message.added": [m for s in load.tickets.values() for m in s.messages if m not in added],
    }
    return {topic: refs for topic, refs in absent.items() if refs}


def order_violations(
    records: dict[str, list[tuple[int, bytes | None, dict[str, Any]]]],
) -> tuple[list[str], int]:
    """Per topic and key, the entity versions an analytics consumer sees must never go back.

    Delivery is at least once: an event the relay published again (its commit of "published"
    was lost to a fault) comes back with the same id, and consumers skip ids they have seen,
    so a repeat is counted, not taken for a step back. Returns (violations, repeats)."""
    problems = []
    seen: set[str] = set()
    repeats = 0
    for topic, items in records.items():
        if topic.endswith(".dlq"):
            continue
        last: dict[tuple[int, bytes | None], int] = {}
        for partition, key, event in items:
            if event.get("id") in seen:
                repeats += 1
                continue
            seen.add(event.get("id"))
            version = (event.get("data") or {}).get("version")
            if not isinstance(version, int):
                continue
            if version < last.get((partition, key), -1):
                problems.append(
                    f"{topic} key {key!r}: version {version} after {last[(partition, key)]}"
                )
            last[(partition, key)] = max(version, last.get((partition, key), -1))
    return problems, repeats


async def consumer_lag(bootstrap: str, prefix: str) -> dict[str, int]:
    """Unread messages per consumer group on the suite's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        lag: dict[str, int] = {}
        groups: list[tuple[str, str]] = []
        for _ in range(30):  # as above: an empty answer is not "no groups"
            groups = await admin.list_consumer_groups()
            if groups:
                break
            await asyncio.sleep(1)
        for group, _protocol in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            ours = {tp: o.offset for tp, o in offsets.items() if tp.topic.startswith(prefix)}
            if not ours:
                continue
            ends = await consumer.end_offsets(list(ours))
            lag[group] = sum(max(0, ends[tp] - max(off, 0)) for tp, off in ours.items())
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def bad_answers(answers: list[Answer]) -> Counter[str]:
    """Answers a fault may not cause: a 401 to a valid token, a 500, a 503 without Retry-After,
    or any other error than the gateway's 502/504 for a dead upstream."""
    bad: Counter[str] = Counter()
    for a in answers:
        if a.status is None or a.status < 400:
            continue
        if a.status == 503 and a.retry_after:
            continue
        if a.status in (502, 504):
            continue
        if a.status == 404 and a.op == "assign":  # agents has not seen ticket.created yet
            continue
        bad[f"{a.op} {a.status} {a.detail[:90]}"] += 1
    return bad


@dataclass
class Stack:
    infra: PrivateInfra
    suite: Suite
    pg_proxy: FaultProxy
    kafka_proxy: FaultProxy
    admin_token: str
    agent_ids: list[str]

    @property
    def gateway(self) -> str:
        return self.suite.gateway_url

    def url(self, name: str) -> str:
        return next(s.url for s in self.suite.services if s.name == name)

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.infra.kafka_advertised_port}"

    @property
    def log_dir(self) -> Path:
        return self.suite.opts.log_dir
