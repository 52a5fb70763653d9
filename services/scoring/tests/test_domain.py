"""The §5 formula against hand-computed cases: parts, clamps, the wait rule, and rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_scoring.domain import (
    ConversationMessage,
    ScoreInputs,
    ScoreParts,
    Weights,
    compute_score,
    hours_waiting,
    summarize_conversation,
)

pytestmark = pytest.mark.unit
DEFAULTS = Weights()
T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


def inputs(**overrides: object) -> ScoreInputs:
    values: dict[str, object] = {
        "priority": TicketPriority.NORMAL,
        "status": TicketStatus.OPEN,
        "hours_waiting": 0.0,
        "customer_sentiment": 0.5,
        "lifetime_value": 0.0,
        "churn_risk": 0.0,
    }
    values.update(overrides)
    return ScoreInputs(**values)  # type: ignore[arg-type]


def customer(minutes: int, sentiment: float | None = 0.5) -> ConversationMessage:
    return ConversationMessage(False, T0 + timedelta(minutes=minutes), sentiment)


def agent(minutes: int) -> ConversationMessage:
    return ConversationMessage(True, T0 + timedelta(minutes=minutes), 0.9)


# --- the five parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "points"),
    [
        (TicketPriority.LOW, 0.0),
        (TicketPriority.NORMAL, 1.0),
        (TicketPriority.HIGH, 2.5),
        (TicketPriority.URGENT, 4.0),
    ],
)
def test_priority_points_follow_the_table(priority: TicketPriority, points: float) -> None:
    # given a fresh ticket with neutral everything, when scored, then only priority counts
    score = compute_score(inputs(priority=priority), DEFAULTS)
    assert score.parts == ScoreParts(points, 0.0, 0.0, 0.0, 0.0)
    assert score.total == points


def test_every_part_adds_up_in_a_hand_computed_case() -> None:
    # given urgent, 9 h waiting, sentiment 0.25, LTV 500, churn 0.5
    case = inputs(
        priority=TicketPriority.URGENT,
        hours_waiting=9.0,
        customer_sentiment=0.25,
        lifetime_value=500.0,
        churn_risk=0.5,
    )
    # when scored with the default weights
    score = compute_score(case, DEFAULTS)
    # then 4 + 1.5·log10(10) + 2·0.5 + 2·0.5 + 3·0.5
    assert score.parts == ScoreParts(4.0, 1.5, 1.0, 1.0, 1.5)
    assert score.total == 9.0


def test_wait_is_logarithmic_and_rounded_total_to_two_decimals() -> None:
    # given a high ticket waiting one hour: wait = 1.5·log10(2) = 0.451544…
    score = compute_score(inputs(priority=TicketPriority.HIGH, hours_waiting=1.0), DEFAULTS)
    # then the part keeps 4 decimals and the total 2
    assert score.parts.wait == 0.4515
    assert score.total == 2.95


def test_totals_round_half_up_like_postgresql() -> None:
    # given 1 + 2·0.335 + 3·0.335 = 2.675 (a binary float just below the tie)
    case = inputs(lifetime_value=335.0, churn_risk=0.335)
    # then the total rounds up, as round(x::numeric, 2) does in PostgreSQL (round() would not)
    assert compute_score(case, DEFAULTS).total == 2.68
    assert round(1.0 + 2.0 * 0.335 + 3.0 * 0.335, 2) == 2.67


@pytest.mark.parametrize(("hours", "wait"), [(0.0, 0.0), (99.0, 3.0), (999.0, 3.0), (1e9, 3.0)])
def test_wait_is_capped_at_three_points(hours: float, wait: float) -> None:
    # given a long wait (1.5·log10(1000) = 4.5 uncapped), when scored, then wait ≤ 3
    assert compute_score(inputs(hours_waiting=hours), DEFAULTS).parts.wait == wait


def test_negative_hours_waiting_count_as_none() -> None:
    assert compute_score(inputs(hours_waiting=-5.0), DEFAULTS).parts.wait == 0.0


@pytest.mark.parametrize(
    ("sentiment", "points"),
    [(0.5, 0.0), (0.9, 0.0), (1.0, 0.0), (0.375, 0.5), (0.0, 2.0), (-0.3, 2.0)],
)
def test_sentiment_scores_only_below_neutral_and_is_clamped(
    sentiment: float, points: float
) -> None:
    # given the customer's mood, when scored, then 2 * clamp((0.5 - s)/0.5, 0, 1)
    assert compute_score(inputs(customer_sentiment=sentiment), DEFAULTS).parts.sentiment == points


@pytest.mark.parametrize(
    ("ltv", "points"), [(0.0, 0.0), (250.0, 0.5), (1000.0, 2.0), (5000.0, 2.0), (-40.0, 0.0)]
)
def test_value_is_proportional_to_ltv_up_to_the_high_value_mark(ltv: float, points: float) -> None:
    assert compute_score(inputs(lifetime_value=ltv), DEFAULTS).parts.value == points


@pytest.mark.parametrize(("churn", "points"), [(0.0, 0.0), (0.2, 0.6), (1.0, 3.0), (1.7, 3.0)])
def test_churn_is_weighted_and_clamped_to_one(churn: float, points: float) -> None:
    assert compute_score(inputs(churn_risk=churn), DEFAULTS).parts.churn == points


def test_negative_churn_risk_scores_nothing() -> None:
    assert compute_score(inputs(churn_risk=-0.2), DEFAULTS).parts.churn == 0.0


def test_weights_come_from_the_configuration() -> None:
    # given other weights
    weights = Weights(urgency=3.0, value=1.0, churn=10.0, high_value_ltv=200.0)
    case = inputs(hours_waiting=9.0, lifetime_value=100.0, churn_risk=0.2)
    # when scored, then 3·log10(10), 1·(100/200), 10·0.2
    score = compute_score(case, weights)
    assert score.parts == ScoreParts(1.0, 3.0, 0.0, 0.5, 2.0)
    assert score.total == 6.5


@pytest.mark.parametrize("status", [TicketStatus.RESOLVED, TicketStatus.CLOSED])
def test_resolved_and_closed_tickets_score_zero(status: TicketStatus) -> None:
    # given an urgent, long-waiting, unhappy, valuable, churning customer on a done ticket
    case = inputs(
        priority=TicketPriority.URGENT,
        status=status,
        hours_waiting=50.0,
        customer_sentiment=0.0,
        lifetime_value=9000.0,
        churn_risk=1.0,
    )
    # then nothing counts
    score = compute_score(case, DEFAULTS)
    assert score.total == 0.0
    assert score.parts == ScoreParts(0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("status", [TicketStatus.PENDING, TicketStatus.IN_PROGRESS])
def test_pending_and_in_progress_tickets_are_scored(status: TicketStatus) -> None:
    assert compute_score(inputs(status=status), DEFAULTS).total == 1.0


def test_the_maximum_score_is_fourteen_with_default_weights() -> None:
    case = inputs(
        priority=TicketPriority.URGENT,
        hours_waiting=1e6,
        customer_sentiment=0.0,
        lifetime_value=1e6,
        churn_risk=1.0,
    )
    assert compute_score(case, DEFAULTS).total == 14.0


# --- the conversation: who waits since when, and the mood -------------------------------------


def test_without_messages_the_wait_starts_at_creation_and_sentiment_is_neutral() -> None:
    conversation = summarize_conversation(T0, [])
    assert conversation.waiting_since == T0
    assert conversation.customer_sentiment == 0.5


def test_the_wait_starts_at_the_first_unanswered_customer_message() -> None:
    # given customer at 10 and 20 minutes, no reply
    conversation = summarize_conversation(T0, [customer(10), customer(20)])
    # then the wait starts at the first of them
    assert conversation.waiting_since == T0 + timedelta(minutes=10)


def test_an_agent_reply_restarts_the_wait_at_the_next_customer_message() -> None:
    # given customer, agent, customer, customer (given out of order)
    messages = [customer(40), agent(20), customer(30), customer(10)]
    conversation = summarize_conversation(T0, messages)
    # then the wait starts at the first customer message after the reply
    assert conversation.waiting_since == T0 + timedelta(minutes=30)


@pytest.mark.parametrize("messages", [[customer(10), agent(20)], [agent(5)]])
def test_nobody_waits_when_an_agent_spoke_last(messages: list[ConversationMessage]) -> None:
    assert summarize_conversation(T0, messages).waiting_since is None


def test_sentiment_is_the_mean_of_the_last_three_customer_messages() -> None:
    # given five customer messages and agent replies (agents' sentiment never counts)
    messages = [
        customer(1, 0.9),
        customer(2, 0.8),
        agent(3),
        customer(4, 0.1),
        customer(5, 0.2),
        agent(6),
        customer(7, 0.3),
    ]
    # then only the last three customer messages count
    assert summarize_conversation(T0, messages).customer_sentiment == pytest.approx(0.2)


def test_an_unscored_customer_message_counts_as_neutral() -> None:
    messages = [customer(1, 0.1), customer(2, None)]
    assert summarize_conversation(T0, messages).customer_sentiment == pytest.approx(0.3)


def test_hours_waiting_from_the_wait_origin() -> None:
    assert hours_waiting(T0, T0 + timedelta(minutes=90)) == 1.5
    assert hours_waiting(None, T0) == 0.0
    assert hours_waiting(T0 + timedelta(hours=1), T0) == 0.0  # a clock ahead of ours
