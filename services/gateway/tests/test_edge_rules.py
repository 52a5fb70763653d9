"""Header handling and rate-limit arithmetic at the edge, as pure functions."""

import pytest

from quimbi_gateway.domain import (
    Bucket,
    Quota,
    counter_key,
    current_window,
    read_request,
    response_headers,
)

pytestmark = pytest.mark.unit


def _read(headers: list[tuple[bytes, bytes]], client_ip: str = "203.0.113.7"):
    return read_request(headers, client_ip=client_ip, scheme="https", request_id="req-1")


def test_hop_by_hop_headers_and_those_named_in_connection_are_not_forwarded() -> None:
    # given a request with hop-by-hop headers and a custom one listed in Connection
    incoming = _read(
        [
            (b"Host", b"api.example.com"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Authorization", b"Basic x"),
            (b"X-Hop", b"secret"),
            (b"Accept", b"application/json"),
        ]
    )
    # then only end-to-end headers and the gateway's own cross
    names = [name for name, _ in incoming.forward_headers]
    assert names == [
        b"accept",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
    ]


def test_credentials_and_body_framing_are_read_while_forwarding_them() -> None:
    incoming = _read(
        [
            (b"authorization", b"Bearer tok"),
            (b"x-api-key", b"key-1"),
            (b"content-length", b"42"),
        ]
    )
    assert incoming.authorization == "Bearer tok"
    assert incoming.api_key == "key-1"
    assert incoming.content_length == 42
    assert incoming.has_body
    assert (b"authorization", b"Bearer tok") in incoming.forward_headers
    assert (b"content-length", b"42") in incoming.forward_headers


def test_chunked_upload_counts_as_a_body_but_transfer_encoding_is_not_forwarded() -> None:
    incoming = _read([(b"transfer-encoding", b"chunked")])
    assert incoming.chunked
    assert incoming.has_body
    assert all(name != b"transfer-encoding" for name, _ in incoming.forward_headers)


def test_request_without_length_or_chunking_has_no_body() -> None:
    assert not _read([(b"content-length", b"0")]).has_body
    assert not _read([]).has_body


def test_forwarded_headers_carry_client_scheme_host_and_the_request_id() -> None:
    # given a client's own X-Request-ID and X-Forwarded-* values
    incoming = _read(
        [
            (b"host", b"api.example.com"),
            (b"x-request-id", b"client-chosen"),
            (b"x-forwarded-proto", b"gopher"),
            (b"x-forwarded-host", b"evil.example"),
        ]
    )
    forwarded = dict(incoming.forward_headers)
    # then the gateway's values replace them (the request id is the one the middleware settled)
    assert forwarded[b"x-forwarded-for"] == b"203.0.113.7"
    assert forwarded[b"x-forwarded-proto"] == b"https"
    assert forwarded[b"x-forwarded-host"] == b"api.example.com"
    assert forwarded[b"x-request-id"] == b"req-1"
    assert len(incoming.forward_headers) == 4


def test_x_forwarded_for_is_the_resolved_client_alone() -> None:
    """The caller's chain is not passed on: the services believe the gateway, so the gateway
    says only what it resolved (uvicorn took the client from the chain if the peer is trusted)."""
    incoming = _read([(b"x-forwarded-for", b"10.9.8.7, 198.51.100.1")], client_ip="10.0.0.5")
    assert dict(incoming.forward_headers)[b"x-forwarded-for"] == b"10.0.0.5"


def test_response_loses_hop_by_hop_cors_and_server_headers() -> None:
    # given a service response with headers the edge owns
    kept = response_headers(
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"2"),
            (b"Connection", b"X-Internal"),
            (b"X-Internal", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Access-Control-Allow-Origin", b"*"),
            (b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
            (b"Server", b"uvicorn"),
            (b"X-Request-ID", b"abc"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ]
    )
    # then the rest passes, repeated headers included
    assert kept == [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_fixed_window_index_and_seconds_to_reset() -> None:
    assert current_window(120.0, 60).index == 2
    assert current_window(120.0, 60).reset_seconds == 60
    assert current_window(179.2, 60).reset_seconds == 1
    assert current_window(179.99, 60).reset_seconds == 1
    assert current_window(150.5, 60).reset_seconds == 30


def test_counter_keys_differ_per_bucket_identity_and_window() -> None:
    window = current_window(120.0, 60)
    assert counter_key("rl", Bucket.AGENT, "a-1", window) == "rl:agent:a-1:2"
    assert counter_key("rl", Bucket.IP, "a-1", window) == "rl:ip:a-1:2"


def test_quota_headers_and_retry_after_once_exceeded() -> None:
    within = Quota(limit=3, used=3, reset_seconds=12)
    over = Quota(limit=3, used=4, reset_seconds=12)
    assert not within.exceeded
    assert within.header_dict() == {
        "ratelimit-limit": "3",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "12",
    }
    assert over.exceeded
    assert over.header_dict()["retry-after"] == "12"
    assert over.remaining == 0
