"""The hot path's keep-alive client against real sockets: reuse, a service closing idle
connections, bodies delimited every way HTTP allows, and services misbehaving."""

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest

from quimbi_gateway.http1 import (
    CallerTooSlow,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnavailable,
)

pytestmark = pytest.mark.service


def _pool(url: str, **overrides) -> UpstreamPool:
    options = {
        "max_connections": 8,
        "max_idle": 8,
        "keepalive_expiry": 30.0,
        "connect_timeout": 1.0,
        "timeout": 2.0,
        **overrides,
    }
    return UpstreamPool(url, **options)


async def _get(pool: UpstreamPool, target: bytes = b"/api/tickets", method: str = "GET"):
    response = await pool.request(method, target, [(b"accept", b"application/json")])
    try:
        body = b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()
    return response, body


async def test_sequential_requests_reuse_one_connection(upstreams) -> None:
    pool = _pool(upstreams["tickets"].url)
    try:
        ports = [json.loads((await _get(pool))[1])["client_port"] for _ in range(3)]
    finally:
        pool.close()
    assert len(set(ports)) == 1


async def test_concurrent_requests_open_more_connections_up_to_the_limit(upstreams) -> None:
    pool = _pool(upstreams["tickets"].url, max_connections=2)
    try:
        results = await asyncio.gather(*(_get(pool) for _ in range(6)))
    finally:
        pool.close()
    ports = {json.loads(body)["client_port"] for _, body in results}
    assert [response.status for response, _ in results] == [200] * 6
    assert 1 <= len(ports) <= 2


async def test_a_connection_the_service_closed_while_idle_is_replaced(start_upstream) -> None:
    # given a service that drops idle keep-alive connections after 50 ms
    async with start_upstream("tickets", server_options={"timeout_keep_alive": 0.05}) as svc:
        pool = _pool(svc.url)
        try:
            first, _ = await _get(pool)
            await asyncio.sleep(0.2)
            # when the next request comes after that
            second, body = await _get(pool)
        finally:
            pool.close()
    # then it is answered on a fresh connection
    assert (first.status, second.status) == (200, 200)
    assert json.loads(body)["upstream"] == "tickets"


async def test_head_and_no_content_responses_end_without_a_body(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            head, head_body = await asyncio.wait_for(_get(pool, method="HEAD"), 2)
            empty, empty_body = await asyncio.wait_for(_get(pool, method="DELETE"), 2)
        finally:
            pool.close()
    assert (head.status, head_body) == (200, b"")
    assert dict(head.headers)[b"content-length"] == b"1234"
    assert (empty.status, empty_body) == (204, b"")


async def test_body_delimited_by_closing_the_connection_is_read_whole(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")
        writer.close()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            response, body = await _get(pool)
        finally:
            pool.close()
    assert response.status == 200
    assert body == b"part one, part two"


async def test_service_hanging_up_before_answering_is_unavailable(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            with pytest.raises(UpstreamUnavailable):
                await pool.request("POST", b"/api/tickets", [])
        finally:
            pool.close()


async def test_garbage_instead_of_http_is_unavailable(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            with pytest.raises(UpstreamUnavailable):
                await pool.request("GET", b"/", [])
        finally:
            pool.close()


async def test_response_cut_off_mid_body_raises_while_reading(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            response = await pool.request("GET", b"/", [])
            with pytest.raises(UpstreamUnavailable):
                _ = [chunk async for chunk in response.chunks()]
            await response.aclose()
        finally:
            pool.close()


async def test_service_silent_after_the_head_times_out_reading_the_body(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nstart")
        await writer.drain()
        await reader.read()  # and then nothing

    async with raw_server(handler) as url:
        pool = _pool(url, timeout=0.2)
        try:
            response = await pool.request("GET", b"/", [])
            with pytest.raises(UpstreamTimeout):
                _ = [chunk async for chunk in response.chunks()]
            await response.aclose()
        finally:
            pool.close()


async def test_chunked_upload_is_encoded_for_the_service(upstreams) -> None:
    async def body() -> AsyncIterator[bytes]:
        for part in (b"abc", b"", b"defgh"):
            yield part

    pool = _pool(upstreams["tickets"].url)
    try:
        response = await pool.request(
            "POST", b"/api/tickets/_test/upload/chunked", [], body(), chunked=True
        )
        answer = json.loads(b"".join([chunk async for chunk in response.chunks()]))
        await response.aclose()
    finally:
        pool.close()
    assert response.status == 200
    assert answer["bytes"] == 8


async def test_early_answer_during_an_upload_is_passed_on(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno")
        await writer.drain()
        writer.close()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"x" * 65536
            await asyncio.sleep(0)

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            response = await pool.request(
                "POST", b"/", [(b"content-length", str(200 * 65536).encode())], body()
            )
            answer = b"".join([chunk async for chunk in response.chunks()])
            await response.aclose()
        finally:
            pool.close()
    assert (response.status, answer) == (413, b"no")


async def test_a_connection_that_sends_unasked_bytes_is_not_reused(raw_server) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if connections > 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")  # unasked
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")  # only if the client (wrongly) reuses it
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nreused")
            await writer.drain()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            _, first = await _get(pool)
            await asyncio.sleep(0.2)
            _, second = await _get(pool)
        finally:
            pool.close()
    assert (first, second) == (b"ok", b"fresh")
    assert connections == 2


# --- issue 13, item 4: keep-alive edge cases ----------------------------------------------


async def test_connection_close_from_the_service_is_honoured(raw_server) -> None:
    # given a service that says `Connection: close` but leaves the socket open
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            # when two requests follow each other
            answers = [(await _get(pool))[1] for _ in range(2)]
        finally:
            pool.close()
    # then each has a connection of its own
    assert answers == [b"ok", b"ok"]
    assert connections == 2


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a kernel does for a socket closed with unread bytes."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _post(pool: UpstreamPool, body: bytes) -> tuple[int, bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    response = await pool.request(
        "POST", b"/api/tickets", [(b"content-length", str(len(body)).encode())], chunks()
    )
    try:
        return response.status, b"".join([chunk async for chunk in response.chunks()])
    finally:
        await response.aclose()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def test_a_post_refused_unread_on_a_reused_connection_is_sent_again_once(raw_server) -> None:
    # given a service whose first connection answers once, then resets on the next request
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_connection = not received
        received.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
        await writer.drain()
        if first_connection:
            await reader.readuntil(b"\r\n\r\n")
            _reset(writer)
            return
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                received.append(await _read_request(reader))
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated")
                await writer.drain()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            await _get(pool)
            # when a POST meets the reset
            status, answer = await _post(pool, b'{"subject": "x"}')
        finally:
            pool.close()
    # then it is sent again, whole, on a new connection
    assert (status, answer) == (200, b"first")  # the new connection's first answer
    assert received[-1].endswith(b'{"subject": "x"}')
    assert received[-1].startswith(b"POST /api/tickets")


async def test_a_post_the_service_may_have_read_is_not_sent_again(raw_server) -> None:
    # given a service that reads a POST on a reused connection and hangs up without answering
    posts = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal posts
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request = await _read_request(reader)
                posts += request.startswith(b"POST")
                writer.close()  # an orderly close after reading it: it may have acted on it
                return

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            await _get(pool)
            # then the POST fails instead of being sent twice
            with pytest.raises(UpstreamUnavailable):
                await _post(pool, b'{"subject": "x"}')
        finally:
            pool.close()
    assert posts == 1


async def test_interim_1xx_answers_are_skipped(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal"
        )
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            response, body = await _get(pool)
        finally:
            pool.close()
    assert (response.status, body) == (200, b"final")
    assert b"link" not in dict(response.headers)


async def test_a_101_is_unavailable_and_raises_nothing_in_the_event_loop(raw_server) -> None:
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as url:
        pool = _pool(url)
        try:
            with pytest.raises(UpstreamUnavailable, match="101"):
                await _get(pool)
        finally:
            pool.close()
            asyncio.get_running_loop().set_exception_handler(None)
    assert loop_errors == []


async def test_a_service_trickling_its_head_times_out_at_the_deadline(raw_server) -> None:
    # given a service that sends a header line every 50 ms, forever
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(1000):
                writer.write(b"x-trickle-%d: 1\r\n" % i)
                await writer.drain()
                await asyncio.sleep(0.05)

    async with raw_server(handler) as url:
        pool = _pool(url, timeout=0.3)
        started = time.monotonic()
        try:
            # then the request fails at its deadline, not after the last of many short waits
            with pytest.raises(UpstreamTimeout):
                await _get(pool)
        finally:
            pool.close()
    assert time.monotonic() - started < 2


async def test_a_service_trickling_its_body_times_out_at_the_deadline(raw_server) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)

    async with raw_server(handler) as url:
        pool = _pool(url, timeout=0.3)
        try:
            response = await pool.request("GET", b"/", [])
            with pytest.raises(UpstreamTimeout):
                _ = [chunk async for chunk in response.chunks()]
            await response.aclose()
        finally:
            pool.close()


async def test_a_service_that_reads_nothing_times_out_while_sending(raw_server) -> None:
    # given a service that never reads its socket
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()
        await asyncio.sleep(5)

    async def huge() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield b"x" * (1024 * 1024)

    async with raw_server(handler) as url:
        pool = _pool(url, timeout=0.5)
        try:
            # then a large upload stops at the deadline
            with pytest.raises(UpstreamTimeout):
                await pool.request("POST", b"/", [(b"content-length", b"268435456")], huge())
        finally:
            pool.close()


async def test_a_slow_upload_gives_its_connection_back_at_the_deadline(upstreams) -> None:
    # given a pool of one connection and a caller that sends part of its body, then stalls
    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * 10
        await asyncio.sleep(30)
        yield b"never"

    pool = _pool(upstreams["tickets"].url, max_connections=1, timeout=0.3)
    try:
        # when its deadline passes
        with pytest.raises(CallerTooSlow):
            await pool.request(
                "POST",
                b"/api/tickets/_test/upload/stalled",
                [(b"content-length", b"15")],
                stalled(),
            )
        # then the only connection slot is free again
        response, _ = await asyncio.wait_for(_get(pool), 2)
    finally:
        pool.close()
    assert response.status == 200
