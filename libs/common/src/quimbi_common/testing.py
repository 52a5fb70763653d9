"""Helpers for tests that run against the real PostgreSQL, Redis and Kafka.

Each test session gets its own databases and its own Kafka topic prefix, so tests can run
against infrastructure that already holds other data, in any order, side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from .auth import generate_rsa_private_key_pem, issue_token, public_jwk
from .enums import AssignmentReason, AssignmentStatus, Role, TicketStatus
from .events import AssignmentData, MessageData
from .migrations import upgrade

ADMIN_DSN = os.environ.get(
    "TEST_POSTGRES_ADMIN_DSN", "postgresql://quimbi:quimbi@127.0.0.1:5432/postgres"
)
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_ISSUER = "quimbi-support"
TEST_AUDIENCE = "quimbi-support-api"


def assignment_data(ticket_id: str, agent_id: str, **fields: Any) -> AssignmentData:
    """An assignment as agents publishes it (ticket.assigned, assignment.updated): a new,
    active, pending manual assignment unless `fields` say otherwise."""
    values: dict[str, Any] = {
        "id": unique("asg-"),
        "ticket_id": ticket_id,
        "agent_id": agent_id,
        "reason": AssignmentReason.MANUAL,
        "status": AssignmentStatus.PENDING,
        "assigned_at": datetime.now(UTC),
        "is_active": True,
        "version": 1,
        **fields,
    }
    return AssignmentData(**values)


def message_data(
    ticket_id: str, at: datetime, *, from_agent: bool = True, author: str | None = None
) -> MessageData:
    """A message as tickets publishes it (message.added) on an open ticket, written `at`."""
    return MessageData(
        id=f"msg-{uuid.uuid4()}",
        ticket_id=ticket_id,
        from_agent=from_agent,
        author_agent_id=author,
        content="hello",
        created_at=at,
        version=1,
        ticket_status=TicketStatus.OPEN,
    )


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def database_url(name: str) -> str:
    """The SQLAlchemy URL of a database on the test server."""
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def create_database(name: str) -> str:
    """Create an empty database; returns its SQLAlchemy URL."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def migrated_database(migrations_dir: Path, prefix: str) -> AsyncIterator[str]:
    """A fresh database at the head of a service's migrations, dropped afterwards."""
    name = unique(f"test_{prefix}_")
    url = await create_database(name)
    try:
        await asyncio.to_thread(upgrade, migrations_dir, url)
        yield url
    finally:
        await drop_database(name)


@contextlib.asynccontextmanager
async def running_app(
    app: FastAPI, base_url: str = "http://service"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (Kafka, relay, background tasks) and talk to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@contextlib.asynccontextmanager
async def served_app(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn on a real loopback port in this event loop (for what only
    a real server shows: connections, peer addresses); yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class SigningKeys:
    """A signing key for tests and the matching JWKS, so services verify real RS256 tokens."""

    kid: str = field(default_factory=lambda: unique("test-key-"))
    private_pem: str = field(default_factory=generate_rsa_private_key_pem)

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.private_pem, self.kid)]}

    @property
    def jwks_json(self) -> str:
        return json.dumps(self.jwks)

    def token(
        self,
        role: Role | str = Role.AGENT,
        agent_id: str | None = None,
        email: str | None = None,
        ttl_seconds: int = 3600,
        **overrides: Any,
    ) -> str:
        agent_id = agent_id or unique("agent-")
        token, _ = issue_token(
            self.private_pem,
            self.kid,
            subject=agent_id,
            email=email or f"{agent_id}@example.com",
            role=role,
            issuer=overrides.get("issuer", TEST_ISSUER),
            audience=overrides.get("audience", TEST_AUDIENCE),
            ttl_seconds=ttl_seconds,
            now=overrides.get("now"),
        )
        return token

    def headers(self, role: Role | str = Role.AGENT, agent_id: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, agent_id)}"}


class EventProbe:
    """Reads topics from the beginning, so tests can wait for the events they caused."""

    def __init__(self, topics: list[str], prefix: str = "", bootstrap: str = KAFKA) -> None:
        self.prefix = prefix
        self.bootstrap = bootstrap
        self.topics = [f"{prefix}{t}" for t in topics]
        self.received: list[tuple[str, str | None, dict[str, Any], dict[str, bytes]]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventProbe:
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            topic = record.topic.removeprefix(self.prefix)
            key = record.key.decode() if record.key else None
            try:
                body = json.loads(record.value or b"null")
            except ValueError:
                body = {"_raw": (record.value or b"").decode(errors="replace")}
            headers = dict(record.headers or [])
            self.received.append((topic, key, body, headers))

    def events(
        self, topic: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> list[dict[str, Any]]:
        return [body for t, _, body, _ in self.received if t == topic and predicate(body)]

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        count: int = 1,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(topic, predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} event(s) on {topic}, saw {len(found)} "
                    f"(all topics: {[t for t, *_ in self.received][-20:]})"
                )
            await asyncio.sleep(0.05)


async def eventually(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.1
) -> Any:
    """Retry an async or sync check until it stops raising AssertionError; return its result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


async def assert_docs_served_offline(client: httpx.AsyncClient) -> None:
    """`/docs` and `/redoc` load every script, stylesheet and icon from the app itself."""
    import re

    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200, page
        urls = re.findall(r"""(?:src|href)\s*[=:]\s*['"]([^'"]+)['"]""", response.text)
        assets = [u for u in urls if not u.endswith("/openapi.json")]
        assert assets, f"{page} names no assets"
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            asset = await client.get(url)
            assert asset.status_code == 200, f"{page}: {url} answers {asset.status_code}"
            assert len(asset.content) > 1000, f"{page}: {url} is nearly empty"
        assert "://" not in response.text, f"{page} names another host"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of a response that must have this status."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


_NUL_SAMPLES = ("a\x00", "abcdefghijklm\x00nopqrstuvwxyz", "a\x00b@example.com")


def request_fields_accepting_nul(
    app: FastAPI, *, on_purpose: frozenset[str] = frozenset()
) -> tuple[int, list[str]]:
    """Every field of every request body of `app`, tried with text holding a NUL (short, long
    enough for a password, e-mail shaped; alone and in a list): the number of fields tried, and
    those that accepted one, other than the `Model.field`s named `on_purpose`. Guards the
    `NoNul` rule on fields added later."""
    from fastapi.routing import APIRoute, iter_route_contexts
    from pydantic import BaseModel, TypeAdapter, ValidationError

    models: list[type[BaseModel]] = []
    for route in iter_route_contexts(list(app.routes)):
        body = getattr(route, "body_field", None)
        if isinstance(route.original_route, APIRoute) and body is not None:
            annotation = getattr(body.field_info, "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                models.append(annotation)
    tried, accepting, seen = 0, [], set()
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            if f"{model.__name__}.{name}" in on_purpose:
                continue
            nested = [
                arg
                for arg in getattr(info.annotation, "__args__", (info.annotation,))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ]
            if nested:
                models.extend(nested)
                continue
            field_type: Any = info.annotation
            if info.metadata:
                field_type = Annotated.__class_getitem__((field_type, *info.metadata))  # type: ignore[attr-defined]
            adapter: TypeAdapter[Any] = TypeAdapter(field_type)
            tried += 1
            for sample in (*_NUL_SAMPLES, *([s] for s in _NUL_SAMPLES)):
                try:
                    adapter.validate_python(sample)
                except ValidationError:
                    continue
                accepting.append(f"{model.__name__}.{name}")
                break
    return tried, accepting


@dataclass
class SseEvent:
    """One Server-Sent Event as a client sees it."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Parse an event stream (`response.aiter_lines()`); comments (heartbeats) are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


class LiveStream:
    """An open SSE stream read in the background: `events` grows as they arrive; `ended` is set
    when the server ends it. For tests and benchmarks of the live inbox."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.client = client
        self.url = url
        self.headers = headers
        self.events: list[SseEvent] = []
        self.status = 0
        self.ended = asyncio.Event()
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> LiveStream:
        self._task = asyncio.create_task(self._read())
        ready = asyncio.ensure_future(self.ready.wait())
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait({ready, ended}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        ended.cancel()
        assert self.ready.is_set(), f"no ready event (status {self.status}): {self.events}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async with self.client.stream(
                "GET", self.url, headers=self.headers, timeout=httpx.Timeout(10, read=None)
            ) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    await response.aread()
                    self.events.append(SseEvent("error", response.text))
                    return
                async for event in sse_events(response.aiter_lines()):
                    self.events.append(event)
                    if event.event == "ready":
                        self.ready.set()
                    self._arrived.set()
        finally:
            self.ended.set()
            self._arrived.set()

    @property
    def last_id(self) -> str | None:
        ids = [e.id for e in self.events if e.id]
        return ids[-1] if ids else None

    def of_ticket(self, ticket_id: str, event: str | None = None) -> list[SseEvent]:
        return [
            e
            for e in self.events
            if e.event not in ("ready", "reset", "end", "error")
            and e.json().get("ticket_id") == ticket_id
            and (event is None or e.event == event)
        ]

    async def wait_for(
        self, check: Callable[[SseEvent], bool], *, timeout: float = 20.0
    ) -> SseEvent:
        """The first event (already seen or still to come) for which `check` holds."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if check(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0 or self.ended.is_set():
                raise AssertionError(f"no such event within {timeout} s: {self.events[-10:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
