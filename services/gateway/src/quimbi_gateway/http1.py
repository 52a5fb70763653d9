"""A lean HTTP/1.1 keep-alive client for the proxy's hot path: a few asyncio connections per
service, answers parsed by httptools (the C parser uvicorn itself uses).

Why not httpx here: measured in the gateway, httpx took ~80 % of the CPU of a proxied request
(URL parsing, header and cookie models, and a pool that polls every idle connection's socket on
each request). The gateway only sends already-parsed requests to five known services, so this
client does just that: write the head, stream the body, stream the answer back, reuse the
connection. httpx still serves the gateway's own calls (health, OpenAPI).

The rules that keep it honest (each tested in tests/test_http1.py against real sockets):
- one deadline per request, from asking for a connection to the last byte of the answer, so
  neither a trickling service nor a trickling upload holds a connection past it;
- a connection is reused only after a complete answer that did not say `Connection: close`,
  and never once the service has closed it;
- a request is sent again, once, on a new connection only when the service cannot have read
  it: a reused connection that ended before the request was written, or that the service's
  kernel reset (its socket was closed with our bytes unread), with no byte of an answer;
- 1xx interim answers are skipped; a 101 (a protocol switch nobody asked for) is a 502.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

_BUFFER_HIGH = 256 * 1024  # stop reading from the service while this much waits to be sent on
_REPLAY_LIMIT = 64 * 1024  # a body up to this size is kept while sending, to send it again
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamError(Exception):
    """The service could not be asked or did not answer properly."""


class UpstreamUnavailable(UpstreamError):
    """Refused, closed, or answered something that is not HTTP: a 502."""


class UpstreamTimeout(UpstreamError):
    """No connection, or no complete answer, before the request's deadline: a 504."""


class CallerTooSlow(Exception):
    """The caller did not send its request body before the deadline: a 408."""


class _Connection(asyncio.Protocol):
    """One connection and the response being read on it (httptools calls the `on_*` methods)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.closed = False
        self.in_use = False
        self.idle_since = 0.0
        self._write_ready: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.reset(head_request=False)

    def reset(self, *, head_request: bool) -> None:
        self.in_use = True
        self.parser = httptools.HttpResponseParser(self)
        self.head_request = head_request
        self.received_any = False
        self.request_sent = False
        self.lost_before_sent = False  # the connection ended before the request was written
        self.reset_by_peer = False  # the service's kernel refused our bytes (RST)
        self.status = 0
        self.interim = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.until_close = False
        self.complete = False
        self.keep_alive = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.reading_paused = False
        self.error: UpstreamError | None = None

    # --- asyncio protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # not an HttpParserError: caught on its own
            self._fail(UpstreamUnavailable("the service switched protocols (101)"))
            self.abort()
            return
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"malformed response: {exc}"))
            self.abort()
            return
        if self.buffered > _BUFFER_HIGH and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_use and not self.request_sent:
            self.lost_before_sent = True
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            self.reset_by_peer = True
        if self.headers_done and self.until_close and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
        elif not self.complete:
            self._fail(UpstreamUnavailable("connection closed before the response ended"))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._write_ready = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._write_ready = None

    # --- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101:  # the gateway never asks for an upgrade (it drops `Upgrade`)
            self._fail(UpstreamUnavailable("the service switched protocols (101)"))
            return
        if 100 <= status < 200:  # interim (100 Continue, 103): the real one
            self.interim = True  # follows on the same connection
            self.headers = []
            return
        self.status = status
        self.headers_done = True
        names = {name for name, _ in self.headers}
        no_body = self.head_request or self.status in (204, 304) or self.status < 200
        self.until_close = not no_body and not (
            b"content-length" in names or b"transfer-encoding" in names
        )
        if self.head_request:
            self.complete = True  # the parser would wait for a body that never comes
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it right after
        self.complete = True
        self._wake()

    # --- used by the pool and the response ------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and self.request_sent
            and not self.closed
            and not self.until_close
            and not self.head_request
            and self.error is None
            and self.keep_alive
        )

    @property
    def never_read(self) -> bool:
        """The service cannot have read this request: no answer, and the connection ended
        before the request was written or was reset by the service's kernel."""
        return not self.received_any and (self.lost_before_sent or self.reset_by_peer)

    def has_unread_news(self) -> bool:
        """Whether the socket holds bytes or an end of stream the event loop has not handled yet
        (an idle connection has nothing to say: either means the service is closing it)."""
        if self.fd < 0:
            return False
        readable, _, _ = select.select([self.fd], [], [], 0)
        return bool(readable)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _deadline_passed(self) -> None:
        self._fail(UpstreamTimeout("no complete answer before the request's deadline"))
        self.abort()

    async def wait(self, deadline: float) -> None:
        """Until the service sends something more (or fails, or the deadline passes)."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_at(deadline, self._deadline_passed)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take_chunks(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and self.transport and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes, deadline: float) -> None:
        """Hand bytes to the socket; while the service reads none, wait until the deadline."""
        if self.closed or self.transport is None:
            self.lost_before_sent = not self.request_sent
            raise self.error or UpstreamUnavailable("connection closed while sending")
        self.transport.write(data)
        if self._write_ready is not None:
            timer = self.loop.call_at(deadline, self._deadline_passed)
            try:
                await self._write_ready
            finally:
                timer.cancel()
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what is still waiting to be sent (close() would wait for it)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Body:
    """A request body read from the caller once, its start kept (up to `_REPLAY_LIMIT`) so a
    request the service never read can be sent again on another connection."""

    def __init__(self, source: AsyncIterator[bytes], *, chunked: bool) -> None:
        self.source = source
        self.chunked = chunked
        self.kept: list[bytes] | None = []
        self.kept_bytes = 0
        self.finished = False

    @property
    def replayable(self) -> bool:
        return self.kept is not None

    def frame(self, chunk: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk

    def keep(self, chunk: bytes) -> None:
        if self.kept is None:
            return
        self.kept_bytes += len(chunk)
        if self.kept_bytes > _REPLAY_LIMIT:
            self.kept = None
        else:
            self.kept.append(chunk)

    async def next_chunk(self, deadline: float) -> bytes | None:
        """The caller's next chunk, None at the end; `CallerTooSlow` past the deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(self.source)
        except StopAsyncIteration:
            self.finished = True
            return None
        except TimeoutError:
            raise CallerTooSlow("the request body did not arrive in time") from None


class UpstreamResponse:
    """A service's status and headers; the body is read with `chunks()`, then `aclose()`."""

    def __init__(self, pool: UpstreamPool, connection: _Connection, deadline: float) -> None:
        self._pool = pool
        self._connection = connection
        self._deadline = deadline
        self._idle_timeout: float | None = None
        self.status = connection.status
        self.headers = connection.headers
        self._released = False

    @property
    def is_event_stream(self) -> bool:
        """A Server-Sent Events answer: open for as long as the service keeps it open."""
        for name, value in self.headers:
            if name == b"content-type":
                return value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
        return False

    def detach(self, idle_timeout: float) -> None:
        """Make this answer a stream with a connection of its own: its pool slot is given back
        now (a stream must not hold one of the keep-alive slots for hours), the connection is
        closed at the end instead of reused, and the request's deadline no longer applies:
        the body may go quiet for `idle_timeout` seconds at most (the service's heartbeats)."""
        if self._idle_timeout is None and not self._released:
            self._idle_timeout = idle_timeout
            self._connection.keep_alive = False
            self._pool.detached(self._connection)

    def abort(self) -> None:
        """Drop the connection now (the caller left a stream): `chunks()` ends with an error."""
        if not self._connection.closed:
            self._connection.abort()

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.chunks:
                yield connection.take_chunks()
            elif connection.complete:
                return
            elif connection.error is not None:
                raise connection.error
            elif self._idle_timeout is not None:
                await connection.wait(connection.loop.time() + self._idle_timeout)
            else:
                await connection.wait(self._deadline)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            if self._idle_timeout is not None:
                self._pool.stream_closed(self._connection)
            else:
                self._pool.release(self._connection)


class UpstreamPool:
    """Keep-alive connections to one service, at most `max_connections` in use at once."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        max_idle: int,
        keepalive_expiry: float,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.encode()
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self.streams = 0  # open event streams (each on a connection of its own, no slot)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> UpstreamResponse:
        """Send a request and wait for the response head, all before one deadline (`timeout`
        seconds from now, which also bounds reading the body)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamTimeout(f"no free connection within {self.timeout:g} s") from None
        else:
            await self._slots.acquire()
        chunked = chunked and body is not None
        head = self._head(method, target, headers, chunked=chunked)
        request_body = _Body(body, chunked=chunked) if body is not None else None
        fresh = False
        try:
            while True:
                connection, reused = await self._checkout(deadline, fresh=fresh)
                connection.reset(head_request=method == "HEAD")
                try:
                    await self._send(connection, head, request_body, deadline)
                    while not connection.headers_done:
                        if connection.error is not None:
                            raise connection.error
                        await connection.wait(deadline)
                except UpstreamUnavailable:
                    connection.abort()
                    if reused and self._may_send_again(method, connection, request_body):
                        fresh = True
                        continue
                    raise
                except BaseException:
                    connection.abort()
                    raise
                return UpstreamResponse(self, connection, deadline)
        except BaseException:
            self._slots.release()
            raise

    @staticmethod
    def _may_send_again(method: str, connection: _Connection, body: _Body | None) -> bool:
        """Only on a reused connection, and only if the service cannot have acted on it."""
        if connection.received_any:
            return False
        if body is None and method in _IDEMPOTENT:
            return True  # sending it twice does no harm
        return connection.never_read and (body is None or body.replayable)

    def _head(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], *, chunked: bool
    ) -> bytes:
        parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    @staticmethod
    async def _send(
        connection: _Connection, head: bytes, body: _Body | None, deadline: float
    ) -> None:
        """Write the request. If the service answers early and stops reading (a 413, say), the
        rest of the body is not sent and the answer is passed on."""
        try:
            if body is None:
                await connection.write(head, deadline)
            else:
                kept = body.kept or []  # what an earlier attempt sent: sent again first
                await connection.write(b"".join([head, *map(body.frame, kept)]), deadline)
                while not body.finished:
                    chunk = await body.next_chunk(deadline)
                    if chunk:
                        body.keep(chunk)
                        await connection.write(body.frame(chunk), deadline)
                if body.chunked:
                    await connection.write(b"0\r\n\r\n", deadline)
            connection.request_sent = True
        except UpstreamUnavailable:
            if not connection.headers_done:
                raise

    async def _checkout(self, deadline: float, *, fresh: bool) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if (
                connection.closed
                or now - connection.idle_since > self.keepalive_expiry
                or (self.tls is None and connection.has_unread_news())
            ):
                connection.close()
                continue
            return connection, True
        timeout = max(0.0, min(self.connect_timeout, deadline - now))
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                ),
                timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot connect: {exc.strerror or exc}") from None
        return connection, False

    def release(self, connection: _Connection) -> None:
        connection.in_use = False
        if connection.reusable and len(self._idle) < self.max_idle:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
        elif connection.complete:
            connection.close()
        else:  # the answer was not read to its end: what is left of it is dropped
            connection.abort()
        self._slots.release()

    def detached(self, connection: _Connection) -> None:
        """A stream leaves the pool's accounting: its slot is free for other requests."""
        self.streams += 1
        self._slots.release()

    def stream_closed(self, connection: _Connection) -> None:
        connection.in_use = False
        connection.abort()  # never reused: what is left of the stream is dropped
        self.streams -= 1

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
