"""A lean HTTP/1.1 keep-alive client for the proxy's hot path: a few asyncio connections per
service, answers parsed by httptools (the C parser uvicorn itself uses).

Why not httpx here: measured in the gateway, httpx took ~80 % of the CPU of a proxied request
(URL parsing, header and cookie models, and a pool that polls every idle connection's socket on
each request). The gateway only sends already-parsed requests to five known services, so this
client does just that: write the head, stream the body, stream the answer back, reuse the
connection. httpx still serves the gateway's own calls (health, OpenAPI).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

_BUFFER_HIGH = 256 * 1024  # stop reading from the service while this much waits to be sent on
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamError(Exception):
    """The service could not be asked or did not answer properly."""


class UpstreamUnavailable(UpstreamError):
    """Refused, closed, or answered something that is not HTTP: a 502."""


class UpstreamTimeout(UpstreamError):
    """No connection, or no answer, in time: a 504."""


class _Connection(asyncio.Protocol):
    """One connection and the response being read on it (httptools calls the `on_*` methods)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
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
        self.status = 0
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

    def data_received(self, data: bytes) -> None:
        if not self.in_use:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"malformed response: {exc}"))
            self.close()
            return
        if self.buffered > _BUFFER_HIGH and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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
        self.status = self.parser.get_status_code()
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
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it right after
        self.complete = True
        self._wake()

    # --- used by the pool and the response ------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and not self.until_close
            and not self.head_request
            and self.error is None
            and self.keep_alive
        )

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _timed_out(self, waiter: asyncio.Future[None], timeout: float) -> None:
        if not waiter.done():
            self._fail(UpstreamTimeout(f"no answer within {timeout:g} s"))
            self.close()

    async def wait(self, timeout: float) -> None:
        """Until the service sends something more (or fails, or the timeout passes)."""
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._timed_out, waiter, timeout)
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

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.error or UpstreamUnavailable("connection closed while sending")
        self.transport.write(data)
        if self._write_ready is not None:
            await self._write_ready

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """A service's status and headers; the body is read with `chunks()`, then `aclose()`."""

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers
        self._released = False

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.chunks:
                yield connection.take_chunks()
            elif connection.complete:
                return
            elif connection.error is not None:
                raise connection.error
            else:
                await connection.wait(self._pool.read_timeout)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
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
        read_timeout: float,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.encode()
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> UpstreamResponse:
        """Send a request and wait for the response head. A request without a body that meets
        a keep-alive connection the service has just closed is sent again on a new one."""
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self.read_timeout)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"no free connection within {self.read_timeout:g} s"
                ) from None
        else:
            await self._slots.acquire()
        head = self._head(method, target, headers, chunked=chunked and body is not None)
        try:
            retry = body is None and method in _IDEMPOTENT
            while True:
                connection, reused = await self._checkout()
                connection.reset(head_request=method == "HEAD")
                try:
                    try:
                        await connection.write(head)
                        if body is not None:
                            await self._send_body(connection, body, chunked=chunked)
                    except UpstreamUnavailable:
                        if not connection.headers_done:  # else: it answered early; pass it on
                            raise
                    while not connection.headers_done:
                        if connection.error is not None:
                            raise connection.error
                        await connection.wait(self.read_timeout)
                except UpstreamUnavailable:
                    connection.close()
                    if retry and reused and not connection.received_any:
                        retry = False
                        continue
                    raise
                except BaseException:
                    connection.close()
                    raise
                return UpstreamResponse(self, connection)
        except BaseException:
            self._slots.release()
            raise

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
    async def _send_body(
        connection: _Connection, body: AsyncIterator[bytes], *, chunked: bool
    ) -> None:
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                await connection.write(chunk)
        if chunked:
            await connection.write(b"0\r\n\r\n")

    async def _checkout(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed or now - connection.idle_since > self.keepalive_expiry:
                connection.close()
                continue
            return connection, True
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"no connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot connect: {exc.strerror or exc}") from None
        return connection, False

    def release(self, connection: _Connection) -> None:
        connection.in_use = False
        if connection.reusable and len(self._idle) < self.max_idle:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
