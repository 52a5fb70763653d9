"""The gateway's pure rules: which service serves a path, which routes are open, which headers
cross the edge, and the fixed-window arithmetic of the rate limits. No I/O here."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum


class Upstream(StrEnum):
    TICKETS = "tickets"
    AGENTS = "agents"
    SLA = "sla"
    SCORING = "scoring"
    AI_PROXY = "ai-proxy"


_ID = r"[^/]+"
_REST = r"(?:/.*)?"

# ARCHITECTURE §2, in order: the first match wins, so the ticket sub-resources owned by agents,
# sla and scoring come before the catch-all `/api/tickets*`.
ROUTING_TABLE: tuple[tuple[str, Upstream], ...] = (
    (r"/\.well-known/jwks\.json", Upstream.AGENTS),
    (rf"/api/agents{_REST}", Upstream.AGENTS),
    (rf"/api/reports{_REST}", Upstream.AGENTS),
    (rf"/api/tickets/{_ID}/assign/?", Upstream.AGENTS),
    (rf"/api/tickets/{_ID}/assignment[^/]*{_REST}", Upstream.AGENTS),
    (rf"/api/tickets/{_ID}/sla[^/]*{_REST}", Upstream.SLA),
    (rf"/api/sla{_REST}", Upstream.SLA),
    (rf"/api/tickets/{_ID}/score-breakdown/?", Upstream.SCORING),
    (rf"/api/tickets{_REST}", Upstream.TICKETS),
    (rf"/api/customers{_REST}", Upstream.TICKETS),
    (rf"/api/canned-responses{_REST}", Upstream.TICKETS),
    (rf"/api/ai{_REST}", Upstream.AI_PROXY),
)
_COMPILED = tuple((re.compile(pattern), upstream) for pattern, upstream in ROUTING_TABLE)

# Reachable without credentials (everything else needs a token or the integration key).
OPEN_ROUTES = frozenset(
    {
        ("POST", "/api/agents/login"),
        ("GET", "/.well-known/jwks.json"),
        ("HEAD", "/.well-known/jwks.json"),
    }
)


# File uploads, whose bodies may be up to MAX_UPLOAD_BODY_BYTES instead of the usual limit.
_UPLOADS = re.compile(rf"/api/tickets/{_ID}/attachments/?")


def is_upload(method: str, path: str) -> bool:
    return method == "POST" and _UPLOADS.fullmatch(path) is not None


def route(path: str) -> Upstream | None:
    """The service that serves `path`, or None when no service does."""
    for pattern, upstream in _COMPILED:
        if pattern.fullmatch(path):
            return upstream
    return None


def is_open(method: str, path: str) -> bool:
    return (method, path) in OPEN_ROUTES


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


# --- headers -------------------------------------------------------------------------------------

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway itself on the way in (the client's values are replaced or extended).
_SET_BY_GATEWAY = frozenset(
    {
        b"host",
        b"expect",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
# Set by the gateway's own server and middleware on the way out (CORS belongs to the edge).
_RESPONSE_SET_BY_GATEWAY = frozenset({b"date", b"server", b"x-request-id"})


@dataclass(slots=True)
class IncomingRequest:
    """What the edge reads from a request's headers, in one pass, and what it forwards."""

    forward_headers: list[tuple[bytes, bytes]]
    authorization: str | None = None
    api_key: str | None = None
    content_length: int | None = None
    chunked: bool = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def _connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def read_request(
    raw_headers: list[tuple[bytes, bytes]],
    *,
    client_ip: str,
    scheme: str,
    request_id: str,
) -> IncomingRequest:
    """Split a request's headers into the credentials the edge checks and the headers the service
    gets: hop-by-hop headers dropped, X-Request-ID and X-Forwarded-* set (the caller's replaced)."""
    forward: list[tuple[bytes, bytes]] = []
    incoming = IncomingRequest(forward)
    host = b""
    listed: set[bytes] = set()
    for name, value in raw_headers:
        name = name.lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                listed = _connection_tokens(value)
            elif name == b"transfer-encoding":
                incoming.chunked = True
            continue
        if name in _SET_BY_GATEWAY:
            if name == b"host":
                host = value
            continue
        if name == b"authorization":
            incoming.authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            incoming.api_key = value.decode("latin-1")
        elif name == b"content-length":
            try:
                incoming.content_length = int(value)
            except ValueError:
                incoming.content_length = None
                continue
        forward.append((name, value))
    if listed - {b"keep-alive", b"close"}:
        forward[:] = [(name, value) for name, value in forward if name not in listed]
    # The client as the gateway's server resolved it (from X-Forwarded-For only when the peer is
    # a proxy named in FORWARDED_ALLOW_IPS): the caller's own X-Forwarded-For is not passed on.
    forward.append((b"x-forwarded-for", client_ip.encode("latin-1")))
    forward.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if host:
        forward.append((b"x-forwarded-host", host))
    forward.append((b"x-request-id", request_id.encode("latin-1")))
    return incoming


def response_headers(raw_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A service's response headers without hop-by-hop headers and those the edge sets itself."""
    listed: set[bytes] = set()
    kept: list[tuple[bytes, bytes]] = []
    for name, value in raw_headers:
        name = name.lower()
        if name == b"connection":
            listed = _connection_tokens(value)
        if (
            name in HOP_BY_HOP
            or name in _RESPONSE_SET_BY_GATEWAY
            or name.startswith(b"access-control-")
        ):
            continue
        kept.append((name, value))
    if listed:
        kept = [(name, value) for name, value in kept if name not in listed]
    return kept


# --- rate limits ---------------------------------------------------------------------------------


class Bucket(StrEnum):
    """Who a request is counted against."""

    AGENT = "agent"
    API_KEY = "key"
    IP = "ip"


@dataclass(frozen=True, slots=True)
class Window:
    """The fixed window `now` falls in: its index (part of the counter's key) and seconds left."""

    index: int
    reset_seconds: int


def current_window(now: float, length_seconds: int) -> Window:
    index = int(now // length_seconds)
    left = (index + 1) * length_seconds - now
    return Window(index, max(1, math.ceil(left)))


def counter_key(prefix: str, bucket: Bucket, identity: str, window: Window) -> str:
    return f"{prefix}:{bucket.value}:{identity}:{window.index}"


@dataclass(frozen=True, slots=True)
class Quota:
    """A request's standing in its bucket: the RateLimit-* headers and whether it is over."""

    limit: int
    used: int
    reset_seconds: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
        ]

    def header_dict(self) -> dict[str, str]:
        values = {name.decode(): value.decode() for name, value in self.headers()}
        if self.exceeded:
            values["retry-after"] = str(self.reset_seconds)
        return values
