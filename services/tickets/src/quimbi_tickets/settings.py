"""The tickets service's settings (environment names follow the seed document).

Limits that are part of the API contract (subject 500 characters, content 64 KiB, page size
1-100) live in `schemas.py`, not here: they are not a deployment's choice.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quimbi_common.settings import CommonSettings

ALLOWED_ATTACHMENT_TYPES = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
]


class Settings(CommonSettings):
    service_name: str = "tickets"
    port: int = 8101
    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/tickets"

    topic_alert_boost: float = 5.0  # TOPIC_ALERT_BOOST: added in the inbox when a keyword matches
    customer_sentiment_window: int = 3  # the last N customer messages make customer_sentiment
    context_max_past_tickets: int = 5  # CONTEXT_MAX_PAST_TICKETS: recent tickets on a customer

    # The live inbox (live/): how long the live log keeps entries (a reconnect within it resumes
    # without gaps), the idle heartbeat, how often tokens are re-checked, a slow reader's bound.
    live_retention_seconds: float = 600.0
    live_heartbeat_seconds: float = 15.0
    live_auth_check_seconds: float = 1.0
    live_queue_max: int = 2000
    # Open streams this process serves at most (503 past it: another replica or a retry), and per
    # agent (429 past it: a leaked tab or a reconnect loop cannot hold a process's connections).
    live_max_streams: int = Field(default=2000, ge=1)
    live_max_streams_per_agent: int = Field(default=5, ge=1)

    # Search: how many matching messages (and, apart, subjects) are ranked at most, plus the
    # matches among the latest 2 x as many (a common word costs this, not the table), and
    # PostgreSQL's time budget for one search.
    search_candidates: int = Field(default=200, ge=1)
    search_timeout_ms: int = Field(default=5000, ge=1)
    # Attachments (attachments/): the largest file (413 above it), the types accepted as
    # sniffed from the bytes (415 otherwise), where files live, and how long an uploaded file
    # waits to be attached to a message before it is swept away.
    attachments_max_bytes: int = 25 * 1024 * 1024
    attachments_allowed_types: list[str] = ALLOWED_ATTACHMENT_TYPES
    attachments_storage: Literal["local", "s3"] = "local"
    attachments_dir: str = ".local/attachments"  # local storage, relative to the working dir
    attachments_s3_bucket: str = "quimbi-attachments"
    attachments_s3_endpoint: str | None = None  # e.g. http://127.0.0.1:9400; None: AWS
    attachments_s3_region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION
    attachments_s3_access_key_id: str | None = None  # None: AWS_ACCESS_KEY_ID etc.
    attachments_s3_secret_access_key: str | None = None
    attachments_pending_seconds: float = 24 * 3600.0
    attachments_sweep_interval_seconds: float = 60.0
