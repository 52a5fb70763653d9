"""The pure ticket logic: status machine, message analysis, derived fields, topic alerts."""

from __future__ import annotations

import pytest

from quimbi_common.enums import Intent, TicketPriority, TicketStatus
from quimbi_tickets import domain

pytestmark = pytest.mark.unit
S = TicketStatus


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (S.OPEN, S.IN_PROGRESS, True),
        (S.IN_PROGRESS, S.PENDING, True),
        (S.PENDING, S.OPEN, True),
        (S.OPEN, S.RESOLVED, True),
        (S.RESOLVED, S.OPEN, True),
        (S.RESOLVED, S.CLOSED, True),
        (S.OPEN, S.OPEN, True),
        (S.RESOLVED, S.PENDING, False),
        (S.RESOLVED, S.IN_PROGRESS, False),
        (S.CLOSED, S.OPEN, False),
        (S.CLOSED, S.RESOLVED, False),
    ],
)
def test_status_transitions_follow_the_documented_table(
    current: TicketStatus, new: TicketStatus, allowed: bool
) -> None:
    assert domain.can_transition(current, new) is allowed


@pytest.mark.parametrize("status", [S.PENDING, S.RESOLVED])
def test_customer_message_reopens_a_waiting_or_resolved_ticket(status: TicketStatus) -> None:
    assert domain.status_after_message(status, from_agent=False) == S.OPEN


@pytest.mark.parametrize("status", [S.PENDING, S.RESOLVED, S.IN_PROGRESS, S.OPEN])
def test_agent_message_leaves_the_status_alone(status: TicketStatus) -> None:
    assert domain.status_after_message(status, from_agent=True) == status


@pytest.mark.parametrize("from_agent", [True, False])
def test_closed_ticket_refuses_messages(from_agent: bool) -> None:
    with pytest.raises(domain.ClosedTicketError):
        domain.status_after_message(S.CLOSED, from_agent=from_agent)


def test_sentiment_maps_polarity_onto_zero_to_one() -> None:
    angry = domain.sentiment_score("This is terrible, awful service. I am furious and disgusted.")
    neutral = domain.sentiment_score("The parcel is in the box.")
    happy = domain.sentiment_score("Thank you so much, this is wonderful and great help!")
    assert 0.0 <= angry < 0.3
    assert neutral == 0.5
    assert 0.8 < happy <= 1.0


def test_sentiment_of_a_huge_message_reads_only_its_beginning() -> None:
    assert domain.sentiment_score("great " * 20_000) == domain.sentiment_score(
        ("great " * 20_000)[: domain.SENTIMENT_MAX_CHARS]
    )


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Please cancel my subscription", Intent.CANCELLATION),
        ("I want a refund for this broken chair", Intent.REFUND_REQUEST),
        ("The app crashes when I open settings", Intent.BUG_REPORT),
        ("Payment not processing", Intent.BUG_REPORT),
        ("Checkout doesn't work on my phone", Intent.BUG_REPORT),
        ("This is unacceptable, worst service ever", Intent.COMPLAINT),
        ("I suggest adding a dark mode", Intent.FEEDBACK),
        ("Where is my order?", Intent.QUESTION),
        ("how do I change my address", Intent.QUESTION),
        ("Thanks, you were awesome", Intent.PRAISE),
        ("Order 1234", Intent.OTHER),
    ],
)
def test_intent_comes_from_keyword_rules(text: str, intent: Intent) -> None:
    assert domain.detect_intent(text, domain.sentiment_score(text)) == intent


def test_very_negative_text_without_keywords_reads_as_a_complaint() -> None:
    assert domain.detect_intent("I hate this so much", 0.1) == Intent.COMPLAINT
    assert domain.detect_intent("I hate this so much", 0.5) == Intent.OTHER


def test_customer_sentiment_is_the_mean_of_the_scores_given() -> None:
    assert domain.customer_sentiment([0.2, 0.4, 0.9]) == 0.5
    assert domain.customer_sentiment([0.1]) == 0.1
    assert domain.customer_sentiment([None, 0.3]) == 0.3


def test_customer_sentiment_is_neutral_without_customer_messages() -> None:
    assert domain.customer_sentiment([]) == 0.5


def test_difficulty_grows_with_intent_priority_length_and_anger() -> None:
    easy = domain.estimated_difficulty(
        priority=TicketPriority.LOW, intents=[Intent.PRAISE], message_count=1, sentiment=0.9
    )
    hard = domain.estimated_difficulty(
        priority=TicketPriority.URGENT,
        intents=[Intent.QUESTION, Intent.BUG_REPORT],
        message_count=9,
        sentiment=0.0,
    )
    assert easy == 0.0
    assert hard == 1.0  # 0.7 + 0.15 + 0.15 + 0.1


def test_difficulty_of_a_plain_normal_ticket_is_the_documented_sum() -> None:
    value = domain.estimated_difficulty(
        priority=TicketPriority.HIGH, intents=[Intent.QUESTION], message_count=3, sentiment=0.25
    )
    assert value == pytest.approx(0.3 + 0.1 + 0.06 + 0.05)


def test_difficulty_without_any_intent_starts_from_other() -> None:
    value = domain.estimated_difficulty(
        priority=TicketPriority.NORMAL, intents=[], message_count=0, sentiment=0.5
    )
    assert value == domain.INTENT_DIFFICULTY[Intent.OTHER]


def test_like_pattern_takes_wildcards_literally() -> None:
    assert domain.like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"


def test_topic_match_is_case_insensitive_substring() -> None:
    assert domain.matches_topic_alert(["REFUND"], ["please refunded me"])
    assert not domain.matches_topic_alert(["refund"], ["money back"])
