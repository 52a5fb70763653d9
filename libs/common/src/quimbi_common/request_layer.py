"""The one ASGI layer every request of every service passes: its correlation id (X-Request-ID
in, or a new one, and back on the answer), the NUL guard on path and query (`inputs`), the
consistency token of a 2xx write (`consistency`), and the HTTP metrics.

One layer instead of three middlewares: each layer was an extra coroutine call and an extra
`send` wrapper on every response message (bench/middleware_overhead.py), and the metrics'
label lookups are made once per (method, route, status) instead of per request.
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import consistency
from .inputs import nul_problem
from .observability import HTTP_LATENCY, HTTP_REQUESTS, REQUEST_ID_HEADER, correlation_id

_REQUEST_ID = REQUEST_ID_HEADER.encode()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID (at most 128 characters), or a new one."""
    for name, value in headers:
        if name == _REQUEST_ID:
            given = value.decode("latin-1")[:128]
            if given:
                return given
            break
    return os.urandom(16).hex()


class RequestLayer:
    """Correlation id, NUL guard, consistency token (`tokens`: services with a database) and
    metrics, in that order, around the app."""

    def __init__(self, app: ASGIApp, service: str, *, tokens: bool = False) -> None:
        self.app = app
        self.service = service
        self.tokens = tokens
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        id_header = (_REQUEST_ID, request_id.encode("latin-1"))
        reset_id = correlation_id.set(request_id)
        started = time.perf_counter()
        status = 500
        written: list[str] = []
        reset_written = None

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or ())
                if written and 200 <= status < 300:
                    headers.append(consistency.token_header(written))
                headers.append(id_header)
                message["headers"] = headers
            await send(message)

        try:
            problem = nul_problem(scope)
            if problem is not None:
                await problem(scope, receive, send_with_headers)
                return
            if self.tokens:
                written, reset_written = consistency.collect()
            await self.app(scope, receive, send_with_headers)
        finally:
            if reset_written is not None:
                consistency.stop_collecting(reset_written)
            self._observe(scope, status, time.perf_counter() - started)
            correlation_id.reset(reset_id)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        method = method if method in _METHODS else "_OTHER"  # a label, so a bounded set
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(self.service, method, route, str(status))
            self._counters[(method, route, status)] = counter
        counter.inc()
        latency = self._latencies.get((method, route))
        if latency is None:
            latency = HTTP_LATENCY.labels(self.service, method, route)
            self._latencies[(method, route)] = latency
        latency.observe(seconds)
