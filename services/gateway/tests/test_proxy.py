"""Proxy mechanics against the test upstreams on real ports: routing, streaming both ways,
headers, the service being down or slow, request size, CORS."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from quimbi_common.testing import unique

pytestmark = pytest.mark.service

PROBLEM = "application/problem+json"


@pytest.fixture
def agent_headers(keys):
    return keys.headers("agent")


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/tickets", "tickets"),
        ("/api/customers/c-1", "tickets"),
        ("/api/tickets/t-1/messages", "tickets"),
        ("/api/tickets/t-1/assign", "agents"),
        ("/api/agents/me", "agents"),
        ("/api/tickets/t-1/sla/pause", "sla"),
        ("/api/sla/policies/urgent", "sla"),
        ("/api/tickets/t-1/score-breakdown", "scoring"),
        ("/api/ai/tickets/t-1/draft-response", "ai-proxy"),
    ],
)
async def test_requests_reach_the_service_of_the_routing_table(
    gateway, agent_headers, path, service
) -> None:
    response = await gateway.client.post(path, headers=agent_headers, json={"x": 1})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["upstream"] == service
    assert echoed["path"] == path
    assert echoed["method"] == "POST"
    assert echoed["body_bytes"] == len(b'{"x":1}')


async def test_path_encoding_and_query_string_are_forwarded_untouched(
    gateway, agent_headers
) -> None:
    response = await gateway.client.get(
        "/api/customers/a%2Fb%20c?email=a%2Bb%40example.com&tag=x&tag=y",
        headers=agent_headers,
    )
    echoed = response.json()
    assert echoed["raw_path"] == "/api/customers/a%2Fb%20c"
    assert echoed["query"] == "email=a%2Bb%40example.com&tag=x&tag=y"


async def test_unrouted_api_path_is_a_problem_404(gateway, agent_headers) -> None:
    response = await gateway.client.get("/api/nothing-here", headers=agent_headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_authorization_is_forwarded_unchanged_with_forwarding_headers(
    gateway, agent_headers
) -> None:
    response = await gateway.client.get(
        "/api/tickets",
        headers={**agent_headers, "Connection": "keep-alive, X-Hop", "X-Hop": "no"},
    )
    forwarded = dict(response.json()["headers"])
    assert forwarded["authorization"] == agent_headers["Authorization"]
    assert forwarded["x-forwarded-for"] == "127.0.0.1"
    assert forwarded["x-forwarded-proto"] == "http"
    assert forwarded["x-forwarded-host"] == gateway.url.removeprefix("http://")
    assert "x-hop" not in forwarded
    assert forwarded["host"] == gateway.settings.tickets_url.removeprefix("http://")


async def test_request_id_is_passed_on_upstream_and_returned(gateway, agent_headers) -> None:
    request_id = unique("req-")
    given = await gateway.client.get(
        "/api/tickets", headers={**agent_headers, "X-Request-ID": request_id}
    )
    made = await gateway.client.get("/api/tickets", headers=agent_headers)
    # given an id, the service sees it and the caller gets it back, once
    assert dict(given.json()["headers"])["x-request-id"] == request_id
    assert given.headers.get_list("x-request-id") == [request_id]
    # without one, the gateway makes one and uses the same id both ways
    made_id = made.headers["x-request-id"]
    assert made_id
    assert dict(made.json()["headers"])["x-request-id"] == made_id


async def test_proxied_requests_are_counted_under_their_route(gateway, agent_headers) -> None:
    # given a proxied request
    assert (await gateway.client.get("/api/tickets", headers=agent_headers)).status_code == 200
    # then the request metrics name the proxy's route, not `unmatched`
    metrics = (await gateway.client.get("/metrics")).text
    assert 'route="/api/{path:path}",service="gateway",status="200"' in metrics


async def test_response_headers_lose_hop_by_hop_and_service_cors(gateway, agent_headers) -> None:
    response = await gateway.client.get(
        "/api/tickets/_test/response-headers",
        headers={**agent_headers, "Origin": "http://frontend.test"},
    )
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "tickets"
    assert response.headers["cache-control"] == "no-store"
    assert "x-internal-hop" not in response.headers
    # CORS is the gateway's: its allowed origin, not the service's wildcard
    assert response.headers.get_list("access-control-allow-origin") == ["http://frontend.test"]
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) <= 1


async def test_large_response_arrives_whole(gateway, agent_headers) -> None:
    response = await gateway.client.get("/api/tickets/_test/large", headers=agent_headers)
    assert response.status_code == 200
    assert len(response.content) == 32 * 65536
    assert response.content[65536 * 31 :] == bytes([65 + 31 % 26]) * 65536


async def test_service_errors_pass_through_unchanged(gateway, agent_headers) -> None:
    response = await gateway.client.get("/api/tickets/_test/status/409", headers=agent_headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "From the service"


async def test_response_body_is_streamed_as_the_service_produces_it(
    gateway, upstreams, agent_headers
) -> None:
    gate = unique("stream-")
    path = f"/api/ai/_test/stream/{gate}"
    async with gateway.client.stream("GET", path, headers=agent_headers) as response:
        chunks = response.aiter_raw()
        # the first chunk arrives while the service still holds back the second
        first = await asyncio.wait_for(chunks.__anext__(), 5)
        upstreams["ai-proxy"].open_gate(gate)
        rest = b"".join([chunk async for chunk in chunks])
    assert first == b"first chunk\n"
    assert rest == b"second chunk\n"


async def test_when_the_caller_leaves_a_stream_the_service_is_let_go(
    gateway, upstreams, agent_headers
) -> None:
    gate = unique("endless-")
    path = f"/api/tickets/_test/endless/{gate}"
    # given a caller reading an endless stream through the gateway
    async with gateway.client.stream("GET", path, headers=agent_headers) as response:
        chunks = response.aiter_raw()
        for _ in range(3):
            await asyncio.wait_for(chunks.__anext__(), 5)
    # when it hangs up, then the service's stream ends too
    await upstreams["tickets"].reached(f"{gate}-ended")


async def test_request_body_is_streamed_to_the_service_as_it_arrives(
    gateway, upstreams, agent_headers
) -> None:
    gate = unique("upload-")
    tickets = upstreams["tickets"]

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        # the service has the first chunk before the second is even produced
        await tickets.reached(gate)
        yield b"b" * 1000

    response = await gateway.client.post(
        f"/api/tickets/_test/upload/{gate}", headers=agent_headers, content=body()
    )
    assert response.status_code == 200
    assert response.json() == {"bytes": 2000, "chunks": 2}


async def test_service_that_refuses_connections_is_a_502_naming_it(
    start_gateway, agent_headers, dead_url
) -> None:
    async with start_gateway(sla_url=dead_url) as gw:
        response = await gw.client.get("/api/sla/policies", headers=agent_headers)
        others = await gw.client.get("/api/tickets", headers=agent_headers)
    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["service"] == "sla"
    assert "sla" in problem["detail"]
    assert "ratelimit-remaining" in response.headers
    assert others.status_code == 200


async def test_service_too_slow_is_a_504_naming_it_without_hanging(
    start_gateway, upstreams, agent_headers
) -> None:
    gate = unique("slow-")
    async with start_gateway(upstream_timeout_seconds=0.2) as gw:
        started = asyncio.get_running_loop().time()
        response = await gw.client.get(f"/api/tickets/_test/slow/{gate}", headers=agent_headers)
        elapsed = asyncio.get_running_loop().time() - started
    upstreams["tickets"].open_gate(gate)
    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["service"] == "tickets"
    assert elapsed < 2


async def test_a_write_after_a_service_crashed_on_its_answer_reaches_the_service(
    start_gateway, threaded_upstream, agent_headers
) -> None:
    """Issue 13 item 4: a 500 after which uvicorn closes the connection (a few ms later, while
    it logs) used to turn the next POST into a 502 that never reached the service."""
    with threaded_upstream("tickets") as url:
        async with start_gateway(tickets_url=url, rate_limit_per_ip=100_000) as gw:
            statuses = []
            for _ in range(15):
                crashed = await gw.client.get(
                    "/api/tickets/_test/crash-after-answering", headers=agent_headers
                )
                created = await gw.client.post(
                    "/api/tickets", headers=agent_headers, json={"subject": "after a crash"}
                )
                statuses.append((crashed.status_code, created.status_code))
                assert created.json()["body_bytes"] == len(b'{"subject":"after a crash"}')
    assert statuses == [(500, 200)] * 15


async def test_a_service_trickling_its_answer_is_a_504_at_the_deadline(
    start_gateway, raw_server, agent_headers
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(1000):
                writer.write(b"x-trickle-%d: 1\r\n" % i)
                await writer.drain()
                await asyncio.sleep(0.05)

    async with (
        raw_server(trickle) as url,
        start_gateway(tickets_url=url, upstream_timeout_seconds=0.3) as gw,
    ):
        response = await gw.client.get("/api/tickets", headers=agent_headers)
    assert response.status_code == 504
    assert response.json()["service"] == "tickets"


async def test_a_service_switching_protocols_is_a_502(
    start_gateway, raw_server, agent_headers
) -> None:
    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(upgrade) as url, start_gateway(tickets_url=url) as gw:
        response = await gw.client.get("/api/tickets", headers=agent_headers)
    assert response.status_code == 502
    assert "101" in response.json()["detail"]


async def test_a_caller_stalling_its_upload_gets_a_408_at_the_deadline(
    start_gateway, agent_headers
) -> None:
    async with start_gateway(upstream_timeout_seconds=0.3) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST /api/tickets HTTP/1.1\r\nhost: {host}\r\n"
            f"authorization: {agent_headers['Authorization']}\r\n"
            'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"sub'
        )
        writer.write(head.encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_ai_proxy_gets_its_own_longer_timeout(
    start_gateway, upstreams, agent_headers
) -> None:
    gate = unique("slow-ai-")
    ai = upstreams["ai-proxy"]
    async with start_gateway(upstream_timeout_seconds=0.1, ai_proxy_timeout_seconds=5) as gw:
        call = asyncio.create_task(
            gw.client.get(f"/api/ai/_test/slow/{gate}", headers=agent_headers)
        )
        await ai.reached(gate)
        await asyncio.sleep(0.3)  # longer than the default upstream timeout
        ai.open_gate(gate)
        response = await call
    assert response.status_code == 200
    assert response.json()["upstream"] == "ai-proxy"


async def test_body_over_the_limit_by_content_length_is_a_413(start_gateway, agent_headers):
    async with start_gateway(max_request_body_bytes=1024) as gw:
        response = await gw.client.post("/api/tickets", headers=agent_headers, content=b"x" * 1025)
        at_limit = await gw.client.post("/api/tickets", headers=agent_headers, content=b"x" * 1024)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert at_limit.status_code == 200


async def test_attachment_uploads_have_a_limit_of_their_own(start_gateway, agent_headers):
    upload = "/api/tickets/ticket_1/attachments"

    async def streamed(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 512):
            yield b"x" * 512

    async with start_gateway(max_request_body_bytes=1024, max_upload_body_bytes=4096) as gw:
        big_upload = await gw.client.post(upload, headers=agent_headers, content=b"x" * 4096)
        streamed_upload = await gw.client.post(
            upload, headers=agent_headers, content=streamed(4096)
        )
        too_big = await gw.client.post(upload, headers=agent_headers, content=b"x" * 4097)
        cut_off = await gw.client.post(upload, headers=agent_headers, content=streamed(8192))
        elsewhere = await gw.client.post(
            "/api/tickets/ticket_1/messages", headers=agent_headers, content=b"x" * 4096
        )
    assert big_upload.status_code == 200
    assert streamed_upload.status_code == 200
    assert too_big.status_code == 413
    assert too_big.json()["max_bytes"] == 4096
    assert cut_off.status_code == 413
    assert elsewhere.status_code == 413
    assert elsewhere.json()["max_bytes"] == 1024


async def test_streamed_body_over_the_limit_is_cut_off_with_a_413(start_gateway, agent_headers):
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 512

    async with start_gateway(max_request_body_bytes=2048) as gw:
        response = await gw.client.post("/api/tickets", headers=agent_headers, content=body())
    assert response.status_code == 413
    assert response.json()["status"] == 413


async def test_cors_preflight_and_response_headers_come_from_the_gateway(
    gateway, agent_headers
) -> None:
    origin = {"Origin": "http://frontend.test"}
    preflight = await gateway.client.options(
        "/api/tickets",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    actual = await gateway.client.get("/api/tickets", headers={**agent_headers, **origin})
    foreign = await gateway.client.get(
        "/api/tickets", headers={**agent_headers, "Origin": "http://elsewhere.test"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://frontend.test"
    assert actual.headers["access-control-allow-origin"] == "http://frontend.test"
    assert "ratelimit-remaining" in actual.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in foreign.headers


async def test_a_service_with_replicas_gets_each_request_in_turn(
    start_gateway, start_upstream, upstreams, agent_headers
) -> None:
    # given two replicas of sla behind one gateway (a comma-separated SLA_URL)
    async with (
        start_upstream("sla-replica") as replica,
        start_gateway(sla_url=f"{upstreams['sla'].url}, {replica.url}") as gw,
    ):
        # when sequential requests go over the gateway's keep-alive connections
        served = [
            (await gw.client.post("/api/sla/replicas", headers=agent_headers)).json()
            for _ in range(4)
        ]
    # then they alternate, per request rather than per connection
    assert [echo["upstream"] for echo in served] == ["sla", "sla-replica", "sla", "sla-replica"]


def _sse_upstream(events: int, every: float, left: asyncio.Event):
    """A raw service: `/api/tickets/live` answers an event stream (`events` events, one every
    `every` s, then silence until the caller leaves, noted in `left`); anything else a 200."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"GET /api/tickets/live "):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            await reader.read()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            for n in range(events):
                chunk = b"id: %d-0\nevent: tick\ndata: {}\n\n" % n
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await writer.drain()
                await asyncio.sleep(every)
            await reader.read()  # until the gateway closes the connection
        except ConnectionError:
            pass
        left.set()

    return handler


async def test_an_event_stream_outlives_the_deadline_and_frees_its_pool_slot(
    start_gateway, raw_server, agent_headers
) -> None:
    from quimbi_common.testing import sse_events

    left = asyncio.Event()
    async with (
        raw_server(_sse_upstream(events=6, every=0.15, left=left)) as url,
        start_gateway(
            tickets_url=url, upstream_timeout_seconds=0.3, upstream_max_connections=1
        ) as gw,
    ):
        async with gw.client.stream("GET", "/api/tickets/live", headers=agent_headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream.aiter_lines())
            first = await asyncio.wait_for(anext(events), 5)
            # while the stream holds its connection, the pool's only slot serves others
            other = await gw.client.get("/api/tickets", headers=agent_headers)
            assert other.status_code == 200
            rest = [await asyncio.wait_for(anext(events), 5) for _ in range(5)]
        # 0.9 s of events through a 0.3 s deadline, each as it came
        assert [e.id for e in [first, *rest]] == [f"{n}-0" for n in range(6)]
        # the caller left: the gateway closed the service's connection at once
        await asyncio.wait_for(left.wait(), 5)


async def test_an_event_stream_silent_past_the_idle_timeout_is_ended(
    start_gateway, raw_server, agent_headers
) -> None:
    left = asyncio.Event()
    async with (
        raw_server(_sse_upstream(events=1, every=0, left=left)) as url,
        start_gateway(tickets_url=url, upstream_stream_idle_seconds=0.3) as gw,
    ):
        async with gw.client.stream("GET", "/api/tickets/live", headers=agent_headers) as stream:
            body = await asyncio.wait_for(stream.aread(), 5)  # ends: the gateway cut it
        assert body.startswith(b"id: 0-0")
        await asyncio.wait_for(left.wait(), 5)
