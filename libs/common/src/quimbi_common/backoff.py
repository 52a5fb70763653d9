"""Exponential back-off while something we need (Kafka, PostgreSQL) is away: one rule for the
runtime, the outbox relay, the consumer and the projection watch. Its numbers are settings
(RETRY_BACKOFF_INITIAL_SECONDS, RETRY_BACKOFF_MAX_SECONDS); these are their defaults.

A plain sleep, so a cancellation during the wait stops the caller at once (the stop paths
depend on it); tenacity's retry loop would own the loop body these callers need to keep.
"""

from __future__ import annotations

import asyncio

INITIAL_SECONDS = 0.5
MAX_SECONDS = 5.0


class Backoff:
    """`first`, doubling after each wait, never above `cap`; `reset()` after a success."""

    def __init__(self, first: float = INITIAL_SECONDS, cap: float = MAX_SECONDS) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    async def sleep(self) -> None:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        await asyncio.sleep(delay)


def nth_delay(base: float, attempt: int, cap: float = MAX_SECONDS) -> float:
    """The wait before retry `attempt` (0, 1, …): base · 2^attempt, at most `cap`."""
    return float(min(cap, base * 2**attempt))
