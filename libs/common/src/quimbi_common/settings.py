"""The settings base every service extends; environment names follow the seed document."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .backoff import INITIAL_SECONDS, MAX_SECONDS, Backoff

DEV_API_KEY = "dev-integration-key"


class CommonSettings(BaseSettings):
    """Settings every service reads. A service subclasses it and sets its own defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    service_name: str = "service"
    environment: Literal["development", "test", "staging", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    # What this process does (`python -m quimbi_<service> serve|consume` sets it): "serve" the
    # HTTP API only, "consume" the Kafka consumers, the outbox relay and the jobs (health and
    # metrics on `consume_port`, default `port` + 1000), "all" both (the default, one port).
    process_role: Literal["all", "serve", "consume"] = "all"
    consume_port: int | None = None
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated addresses or
    # networks, uvicorn's FORWARDED_ALLOW_IPS): for a service the gateway's address(es), for the
    # gateway the load balancers in front of it. Empty (the default): nobody's; the client
    # address is the peer's.
    forwarded_allow_ips: str = ""

    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/postgres"
    database_pool_size: int = 10
    database_pool_pre_ping: bool = False  # a round trip per checkout; recycle covers staleness
    redis_url: str = "redis://127.0.0.1:6379/0"

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_topic_partitions: int = 3
    kafka_linger_ms: int = 1
    kafka_auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    kafka_consumer_group: str | None = None  # default: the topic prefix + the service name
    consumer_batch_size: int = 500  # records per fetch, applied in one transaction
    # Busy, a fetch is answered with the first record there (or after this long, empty): an
    # empty answer every 25 ms (32 KiB were never there) made fetches follow the clock, not the
    # records: 5.6-9.4 fetches per ticket, the broker's main cost. A batch is what arrived
    # while the one before was applied
    consumer_fetch_min_bytes: int = 1
    consumer_fetch_max_wait_ms: int = 500
    # Idle (a poll found nothing for `consumer_idle_after_ms`), a fetch waits in the broker up
    # to this long for the first record instead (answered at once when one arrives): an idle
    # member sends one fetch a second, not forty
    consumer_idle_fetch_wait_ms: int = 1000
    consumer_idle_after_ms: int = 250
    consumer_max_retries: int = 3
    consumer_retry_backoff_seconds: float = 0.2
    consumer_lag_interval_seconds: float = 5.0  # kafka_consumer_lag refreshed this often
    # How often the broker is pinged while reachable (a lost broker: every 2 s, to say at once
    # that it is back); a broker lost in between is noticed by the relay and the consumer too
    kafka_ping_interval_seconds: float = 10.0
    # Back-off while Kafka or PostgreSQL is away (runtime, outbox relay, consumer): the first
    # wait, doubling up to the cap.
    retry_backoff_initial_seconds: float = INITIAL_SECONDS
    retry_backoff_max_seconds: float = MAX_SECONDS
    consumer_stop_flush_seconds: float = 5.0  # at most this long committing offsets on stop
    consumer_commit_timeout_seconds: float = 10.0  # a commit stuck longer is tried again
    # Under load, applied offsets are committed at most this often, not after every batch (an
    # OffsetCommit per batch was 2.5 per ticket, the broker's group coordinator busy with them);
    # a crash redelivers what came since, which the event ids skip. An empty poll commits at once
    consumer_commit_interval_ms: int = 500
    # The relay wakes on the writers' NOTIFY and when its LISTEN connection drops; this poll
    # is only the fallback (a connection that hangs without closing)
    outbox_poll_interval_seconds: float = 10.0
    outbox_batch_size: int = 500
    outbox_retention_hours: int = 24
    outbox_prune_interval_seconds: float = 60.0  # how often a relay deletes rows past retention
    outbox_metrics_interval_seconds: float = 2.0  # how often the relay measures its backlog
    # Read-your-writes: how long a request for a ticket the projection does not know (or the
    # caller may not see) yet may wait for its event; then it is a 404. Unknown ids wait only
    # when made (UUIDv7 time) in the last `new_id_seconds`.
    read_your_writes_wait_seconds: float = 2.0
    read_your_writes_new_id_seconds: float = 10.0

    jwt_issuer: str = "quimbi-support"
    jwt_audience: str = "quimbi-support-api"
    jwks_url: str = "http://127.0.0.1:8102/.well-known/jwks.json"
    jwks_json: str | None = None  # a static JWKS document, used instead of jwks_url when set
    api_key: SecretStr = SecretStr(DEV_API_KEY)

    cors_origins: str = "http://localhost:5173,http://localhost:3000"
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def cors_origins_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def listen_port(self) -> int:
        """The port this process listens on: a consume process answers health and metrics
        beside its service's API port, so both roles run on one host with the defaults."""
        if self.process_role != "consume":
            return self.port
        return self.consume_port if self.consume_port is not None else self.port + 1000

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def backoff(self) -> Backoff:
        """A fresh back-off for one retry loop, from these settings."""
        return Backoff(self.retry_backoff_initial_seconds, self.retry_backoff_max_seconds)

    @property
    def consumer_group(self) -> str:
        """Kafka groups are broker-wide: runs isolated by a topic prefix get their own groups too,
        or every run's members of "agents" would rebalance each other's (seconds-long stalls)."""
        return self.kafka_consumer_group or f"{self.kafka_topic_prefix}{self.service_name}"

    def topic(self, name: str) -> str:
        """The Kafka topic for an event type (a prefix isolates test runs on a shared broker)."""
        return f"{self.kafka_topic_prefix}{name}"
