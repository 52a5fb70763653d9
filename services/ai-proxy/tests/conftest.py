"""Fixtures for ai-proxy tests: real HTTP servers for Quimbi (the project's stand-in) and for a
test upstream that plays the tickets service's `GET /api/tickets/{id}`, real Redis, PostgreSQL
and Kafka, and real RS256 tokens.

The tickets upstream here is a test double, named as such: it serves the ticket detail shape
the tickets service publishes (ticket + `messages` + `customer`) and applies the same
visibility rule (assignee, or senior_agent and up; else 404), and `GET /api/customers/{id}`
with its rule (a known customer for senior_agent and up, else only through an own ticket).
The e2e suite covers the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from quimbi_ai_proxy.main import build_app
from quimbi_ai_proxy.settings import Settings
from quimbi_common.auth import StaticKeySet, TokenVerifier
from quimbi_common.enums import Role
from quimbi_common.errors import UnauthorizedError
from quimbi_common.testing import (
    KAFKA,
    REDIS_URL,
    TEST_AUDIENCE,
    TEST_ISSUER,
    SigningKeys,
    migrated_database,
    running_app,
    unique,
)
from quimbi_standin.main import Settings as StandinSettings
from quimbi_standin.main import create_app as create_standin

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
STANDIN_KEY = "test-quimbi-key"
ADMIN = {"X-Admin-Key": "test-admin"}

# The session's own group (not a running stack's "ai-proxy"), kept across app restarts so a
# restarted app resumes after what the previous one handled.
CONSUMER_GROUP = unique("ai-proxy-test-")


# --- serving an ASGI app over real HTTP, in this event loop ----------------------------------


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handlers alone
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, *, lifespan: str = "off") -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan=lifespan,  # type: ignore[arg-type]
        timeout_graceful_shutdown=1,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# --- Quimbi: the project's stand-in ----------------------------------------------------------


class HeaderRecorder:
    """Wraps the stand-in to remember the headers of every request it received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.headers.append(
                {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            )
        await self.app(scope, receive, send)


@dataclass
class Standin:
    url: str
    admin: httpx.AsyncClient
    recorder: HeaderRecorder

    async def fault(self, target: str, **body: Any) -> None:
        response = await self.admin.put(f"/_admin/faults/{target}", json=body)
        assert response.status_code == 200, response.text

    async def heal(self) -> None:
        assert (await self.admin.delete("/_admin/faults")).status_code == 200

    async def calls(self) -> dict[str, int]:
        response = await self.admin.get("/_admin/calls")
        result: dict[str, int] = response.json()
        return result


@pytest.fixture
async def standin() -> AsyncIterator[Standin]:
    """A fresh stand-in per test: its faults and call counters are the test's alone."""
    app = create_standin(
        StandinSettings(api_key=STANDIN_KEY, admin_key=ADMIN["X-Admin-Key"], timeout_s=3.0)
    )
    recorder = HeaderRecorder(app)
    async with serving(recorder) as url, httpx.AsyncClient(base_url=url, headers=ADMIN) as admin:
        yield Standin(url, admin, recorder)


# --- the tickets service, as a test upstream ---------------------------------------------------


@dataclass
class TicketsUpstream:
    """In-memory tickets keyed by id; `GET /api/tickets/{id}` as the caller sees it."""

    url: str = ""
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: set[str] = field(default_factory=set)
    authorizations: list[str] = field(default_factory=list)

    def add_customer(self) -> str:
        """A customer the tickets service knows (with no tickets yet)."""
        customer_id = unique("cust-")
        self.customers.add(customer_id)
        return customer_id

    def add(
        self,
        *,
        assigned_agent_id: str | None = None,
        customer_name: str = "John Smith",
        messages: list[str] | None = None,
        subject: str = "Payment not processing",
        priority: str = "high",
        channel: str = "email",
    ) -> dict[str, Any]:
        ticket_id = unique("tkt-")
        customer_id = self.add_customer()
        now = datetime.now(UTC).isoformat()
        ticket: dict[str, Any] = {
            "id": ticket_id,
            "customer_id": customer_id,
            "subject": subject,
            "status": "open",
            "priority": priority,
            "channel": channel,
            "category": "billing",
            "assigned_agent_id": assigned_agent_id,
            "created_at": now,
            "updated_at": now,
            "customer_sentiment": 0.3,
            "estimated_difficulty": 0.5,
            "version": 1,
            "messages": [],
            "customer": {
                "id": customer_id,
                "email": f"{customer_id}@example.com",
                "name": customer_name,
                "lifetime_value": 0.0,
                "churn_risk": 0.0,
            },
        }
        self.tickets[ticket_id] = ticket
        for content in messages or ["My payment is not processing. Please help!"]:
            self.add_message(ticket_id, content)
        return ticket

    def add_message(self, ticket_id: str, content: str, *, from_agent: bool = False) -> None:
        ticket = self.tickets[ticket_id]
        ticket["messages"].append(
            {
                "id": unique("msg-"),
                "from_agent": from_agent,
                "content": content,
                "from_name": "Agent Smith" if from_agent else ticket["customer"]["name"],
                "from_email": None if from_agent else ticket["customer"]["email"],
                "created_at": datetime.now(UTC).isoformat(),
                "sentiment_score": 0.3,
                "detected_intent": "question",
            }
        )


def _tickets_app(upstream: TicketsUpstream, keys: SigningKeys) -> FastAPI:
    verifier = TokenVerifier(
        StaticKeySet(keys.jwks), None, issuer=TEST_ISSUER, audience=TEST_AUDIENCE
    )
    app = FastAPI(title="tickets test upstream")

    def problem(status: int, detail: str) -> JSONResponse:
        body = {"type": "about:blank", "title": detail, "status": status, "detail": detail}
        return JSONResponse(body, status_code=status, media_type="application/problem+json")

    @app.get("/api/tickets/{ticket_id}")
    async def ticket_detail(
        ticket_id: str, authorization: str = Header(default="")
    ) -> JSONResponse:
        upstream.authorizations.append(authorization)
        try:
            caller = await verifier.verify(authorization.removeprefix("Bearer "))
        except UnauthorizedError:
            return problem(401, "invalid token")
        ticket = upstream.tickets.get(ticket_id)
        visible = ticket is not None and (
            caller.sees_all_tickets or ticket["assigned_agent_id"] == caller.agent_id
        )
        if not visible:
            return problem(404, f"Ticket {ticket_id} not found")
        return JSONResponse(ticket)

    @app.get("/api/customers/{customer_id}")
    async def customer_detail(
        customer_id: str, authorization: str = Header(default="")
    ) -> JSONResponse:
        upstream.authorizations.append(authorization)
        try:
            caller = await verifier.verify(authorization.removeprefix("Bearer "))
        except UnauthorizedError:
            return problem(401, "invalid token")
        visible = customer_id in upstream.customers and (
            caller.sees_all_tickets
            or any(
                t["customer_id"] == customer_id and t["assigned_agent_id"] == caller.agent_id
                for t in upstream.tickets.values()
            )
        )
        if not visible:
            return problem(404, f"Customer {customer_id} not found")
        return JSONResponse({"id": customer_id})

    return app


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def tickets(keys: SigningKeys) -> AsyncIterator[TicketsUpstream]:
    upstream = TicketsUpstream()
    async with serving(_tickets_app(upstream, keys)) as url:
        upstream.url = url
        yield upstream


# --- the service under test -------------------------------------------------------------------


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database(MIGRATIONS, "ai_proxy") as url:
        yield url


@pytest.fixture(scope="session")
def kafka_prefix() -> str:
    return f"{unique('t')}."


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@dataclass
class Proxy:
    """A running ai-proxy and what tests need around it."""

    client: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    keys: SigningKeys

    def headers(self, role: Role = Role.AGENT, agent_id: str | None = None) -> dict[str, str]:
        return self.keys.headers(role, agent_id)


ProxyFactory = Callable[..., contextlib.AbstractAsyncContextManager[Proxy]]


@pytest.fixture(scope="session")
def serve() -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    """`serving`, for test modules (under importlib mode they import nothing from here)."""
    return serving


@pytest.fixture
def proxy_app(
    keys: SigningKeys,
    database_url: str,
    kafka_prefix: str,
    tickets: TicketsUpstream,
    standin: Standin,
) -> ProxyFactory:
    return proxy_factory(keys, database_url, kafka_prefix, tickets.url, standin)


@pytest.fixture
def proxy_app_for(
    keys: SigningKeys, database_url: str, kafka_prefix: str, standin: Standin
) -> Callable[[str], ProxyFactory]:
    """A `proxy_app` reading tickets from another base URL."""
    return lambda tickets_url: proxy_factory(keys, database_url, kafka_prefix, tickets_url, standin)


def proxy_factory(
    keys: SigningKeys, database_url: str, kafka_prefix: str, tickets_url: str, standin: Standin
) -> ProxyFactory:
    """`async with proxy_app(**settings) as proxy:` a running ai-proxy with short timeouts."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Proxy]:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "kafka_bootstrap_servers": KAFKA,
            "kafka_topic_prefix": kafka_prefix,
            "kafka_consumer_group": CONSUMER_GROUP,
            "kafka_topic_partitions": 1,
            "outbox_poll_interval_seconds": 0.2,
            "jwks_json": keys.jwks_json,
            "tickets_url": tickets_url,
            "tickets_timeout": 2.0,
            "quimbi_base_url": standin.url,
            "quimbi_api_key": STANDIN_KEY,
            "quimbi_timeout": 1.0,
            "quimbi_max_retries": 2,
            "quimbi_retry_backoff_seconds": 0.01,
            "quimbi_retry_max_backoff_seconds": 0.05,
            "quimbi_breaker_failure_threshold": 50,
            "quimbi_breaker_reset_seconds": 30.0,
            "log_json": False,
            **overrides,
        }
        settings = Settings(**values)
        app = build_app(settings)
        async with running_app(app) as client:
            yield Proxy(client, app, settings, keys)

    return start
