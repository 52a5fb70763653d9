"""Fixtures, and the test upstreams: tiny stand-ins for the services, started on real ports,
that show what the gateway forwards (they test proxy mechanics, not our services' behaviour)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, create_model
from starlette.routing import Route

from quimbi_common.openapi import install_truthful_openapi, problems
from quimbi_common.runtime import forwarded_header_options
from quimbi_common.testing import REDIS_URL, SigningKeys, served_app, unique
from quimbi_gateway.main import build_app
from quimbi_gateway.settings import Settings

ECHO_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class TicketSummary(BaseModel):
    """Named alike in the tickets and sla test upstreams but shaped differently."""

    id: str
    subject: str


def make_test_upstream(
    name: str, *, ready: bool = True, jwks: dict[str, Any] | None = None
) -> FastAPI:
    """A test upstream named like a service. Its catch-all echoes what it received."""
    app = FastAPI(title=f"test upstream {name}")
    install_truthful_openapi(app)  # the real Problem schema, identical in every upstream
    app.state.gates = {}  # gate id -> asyncio.Event, opened by tests
    app.state.seen = {}  # gate id -> asyncio.Event, set by the upstream when it got there

    def gate(kind: str, gate_id: str) -> asyncio.Event:
        gates: dict[str, asyncio.Event] = getattr(app.state, kind)
        return gates.setdefault(gate_id, asyncio.Event())

    app.state.gate = gate

    @app.get("/health/ready")
    async def health_ready() -> JSONResponse:
        checks = {"database": {"ok": ready}}
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "service": name, "checks": checks},
            status_code=200 if ready else 503,
        )

    if jwks is not None:

        @app.get("/.well-known/jwks.json")
        async def jwks_document() -> dict[str, Any]:
            return jwks

    if name == "tickets":

        @app.get(
            "/api/tickets/{ticket_id}",
            response_model=TicketSummary,
            responses=problems(404),
            tags=["tickets"],
        )
        async def get_ticket(ticket_id: str) -> Any:
            return {"id": ticket_id, "subject": "documented"}

        @app.get("/api/tickets/{ticket_id}/sla", response_model=TicketSummary)
        async def shadowed(ticket_id: str) -> Any:
            """Declared here, but the gateway routes this path to sla: not in the merged spec."""
            return {"id": ticket_id, "subject": "shadowed"}

    if name == "sla":
        # the same schema name as in the tickets test upstream, other fields
        sla_summary = create_model("TicketSummary", id=(str, ...), first_response_status=(str, ...))

        @app.get(
            "/api/tickets/{ticket_id}/sla",
            response_model=sla_summary,
            responses=problems(404),
        )
        async def ticket_sla(ticket_id: str) -> Any:
            return {"id": ticket_id, "first_response_status": "pending"}

        @app.get("/api/sla/policies", response_model=list[sla_summary], tags=["policies"])
        async def policies() -> Any:
            return []

    if name == "agents":

        @app.post("/api/agents/login", tags=["auth"])
        async def login(request: Request) -> dict[str, Any]:
            return {
                "upstream": name,
                "login": True,
                "body": (await request.body()).decode(),
                "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            }

    @app.get("/{prefix:path}/_test/slow/{gate_id}")
    async def slow(prefix: str, gate_id: str) -> dict[str, str]:
        """Answers only once the test opens the gate (a stuck service)."""
        gate("seen", gate_id).set()
        await gate("gates", gate_id).wait()
        return {"upstream": name}

    @app.get("/{prefix:path}/_test/stream/{gate_id}")
    async def stream(prefix: str, gate_id: str) -> StreamingResponse:
        """Sends a first chunk, then waits for the test's go before the second."""

        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            await gate("gates", gate_id).wait()
            yield b"second chunk\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/{prefix:path}/_test/endless/{gate_id}")
    async def endless(prefix: str, gate_id: str) -> StreamingResponse:
        """Streams until its caller goes away, then opens the gate `<id>-ended`."""

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                gate("seen", f"{gate_id}-ended").set()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/{prefix:path}/_test/upload/{gate_id}")
    async def upload(prefix: str, gate_id: str, request: Request) -> dict[str, int]:
        """Counts the body as it arrives, announcing the first chunk to the test."""
        size = chunks = 0
        async for chunk in request.stream():
            if chunk:
                size += len(chunk)
                chunks += 1
                gate("seen", gate_id).set()
        return {"bytes": size, "chunks": chunks}

    @app.get("/{prefix:path}/_test/response-headers")
    async def response_headers(prefix: str) -> Response:
        return Response(
            b"ok",
            headers={
                "Connection": "X-Internal-Hop",
                "X-Internal-Hop": "must not leak",
                "Access-Control-Allow-Origin": "*",
                "X-Upstream": name,
                "Cache-Control": "no-store",
            },
        )

    @app.get("/{prefix:path}/_test/status/{status}")
    async def status(prefix: str, status: int) -> JSONResponse:
        problem = {"type": "about:blank", "title": "From the service", "status": status}
        return JSONResponse(problem, status_code=status, media_type="application/problem+json")

    class CrashAfterAnswering:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            """As Starlette does with an unhandled error: the 500 goes out, then the error is raised
            and uvicorn closes the connection, after a few ms spent logging (not reading)."""
            body = b'{"title": "Internal Server Error", "status": 500}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            time.sleep(0.05)  # noqa: ASYNC251 - the slow traceback logging, on purpose
            raise RuntimeError("test upstream crashed after answering")

    app.router.routes.insert(
        0, Route("/api/tickets/_test/crash-after-answering", CrashAfterAnswering())
    )

    @app.get("/{prefix:path}/_test/crash")
    async def crash(prefix: str) -> None:
        """An unhandled error: Starlette answers 500, then uvicorn closes the connection."""
        raise RuntimeError("test upstream crashed on purpose")

    @app.get("/{prefix:path}/_test/large")
    async def large(prefix: str) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(32):
                yield bytes([65 + i % 26]) * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    async def echo(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "upstream": name,
                "method": request.method,
                "path": request.url.path,
                "raw_path": request.scope["raw_path"].decode(),
                "query": request.url.query,
                "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
                "body_bytes": len(body),
                "client_port": request.client.port if request.client else None,
            }
        )

    return app


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


serve = served_app  # uvicorn on a loopback port, in this event loop


@contextlib.contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread of its own (its own event loop), for a service
    that blocks while the gateway goes on, as a separate process would."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def run() -> None:
        async with serve(app, **options) as url:
            holder["url"] = url
            holder["stop"] = stop = asyncio.Event()
            holder["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the threaded test upstream did not start")
    try:
        yield holder["url"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class TestUpstream:
    name: str
    url: str
    app: FastAPI

    def open_gate(self, gate_id: str) -> None:
        self.app.state.gate("gates", gate_id).set()

    async def reached(self, gate_id: str, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.app.state.gate("seen", gate_id).wait(), timeout)


@dataclass
class RunningGateway:
    url: str
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient


SERVICES = ("tickets", "agents", "sla", "scoring", "ai-proxy")


@pytest.fixture(scope="session")
def keys() -> SigningKeys:
    return SigningKeys()


@pytest.fixture(scope="session")
async def upstreams(keys: SigningKeys) -> AsyncIterator[dict[str, TestUpstream]]:
    """The five test upstreams, one per service name, for the whole session."""
    async with contextlib.AsyncExitStack() as stack:
        running = {}
        for name in SERVICES:
            app = make_test_upstream(name, jwks=keys.jwks if name == "agents" else None)
            url = await stack.enter_async_context(serve(app))
            running[name] = TestUpstream(name, url, app)
        yield running


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def start_upstream() -> Callable[..., contextlib.AbstractAsyncContextManager[TestUpstream]]:
    """`async with start_upstream(name) as upstream:` a test upstream of the test's own."""

    @contextlib.asynccontextmanager
    async def start(
        name: str, server_options: dict[str, Any] | None = None, **options: Any
    ) -> AsyncIterator[TestUpstream]:
        app = make_test_upstream(name, **options)
        async with serve(app, **(server_options or {})) as url:
            yield TestUpstream(name, url, app)

    return start


@pytest.fixture
def threaded_upstream() -> Callable[[str], contextlib.AbstractContextManager[str]]:
    """`with threaded_upstream(name) as url:` a test upstream in a thread of its own."""
    return lambda name: serve_in_thread(make_test_upstream(name))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@pytest.fixture
def raw_server() -> Callable[[Handler], contextlib.AbstractAsyncContextManager[str]]:
    """`async with raw_server(handler) as url:` a TCP test upstream that answers by hand, for
    what uvicorn never sends (close-delimited bodies, broken responses)."""

    @contextlib.asynccontextmanager
    async def start(handler: Handler) -> AsyncIterator[str]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()

    return start


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A URL that accepts connections and never answers (a hung service)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the caller gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.fixture(scope="session")
async def sick_upstream() -> AsyncIterator[TestUpstream]:
    """A test upstream that answers but reports itself not ready."""
    app = make_test_upstream("sla", ready=False)
    async with serve(app) as url:
        yield TestUpstream("sla", url, app)


@contextlib.asynccontextmanager
async def _run_gateway(
    upstreams: dict[str, TestUpstream], keys: SigningKeys, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    values: dict[str, Any] = {
        "environment": "test",
        "jwks_json": keys.jwks_json,
        "redis_url": REDIS_URL,
        "tickets_url": upstreams["tickets"].url,
        "agents_url": upstreams["agents"].url,
        "sla_url": upstreams["sla"].url,
        "scoring_url": upstreams["scoring"].url,
        "ai_proxy_url": upstreams["ai-proxy"].url,
        "rate_limit_prefix": unique("test-gateway-rl:"),
        "health_cache_seconds": 0,
        "openapi_cache_seconds": 0,
        "cors_origins": "http://frontend.test",
        "log_json": False,
        "log_level": "WARNING",
    }
    settings = Settings(**{**values, **overrides})
    app = build_app(settings)
    async with (
        serve(app, **forwarded_header_options(settings)) as url,
        httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client,
    ):
        yield RunningGateway(url, app, settings, client)


@pytest.fixture(scope="session")
async def gateway(
    upstreams: dict[str, TestUpstream], keys: SigningKeys
) -> AsyncIterator[RunningGateway]:
    """A gateway with default mechanics in front of the test upstreams, shared by the tests that
    need no settings of their own (per-IP limit raised: every test comes from 127.0.0.1)."""
    async with _run_gateway(upstreams, keys, rate_limit_per_ip=100_000) as running:
        yield running


@pytest.fixture
def start_gateway(
    upstreams: dict[str, TestUpstream], keys: SigningKeys
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]:
    """`async with start_gateway(**settings) as gw:` a gateway of its own on a real port, in front
    of the test upstreams, with its own rate-limit key space in the real Redis."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[RunningGateway]:
        return _run_gateway(upstreams, keys, **overrides)

    return start
