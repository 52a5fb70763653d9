"""Pure logic: the circuit breaker, conversation fingerprints, tiers and settings defaults."""

from __future__ import annotations

import pytest

from quimbi_ai_proxy import domain
from quimbi_ai_proxy.domain import BreakerState, CircuitBreaker
from quimbi_ai_proxy.settings import Settings

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    # given a breaker that opens after 3 failures
    breaker = CircuitBreaker(3, 10.0, clock=Clock())
    # when two failures, a success, then three failures happen
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    # then it is open and refuses calls until the cool-down
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(10.0)


def test_half_open_breaker_admits_one_probe_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    # when the cool-down has passed
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    # then exactly one caller may probe
    assert breaker.allow()
    assert not breaker.allow()
    # and a successful probe closes it
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_failed_probe_reopens_breaker_for_a_new_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 5.0, clock=clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 6.0
    assert breaker.allow()
    # when the probe fails (even though one failure is under the threshold)
    breaker.record_failure()
    # then it is open again, counting from now
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()


def test_abandoned_probe_lets_the_next_caller_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_conversation_fingerprint_changes_with_a_new_or_edited_message() -> None:
    messages = [{"id": "m1", "content": "Where is my order?"}]
    same = domain.conversation_fingerprint([{"id": "m1", "content": "Where is my order?"}])
    added = domain.conversation_fingerprint([*messages, {"id": "m2", "content": "Hello?"}])
    edited = domain.conversation_fingerprint([{"id": "m1", "content": "Where is my refund?"}])
    assert domain.conversation_fingerprint(messages) == same
    assert len({same, added, edited}) == 3


@pytest.mark.parametrize(
    ("risk", "level"),
    [(0.0, "low"), (0.29, "low"), (0.3, "medium"), (0.59, "medium"), (0.6, "high")],
)
def test_churn_risk_level_uses_quimbi_buckets(risk: float, level: str) -> None:
    assert domain.churn_risk_level(risk) == level


@pytest.mark.parametrize(("ltv", "tier"), [(1000.0, "high"), (999.99, "medium"), (10.0, "low")])
def test_customer_value_tier(ltv: float, tier: str) -> None:
    assert domain.customer_value_tier(ltv, high=1000.0, medium=250.0) == tier


def test_high_churn_asks_for_a_retention_draft() -> None:
    assert domain.draft_goal(0.7, retention_threshold=0.6) == "retain_customer"
    assert domain.draft_goal(0.2, retention_threshold=0.6) == "resolve_issue"


def test_conversation_turns_carry_speaker_content_and_name_only() -> None:
    turns = domain.conversation_turns(
        [{"id": "m1", "from_agent": 1, "content": None, "from_name": "Ann", "from_email": "a@x"}]
    )
    assert turns == [{"from_agent": True, "content": "", "from_name": "Ann"}]


def test_default_settings_follow_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUIMBI_TIMEOUT", "QUIMBI_MAX_RETRIES", "DRAFT_CACHE_TTL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 8105
    assert settings.quimbi_timeout == 30.0
    assert settings.quimbi_max_retries == 3
    assert settings.quimbi_cache_intelligence_ttl == 900
    assert settings.quimbi_cache_churn_ttl == settings.quimbi_cache_ltv_ttl == 3600
    assert settings.draft_cache_ttl == 3600
    assert settings.database_url.endswith("/ai_proxy")
