"""The one clock services read: timezone-aware UTC, as every stored and published time is."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
