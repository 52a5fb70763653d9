"""Pure ticket logic, no I/O: the status machine, message analysis and the derived ticket fields.

Everything here is tested without a database (tests/test_domain.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from quimbi_common.enums import Intent, TicketPriority, TicketStatus
from quimbi_common.numbers import clamp
from quimbi_common.topic_alerts import matched_topic_alerts

NEUTRAL_SENTIMENT = 0.5
SENTIMENT_MAX_CHARS = 5000  # longer messages are analysed on their first 5000 characters

# --- status machine ------------------------------------------------------------------------------

_S = TicketStatus
ALLOWED_TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    _S.OPEN: frozenset({_S.IN_PROGRESS, _S.PENDING, _S.RESOLVED, _S.CLOSED}),
    _S.IN_PROGRESS: frozenset({_S.OPEN, _S.PENDING, _S.RESOLVED, _S.CLOSED}),
    _S.PENDING: frozenset({_S.OPEN, _S.IN_PROGRESS, _S.RESOLVED, _S.CLOSED}),
    _S.RESOLVED: frozenset({_S.OPEN, _S.CLOSED}),  # reopen, or close for good
    _S.CLOSED: frozenset(),  # final: a new problem is a new ticket
}


def can_transition(current: TicketStatus, new: TicketStatus) -> bool:
    """Whether a ticket may move from `current` to `new` (staying put is always allowed)."""
    return new == current or new in ALLOWED_TRANSITIONS[current]


class ClosedTicketError(Exception):
    """A closed ticket takes no more messages."""


def status_after_message(status: TicketStatus, *, from_agent: bool) -> TicketStatus:
    """The ticket's status once a message is added: a customer reopens pending/resolved ones."""
    if status == TicketStatus.CLOSED:
        raise ClosedTicketError
    if not from_agent and status in (TicketStatus.PENDING, TicketStatus.RESOLVED):
        return TicketStatus.OPEN
    return status


# --- message analysis ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment_score(text: str) -> float:
    """VADER's compound polarity (-1..1) mapped onto 0..1 (0 angry, 0.5 neutral, 1 delighted)."""
    compound = _analyzer().polarity_scores(text[:SENTIMENT_MAX_CHARS])["compound"]
    return round(clamp((compound + 1.0) / 2.0), 2)


def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE)


# First match wins, so the more specific and more actionable intents come first.
_INTENT_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    (
        Intent.CANCELLATION,
        _words(
            r"cancel\w*",
            r"unsubscribe\w*",
            r"close my account",
            r"delete my account",
            r"terminate\w*",
            r"stop (?:my )?subscription",
        ),
    ),
    (
        Intent.REFUND_REQUEST,
        _words(r"refund\w*", r"money back", r"reimburse\w*", r"charge ?back", r"return for credit"),
    ),
    (
        Intent.BUG_REPORT,
        _words(
            r"bugs?",
            r"errors?",
            r"crash\w*",
            r"broken",
            r"glitch\w*",
            r"not working",
            r"(?:doesn'?t|does not|won'?t|will not|can'?t|cannot|can not)"
            r" (?:work|load|open|log ?in)",
            r"fail\w*",
            r"not processing",
            r"exception",
        ),
    ),
    (
        Intent.COMPLAINT,
        _words(
            r"terrible",
            r"awful",
            r"horrible",
            r"unacceptable",
            r"disappointed",
            r"disappointing",
            r"worst",
            r"angry",
            r"furious",
            r"frustrat\w*",
            r"complain\w*",
            r"ridiculous",
            r"poor service",
            r"never again",
        ),
    ),
    (
        Intent.FEEDBACK,
        _words(
            r"suggest\w*",
            r"feedback",
            r"would be nice",
            r"feature request",
            r"it would help",
            r"improve\w*",
            r"recommendation",
        ),
    ),
    (
        Intent.QUESTION,
        re.compile(
            r"\?|^\s*(?:how|what|when|where|why|which|who|can|could|is|are|does|do|will|would)\b",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        Intent.PRAISE,
        _words(
            r"thanks?",
            r"thank you",
            r"great",
            r"awesome",
            r"excellent",
            r"amazing",
            r"love",
            r"fantastic",
            r"wonderful",
            r"appreciate\w*",
        ),
    ),
)
STRONGLY_NEGATIVE = 0.25  # sentiment at or below this reads as a complaint without keywords


def detect_intent(text: str, sentiment: float | None = None) -> Intent:
    """The first intent whose keywords appear; very negative text without any is a complaint."""
    sample = text[:SENTIMENT_MAX_CHARS]
    for intent, pattern in _INTENT_RULES:
        if pattern.search(sample):
            return intent
    if sentiment is not None and sentiment <= STRONGLY_NEGATIVE:
        return Intent.COMPLAINT
    return Intent.OTHER


# --- derived ticket fields -----------------------------------------------------------------------


def customer_sentiment(recent_customer_scores: Sequence[float | None]) -> float:
    """Mean sentiment of the last customer messages given (newest first); 0.5 when none."""
    scores = [s for s in recent_customer_scores if s is not None]
    if not scores:
        return NEUTRAL_SENTIMENT
    return round(sum(scores) / len(scores), 2)


INTENT_DIFFICULTY: dict[Intent, float] = {
    Intent.BUG_REPORT: 0.7,
    Intent.CANCELLATION: 0.6,
    Intent.COMPLAINT: 0.6,
    Intent.REFUND_REQUEST: 0.5,
    Intent.OTHER: 0.4,
    Intent.QUESTION: 0.3,
    Intent.FEEDBACK: 0.3,
    Intent.PRAISE: 0.1,
}
PRIORITY_DIFFICULTY: dict[TicketPriority, float] = {
    TicketPriority.LOW: -0.1,
    TicketPriority.NORMAL: 0.0,
    TicketPriority.HIGH: 0.1,
    TicketPriority.URGENT: 0.15,
}
DIFFICULTY_PER_EXTRA_MESSAGE = 0.03
DIFFICULTY_MAX_LENGTH_PART = 0.15
DIFFICULTY_MAX_SENTIMENT_PART = 0.1


def estimated_difficulty(
    *,
    priority: TicketPriority,
    intents: Iterable[Intent],
    message_count: int,
    sentiment: float,
) -> float:
    """How hard the ticket looks (0 easy .. 1 hard), from what is known locally:

    the hardest intent seen in the subject and the customer's messages (bug report 0.7 ..
    praise 0.1, none 0.4), plus priority (low -0.1 .. urgent +0.15), plus 0.03 for each message
    after the first (at most 0.15), plus up to 0.1 as the customer's sentiment falls below
    neutral; clamped to 0..1, two decimals.
    """
    base = max((INTENT_DIFFICULTY[i] for i in intents), default=INTENT_DIFFICULTY[Intent.OTHER])
    length_part = min(
        DIFFICULTY_MAX_LENGTH_PART, DIFFICULTY_PER_EXTRA_MESSAGE * max(0, message_count - 1)
    )
    negativity = clamp((NEUTRAL_SENTIMENT - sentiment) / NEUTRAL_SENTIMENT)
    value = (
        base
        + PRIORITY_DIFFICULTY[priority]
        + length_part
        + DIFFICULTY_MAX_SENTIMENT_PART * negativity
    )
    return round(clamp(value), 2)


# --- inbox -------------------------------------------------------------------------------------


def like_pattern(keyword: str) -> str:
    """An ILIKE pattern matching `keyword` anywhere, with LIKE's wildcards taken literally."""
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matches_topic_alert(keywords: Sequence[str], texts: Iterable[str]) -> bool:
    """The Python twin of the inbox's SQL match (tests use it as the oracle)."""
    return bool(matched_topic_alerts(keywords, texts))
