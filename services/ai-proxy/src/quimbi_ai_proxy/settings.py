"""ai-proxy settings: the seed's QUIMBI_* and DRAFT_* names, plus the breaker and stale knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from quimbi_common.settings import CommonSettings

Tone = Literal["empathetic", "professional", "friendly"]
Length = Literal["short", "medium", "long"]


class Settings(CommonSettings):
    service_name: str = "ai-proxy"
    port: int = 8105
    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/ai_proxy"

    # Where the ticket, its messages and its customer come from (the caller's token is forwarded).
    tickets_url: str = "http://127.0.0.1:8101"
    tickets_timeout: float = 5.0

    # Quimbi Intelligence: only ever reached at this URL, with this key (never the agent's JWT).
    quimbi_base_url: str = "http://127.0.0.1:8199"
    quimbi_api_key: SecretStr = SecretStr("dev-quimbi-key")
    quimbi_timeout: float = 30.0
    quimbi_max_retries: int = 3
    quimbi_retry_backoff_seconds: float = 0.5  # first wait; doubles per retry, plus jitter
    quimbi_retry_max_backoff_seconds: float = 5.0
    quimbi_max_connections: int = 50
    quimbi_breaker_failure_threshold: int = 5  # consecutive failed attempts that open it
    quimbi_breaker_reset_seconds: float = 30.0  # open → half-open (one probe) after this

    # Redis caching (seconds), as the seed names them.
    quimbi_cache_intelligence_ttl: int = 900
    quimbi_cache_churn_ttl: int = 3600
    quimbi_cache_ltv_ttl: int = 3600
    draft_cache_ttl: int = 3600
    # A longer-lived copy of each answer, served marked `stale` while Quimbi is unavailable.
    quimbi_stale_ttl: int = 86400
    # A separate Redis for the cache if wanted; defaults to REDIS_URL.
    cache_redis_url: str | None = None
    cache_redis_timeout: float = 0.5

    draft_default_tone: Tone = "empathetic"
    draft_default_length: Length = "medium"
    draft_llm_provider: str = "anthropic"  # passed to Quimbi, which owns the model choice
    draft_model: str = "claude-3-5-sonnet-20241022"

    # Churn at or above this asks Quimbi for a retention-minded draft.
    retention_churn_risk: float = 0.6
    # Lifetime value tiers for the recommendation's `customer_value`.
    customer_high_value_ltv: float = 1000.0
    customer_medium_value_ltv: float = 250.0

    # ticket.created warms the customer's intelligence in the background, this many at a time.
    intelligence_warm_concurrency: int = 4

    @property
    def cache_redis(self) -> str:
        return self.cache_redis_url or self.redis_url
