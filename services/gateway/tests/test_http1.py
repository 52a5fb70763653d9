"""The hot path's keep-alive client against real sockets: reuse, a service closing idle
connections, bodies delimited every way HTTP allows, and services misbehaving."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from quimbi_gateway.http1 import UpstreamPool, UpstreamTimeout, UpstreamUnavailable

pytestmark = pytest.mark.service


def _pool(url: str, **overrides) -> UpstreamPool:
    options = {
        "max_connections": 8,
        "max_idle": 8,
        "keepalive_expiry": 30.0,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
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
        pool = _pool(url, read_timeout=0.2)
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
