"""Pure logic of the proxy: cache keys, conversation fingerprints, tiers, and the circuit breaker.

Nothing here does I/O, so all of it is tested in milliseconds; the breaker takes its clock as
an argument for the same reason.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

LOW_CHURN_BELOW = 0.3
MEDIUM_CHURN_BELOW = 0.6


# --- cache keys -----------------------------------------------------------------------------


def intelligence_key(customer_id: str) -> str:
    return f"quimbi:intel:{customer_id}"


def churn_key(customer_id: str) -> str:
    return f"quimbi:churn:{customer_id}"


def ltv_key(customer_id: str) -> str:
    return f"quimbi:ltv:{customer_id}"


def draft_key(ticket_id: str, tone: str, length: str) -> str:
    return f"ai:draft:{ticket_id}:{tone}:{length}"


def recommendation_key(ticket_id: str) -> str:
    return f"ai:recommendation:{ticket_id}"


def stale_key(key: str) -> str:
    """The longer-lived copy of `key`, served (marked stale) while Quimbi is unavailable."""
    return f"stale:{key}"


# --- conversation ---------------------------------------------------------------------------


def conversation_fingerprint(messages: Iterable[Mapping[str, Any]]) -> str:
    """A digest of the messages (ids and contents): an answer cached for one conversation is
    never served for another (what keeps drafts current: no event drops them)."""
    parts = [[str(m.get("id", "")), str(m.get("content", ""))] for m in messages]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def conversation_turns(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as Quimbi reads it: who spoke, what they said, and the speaker's name."""
    return [
        {
            "from_agent": bool(m.get("from_agent")),
            "content": str(m.get("content") or ""),
            "from_name": m.get("from_name"),
        }
        for m in messages
    ]


# --- customer -------------------------------------------------------------------------------


def churn_risk_level(churn_risk: float) -> str:
    """Quimbi's buckets, used when an answer lacks a level: < 0.3 low, < 0.6 medium, else high."""
    if churn_risk < LOW_CHURN_BELOW:
        return "low"
    return "medium" if churn_risk < MEDIUM_CHURN_BELOW else "high"


def customer_value_tier(lifetime_value: float, *, high: float, medium: float) -> str:
    if lifetime_value >= high:
        return "high"
    return "medium" if lifetime_value >= medium else "low"


def draft_goal(churn_risk: float, *, retention_threshold: float) -> str:
    """What the draft should achieve: keep a customer likely to leave, else resolve the issue."""
    return "retain_customer" if churn_risk >= retention_threshold else "resolve_issue"


# --- circuit breaker ------------------------------------------------------------------------


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures → half-open once
    `reset_seconds` have passed, admitting a single probe whose outcome closes or reopens it.

    While open (or while the probe is out) `allow()` is False, so callers fail fast instead of
    queueing on a service that is down.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_after(self) -> float:
        """Seconds until a probe may be tried (0 when closed or already half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_seconds - (self.clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go out now? In half-open, only the first caller gets through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probe_out = False

    def record_failure(self) -> None:
        self.failures += 1
        if self._probe_out or self.failures >= self.failure_threshold:
            self._opened_at = self.clock()
        self._probe_out = False

    def abandon(self) -> None:
        """A call ended with no verdict (cancelled): let the next caller probe instead."""
        self._probe_out = False
