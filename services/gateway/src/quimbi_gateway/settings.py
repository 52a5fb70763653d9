"""The gateway's settings: where the services live, how long to wait for them, the limits."""

from __future__ import annotations

from quimbi_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "gateway"
    port: int = 8001

    tickets_url: str = "http://127.0.0.1:8101"
    agents_url: str = "http://127.0.0.1:8102"
    sla_url: str = "http://127.0.0.1:8103"
    scoring_url: str = "http://127.0.0.1:8104"
    ai_proxy_url: str = "http://127.0.0.1:8105"

    # Waiting for a service: to connect, then one deadline for the whole request (sending it,
    # the head and the body of the answer); a service that takes longer gets a 504.
    upstream_connect_timeout_seconds: float = 2.0
    upstream_timeout_seconds: float = 10.0
    ai_proxy_timeout_seconds: float = 60.0  # ai-proxy waits on Quimbi, with retries
    # An event stream (text/event-stream, e.g. the live inbox) is not bound by the deadline:
    # it ends when it has been silent this long (the services send heartbeats every 15 s).
    upstream_stream_idle_seconds: float = 60.0
    upstream_max_connections: int = 256
    upstream_max_keepalive_connections: int = 128
    # below uvicorn's 5 s keep-alive, so the service rarely closes a connection we reuse
    upstream_keepalive_expiry_seconds: float = 4.0

    max_request_body_bytes: int = 1024 * 1024
    # Attachment uploads (POST /api/tickets/{id}/attachments) only: tickets' ATTACHMENTS_MAX_BYTES
    # (25 MiB) plus room for the multipart framing; tickets judges the file itself.
    max_upload_body_bytes: int = 26 * 1024 * 1024

    # Requests per window: per agent (token), per integration key, per client IP (no token).
    rate_limit_per_agent: int = 1000
    rate_limit_per_api_key: int = 1000
    rate_limit_per_ip: int = 100
    rate_limit_window_seconds: int = 60
    rate_limit_prefix: str = "gateway:ratelimit"
    # After Redis fails, how long to skip it (local limiter; tokens answered 503) before retrying.
    redis_retry_after_seconds: float = 1.0
    token_cache_size: int = 10_000

    health_timeout_seconds: float = 2.0
    health_cache_seconds: float = 1.0
    openapi_timeout_seconds: float = 3.0
    openapi_cache_seconds: float = 30.0

    def upstream_urls(self) -> dict[str, str]:
        """Service name → base URL, in the order the docs list them."""
        return {
            "tickets": self.tickets_url,
            "agents": self.agents_url,
            "sla": self.sla_url,
            "scoring": self.scoring_url,
            "ai-proxy": self.ai_proxy_url,
        }

    def upstream_timeout(self, service: str) -> float:
        if service == "ai-proxy":
            return self.ai_proxy_timeout_seconds
        return self.upstream_timeout_seconds
