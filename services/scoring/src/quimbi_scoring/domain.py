"""The smart inbox score (ARCHITECTURE §5) as pure functions: no clock, no I/O.

The stored score is the sum of five parts, rounded to 2 decimals; the topic-alert boost is
added only when someone asks with `topic_alerts` (the inbox list, the breakdown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.numbers import clamp

PRIORITY_POINTS: dict[TicketPriority, float] = {
    TicketPriority.LOW: 0.0,
    TicketPriority.NORMAL: 1.0,
    TicketPriority.HIGH: 2.5,
    TicketPriority.URGENT: 4.0,
}
WAIT_CAP = 3.0
SENTIMENT_POINTS = 2.0
NEUTRAL_SENTIMENT = 0.5
SENTIMENT_WINDOW = 3
SCORE_DECIMALS = 2
PART_DECIMALS = 4
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Weights:
    """The configurable weights (SCORING_* and TOPIC_ALERT_BOOST)."""

    urgency: float = 1.5
    value: float = 2.0
    churn: float = 3.0
    high_value_ltv: float = 1000.0
    topic_alert_boost: float = 5.0


@dataclass(frozen=True)
class ConversationMessage:
    """What the score needs from one message."""

    from_agent: bool
    created_at: datetime
    sentiment_score: float | None


@dataclass(frozen=True)
class Conversation:
    """The facts the score derives from a ticket's messages.

    `waiting_since` is None when an agent spoke last (nobody is waiting).
    """

    waiting_since: datetime | None
    customer_sentiment: float


@dataclass(frozen=True)
class ScoreInputs:
    priority: TicketPriority
    status: TicketStatus
    hours_waiting: float
    customer_sentiment: float
    lifetime_value: float
    churn_risk: float


@dataclass(frozen=True)
class ScoreParts:
    priority: float
    wait: float
    sentiment: float
    value: float
    churn: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Score:
    total: float
    parts: ScoreParts


def round_half_up(value: float, decimals: int) -> float:
    """Half away from zero on the value's 15 significant digits (2.675 → 2.68).

    This is exactly PostgreSQL's `round(value::numeric, n)` for a float8, so the bulk
    recalculation (SQL) and the event handlers (this module) always agree on a total.
    """
    exact = Decimal(f"{value:.15g}").quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    return float(exact)


def summarize_conversation(
    created_at: datetime, messages: Sequence[ConversationMessage]
) -> Conversation:
    """Who is waiting since when, and the customer's recent mood.

    Waiting starts at the earliest customer message not yet followed by an agent message, or at
    creation when there are no messages. Sentiment is the mean of the last three customer
    messages (a message the analyzer left unscored counts as neutral), 0.5 when there are none.
    """
    ordered = sorted(messages, key=lambda m: m.created_at)
    waiting_since: datetime | None = created_at if not ordered else None
    for message in ordered:
        if message.from_agent:
            waiting_since = None
        elif waiting_since is None:
            waiting_since = message.created_at
    recent = [m for m in ordered if not m.from_agent][-SENTIMENT_WINDOW:]
    if not recent:
        return Conversation(waiting_since, NEUTRAL_SENTIMENT)
    scores = [NEUTRAL_SENTIMENT if m.sentiment_score is None else m.sentiment_score for m in recent]
    return Conversation(waiting_since, sum(scores) / len(scores))


def hours_waiting(waiting_since: datetime | None, now: datetime) -> float:
    """Hours since `waiting_since` (0 when nobody waits or the clock says it is in the future)."""
    if waiting_since is None:
        return 0.0
    return max(0.0, (now - waiting_since).total_seconds() / SECONDS_PER_HOUR)


def compute_score(inputs: ScoreInputs, weights: Weights) -> Score:
    """The five parts and their total; resolved and closed tickets score 0."""
    if inputs.status.is_done:
        return Score(0.0, ScoreParts(0.0, 0.0, 0.0, 0.0, 0.0))
    priority = PRIORITY_POINTS[inputs.priority]
    wait = min(WAIT_CAP, weights.urgency * math.log10(1 + max(0.0, inputs.hours_waiting)))
    sentiment = SENTIMENT_POINTS * clamp(
        (NEUTRAL_SENTIMENT - inputs.customer_sentiment) / NEUTRAL_SENTIMENT, 0.0, 1.0
    )
    value = weights.value * clamp(inputs.lifetime_value / weights.high_value_ltv, 0.0, 1.0)
    churn = weights.churn * clamp(inputs.churn_risk, 0.0, 1.0)
    total = round_half_up(priority + wait + sentiment + value + churn, SCORE_DECIMALS)
    parts = ScoreParts(
        *(round_half_up(p, PART_DECIMALS) for p in (priority, wait, sentiment, value, churn))
    )
    return Score(total, parts)
