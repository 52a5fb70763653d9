"""Pure-function tests: deterministic content and fault bookkeeping, no app involved."""

import re

import pytest

from quimbi_standin.faults import Fault, FaultState, expand, parse_fail_endpoints
from quimbi_standin.generation import (
    analyze_customer,
    churn_level,
    generate_message,
    recommend_actions,
)

pytestmark = pytest.mark.unit

CONVERSATION = [
    {"from_agent": False, "content": "My card was declined at checkout."},
    {"from_agent": True, "content": "Sorry about that, checking now.", "from_name": "Sarah Lee"},
    {"from_agent": False, "content": "It still fails and I am losing patience"},
]


def _body(draft: str) -> str:
    """The sentences between greeting and sign-off of an email draft."""
    return draft.split("\n\n")[1]


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?=\s|$)", text))


def test_analyze_is_deterministic_and_depends_on_id() -> None:
    assert analyze_customer("cust_xyz") == analyze_customer("cust_xyz")
    assert analyze_customer("cust_xyz") != analyze_customer("cust_abc")


def test_analyze_shape_and_ranges() -> None:
    for customer_id in (f"cust_{i}" for i in range(200)):
        result = analyze_customer(customer_id)
        assert result["customer_id"] == customer_id
        assert set(result["archetype"]) == {"id", "name", "level", "traits"}
        assert result["archetype"]["traits"]
        predictions = result["predictions"]
        assert 0 <= predictions["churn_risk"] <= 1
        assert round(predictions["churn_risk"], 2) == predictions["churn_risk"]
        assert predictions["churn_risk_level"] == churn_level(predictions["churn_risk"])
        assert 50 <= predictions["lifetime_value"] <= 5000
        assert round(predictions["lifetime_value"], 2) == predictions["lifetime_value"]
        memberships = result["segments"]["memberships"]
        dominant = result["segments"]["dominant_segments"]
        assert sorted(memberships.values(), reverse=True)[:2] == [memberships[d] for d in dominant]
        assert memberships["at_risk"] == predictions["churn_risk"]
        assert result["behavioral_metrics"]["total_orders"] >= 1


@pytest.mark.parametrize(
    ("risk", "level"),
    [(0.0, "low"), (0.29, "low"), (0.3, "medium"), (0.59, "medium"), (0.6, "high"), (1.0, "high")],
)
def test_churn_level_thresholds(risk: float, level: str) -> None:
    assert churn_level(risk) == level


def test_message_greets_first_name_and_quotes_last_customer_message() -> None:
    result = generate_message(
        {"name": "John Smith"}, "resolve_issue", CONVERSATION, "email", "empathetic", "medium"
    )
    draft = result["draft_content"]
    assert draft.startswith("Hi John,\n\n")
    assert '"It still fails and I am losing patience"' in draft
    assert "declined" not in draft
    assert draft.endswith("Warm regards,\nSarah Lee")
    assert result["tone"] == "empathetic"
    assert result["channel"] == "email"
    assert result["personalization_applied"][:3] == [
        "Used customer's first name",
        "Acknowledged frustration",
        "Referenced the customer's last message",
    ]


def test_message_is_deterministic() -> None:
    args = ({"name": "Ann"}, "resolve_issue", CONVERSATION, "email", "friendly", "long")
    assert generate_message(*args) == generate_message(*args)


def test_message_without_name_or_customer_message() -> None:
    result = generate_message({}, "resolve_issue", [], "email", "professional", "short")
    assert result["draft_content"].startswith("Hello there,\n\nThank you for contacting us.")
    assert result["personalization_applied"] == []


@pytest.mark.parametrize(
    ("tone", "greeting", "closing"),
    [
        ("empathetic", "Hi Ann,", "Warm regards,"),
        ("professional", "Hello Ann,", "Kind regards,"),
        ("friendly", "Hey Ann!", "Cheers,"),
    ],
)
def test_message_wording_follows_tone(tone: str, greeting: str, closing: str) -> None:
    draft = generate_message(
        {"name": "Ann"},
        "resolve_issue",
        CONVERSATION,
        "email",
        tone,
        "short",  # type: ignore[arg-type]
    )["draft_content"]
    assert draft.startswith(greeting)
    assert f"\n\n{closing}\n" in draft


@pytest.mark.parametrize(("length", "count"), [("short", 2), ("medium", 4), ("long", 6)])
@pytest.mark.parametrize("risky", [False, True])
def test_message_length_sets_sentence_count(length: str, count: int, risky: bool) -> None:
    profile = {"name": "Ann", "churn_risk": 0.9 if risky else 0.1, "lifetime_value": 3000}
    draft = generate_message(
        profile,
        "resolve_issue",
        CONVERSATION,
        "email",
        "professional",
        length,  # type: ignore[arg-type]
    )["draft_content"]
    assert _sentences(_body(draft)) == count


def test_message_personalizes_for_churn_and_value_only_when_said() -> None:
    profile = {"name": "Ann", "predictions": {"churn_risk": 0.8, "lifetime_value": 2500.0}}
    long = generate_message(profile, "resolve_issue", CONVERSATION, "email", "professional", "long")
    short = generate_message(
        profile, "resolve_issue", CONVERSATION, "email", "professional", "short"
    )
    assert "Acknowledged loyalty (high churn risk)" in long["personalization_applied"]
    assert "Offered priority handling (high lifetime value)" in long["personalization_applied"]
    assert "Acknowledged loyalty (high churn risk)" not in short["personalization_applied"]


def test_chat_message_is_one_paragraph_without_signoff() -> None:
    draft = generate_message(
        {"name": "Ann"}, "resolve_issue", CONVERSATION, "chat", "friendly", "short"
    )["draft_content"]
    assert "\n" not in draft
    assert draft.startswith("Hey Ann! Thanks so much")


def test_unknown_goal_is_worded_from_its_text() -> None:
    draft = generate_message({}, "update_billing_address", [], "chat", "professional", "short")
    assert "in order to help with update billing address." in draft["draft_content"]


def test_actions_high_churn_puts_retention_first() -> None:
    actions = recommend_actions({"churn_risk": 0.75, "lifetime_value": 200}, {}, [])
    assert actions[0]["action"] == "offer_retention_incentive"
    assert [a["priority"] for a in actions] == list(range(1, len(actions) + 1))
    assert all(set(a) == {"action", "priority", "reasoning", "expected_impact"} for a in actions)


def test_actions_high_value_escalates_and_refund_words_add_refund() -> None:
    conversation = [{"from_agent": False, "content": "I want my money back please"}]
    actions = recommend_actions(
        {"predictions": {"churn_risk": 0.1, "lifetime_value": 4200.5}},
        {"subject": "Order", "priority": "urgent"},
        conversation,
    )
    names = [a["action"] for a in actions]
    assert names[0] == "escalate_to_senior_agent"
    assert "process_refund" in names
    assert "prioritize_response" in names
    assert names[-1] == "send_personalized_response"


def test_actions_for_a_quiet_low_risk_ticket() -> None:
    actions = recommend_actions({"churn_risk": 0.1, "lifetime_value": 90}, {"priority": "low"}, [])
    assert [a["action"] for a in actions] == ["send_personalized_response"]


def test_actions_ignore_agent_words_and_follow_up_medium_churn() -> None:
    conversation = [{"from_agent": True, "content": "We can refund you."}]
    names = [a["action"] for a in recommend_actions({"churn_risk": 0.45}, {}, conversation)]
    assert names == ["schedule_follow_up", "send_personalized_response"]


def test_parse_fail_endpoints() -> None:
    assert parse_fail_endpoints("") == {}
    parsed = parse_fail_endpoints("analyze, message:503 ,actions:timeout")
    assert parsed == {
        "analyze": Fault(mode="error", status=500),
        "message": Fault(mode="error", status=503),
        "actions": Fault(mode="timeout"),
    }
    assert set(parse_fail_endpoints("all:502")) == set(expand("all"))


@pytest.mark.parametrize("spec", ["nope", "analyze:200", "message:slow"])
def test_parse_fail_endpoints_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"STANDIN_FAIL_ENDPOINTS|bad fault"):
        parse_fail_endpoints(spec)


def test_count_limited_fault_is_used_up_then_recovers() -> None:
    state = FaultState()
    state.set("all", Fault(mode="error", count=2))
    assert state.take("analyze").mode == "error"
    assert state.faults["analyze"].count == 1
    assert state.take("analyze").mode == "error"
    assert state.take("analyze") == Fault()
    assert state.faults["message"].count == 2  # each endpoint has its own count
    assert state.calls == {"analyze": 3, "message": 0, "actions": 0}
