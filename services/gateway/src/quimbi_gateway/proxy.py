"""The hot path: a raw ASGI endpoint that admits a request at the edge and streams it to the
service the routing table names, and the answer back. No per-request clients, no buffering."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import Receive, Scope, Send

from quimbi_common import tracing
from quimbi_common.errors import NotFoundError, PayloadTooLargeError, ProblemError
from quimbi_common.observability import correlation_id

from .domain import Quota, is_upload, read_request, response_headers, route
from .edge import REJECTED, EdgeGuard
from .http1 import CallerTooSlow, UpstreamError, UpstreamResponse, UpstreamTimeout
from .upstreams import Upstreams

log = logging.getLogger(__name__)

UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_seconds",
    "Time until a service's response headers arrive",
    ["upstream"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPEN_STREAMS = Gauge("gateway_open_streams", "Event streams being forwarded", ["upstream"])
UPSTREAM_FAILURES = Counter(
    "gateway_upstream_failures_total", "Services unreachable or too slow", ["upstream", "reason"]
)


# An ordinary answer arrives in a few reads; past that, watch for the caller leaving a stream.
_WATCH_CALLER_AFTER_CHUNKS = 4


async def _disconnected(receive: Receive) -> None:
    """Returns once the caller has gone (whatever is left of its request body is skipped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _BodyTooLarge(Exception):
    """The streamed request body passed the limit (raised inside the upload, stops it)."""


class _ClientGone(Exception):
    """The caller disconnected before sending its whole body."""


def _upstream_problem(status: int, detail: str, service: str, quota: Quota) -> ProblemError:
    return ProblemError(detail, status=status, service=service, headers=quota.header_dict())


class Proxy:
    """ASGI app mounted on the routed paths (`/api/...`, `/.well-known/jwks.json`)."""

    def __init__(
        self,
        upstreams: Upstreams,
        guard: EdgeGuard,
        max_body_bytes: int,
        stream_idle_seconds: float = 60.0,
        max_upload_body_bytes: int | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.max_upload_body_bytes = max_upload_body_bytes or max_body_bytes
        self.stream_idle_seconds = stream_idle_seconds
        self._latency = {name: UPSTREAM_LATENCY.labels(name) for name in upstreams.urls}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        service = route(path)
        if service is None:
            raise NotFoundError(f"No service serves {path}")
        client = scope.get("client")
        client_ip = client[0] if client else "unknown"
        request = read_request(
            scope["headers"],
            client_ip=client_ip,
            scheme=scope.get("scheme", "http"),
            request_id=correlation_id.get() or uuid.uuid4().hex,
        )
        limit = self.max_upload_body_bytes if is_upload(method, path) else self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise self._too_large(limit)
        quota = await self.guard.admit(method, path, request, client_ip)

        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or path.encode()
        target = raw_path + b"?" + query if query else raw_path
        started = time.perf_counter()
        try:
            response = await self.upstreams.pools[service].request(
                method,
                target,
                tracing.propagate(request.forward_headers),
                self._body(receive, limit) if request.has_body else None,
                chunked=request.chunked,
            )
        except _BodyTooLarge:
            raise self._too_large(limit) from None
        except _ClientGone:
            return
        except CallerTooSlow as exc:
            REJECTED.labels("slow_upload").inc()
            raise ProblemError(
                f"The request body did not arrive within {self.upstreams.timeouts[service]:g} s",
                status=408,
                headers={**quota.header_dict(), "Connection": "close"},
            ) from exc
        except UpstreamTimeout as exc:
            UPSTREAM_FAILURES.labels(service, "timeout").inc()
            raise _upstream_problem(
                504, f"The {service} service did not answer in time: {exc}", service, quota
            ) from exc
        except UpstreamError as exc:
            UPSTREAM_FAILURES.labels(service, "unreachable").inc()
            raise _upstream_problem(
                502, f"The {service} service is unreachable: {exc}", service, quota
            ) from exc
        self._latency[service].observe(time.perf_counter() - started)
        if response.is_event_stream:
            response.detach(self.stream_idle_seconds)
            await self._stream(response, quota, receive, send, service, path)
            return
        caller_gone: asyncio.Future[None] | None = None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response_headers(response.headers) + quota.headers(),
                }
            )
            sent = 0
            async for chunk in response.chunks():
                if sent == _WATCH_CALLER_AFTER_CHUNKS:  # a stream: stop once the caller goes
                    caller_gone = asyncio.ensure_future(_disconnected(receive))
                elif caller_gone is not None and caller_gone.done():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as exc:
            # Headers are gone already: all we can do is cut the response short.
            UPSTREAM_FAILURES.labels(service, "broken_response").inc()
            log.warning("%s broke off its response to %s %s: %s", service, method, path, exc)
        finally:
            if caller_gone is not None:
                caller_gone.cancel()
            await response.aclose()

    async def _stream(
        self,
        response: UpstreamResponse,
        quota: Quota,
        receive: Receive,
        send: Send,
        service: str,
        path: str,
    ) -> None:
        """Forward an event stream as each piece arrives, until the service ends it, goes
        quiet past the idle timeout, or the caller leaves (then the service's connection is
        closed at once, so it stops serving a stream nobody reads)."""
        OPEN_STREAMS.labels(service).inc()
        caller_gone = asyncio.ensure_future(_disconnected(receive))
        caller_gone.add_done_callback(lambda _: response.abort())  # the chunks stop at once
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response_headers(response.headers) + quota.headers(),
                }
            )
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as exc:
            if not caller_gone.done():  # silent too long, or the service went away: end it
                UPSTREAM_FAILURES.labels(service, "broken_stream").inc()  # cleanly, the caller
                log.info("%s ended its stream on %s: %s", service, path, exc)  # resumes
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            OPEN_STREAMS.labels(service).dec()
            caller_gone.cancel()
            await response.aclose()

    async def _body(self, receive: Receive, limit: int) -> AsyncIterator[bytes]:
        """The request body as it arrives, cut off once it passes the limit."""
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    def _too_large(self, limit: int) -> ProblemError:
        REJECTED.labels("too_large").inc()
        return PayloadTooLargeError(f"Request bodies are limited to {limit} bytes", max_bytes=limit)
