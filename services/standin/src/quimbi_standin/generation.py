"""Deterministic content for the stand-in: customer analysis, draft messages, next actions.

Everything here is a pure function of its arguments (no clock, no shared random state), so the
same request always gets the same answer and ai-proxy tests can assert on exact content and on
cache behaviour without a real model behind them.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Tone = Literal["empathetic", "professional", "friendly"]
Length = Literal["short", "medium", "long"]

BODY_SENTENCES: dict[str, int] = {"short": 2, "medium": 4, "long": 6}
MEDIUM_CHURN = 0.3
HIGH_CHURN = 0.6
HIGH_VALUE = 1000.0

_ARCHETYPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("arch_quality_seeker", "Quality Seeker", ("values craftsmanship", "reads reviews")),
    ("arch_deal_hunter", "Deal Hunter", ("price sensitive", "responds to promotions")),
    ("arch_loyal_regular", "Loyal Regular", ("repeat purchases", "brand advocate")),
    ("arch_big_spender", "Big Spender", ("large baskets", "prefers premium products")),
    ("arch_explorer", "Explorer", ("tries new products", "broad category mix")),
    ("arch_occasional", "Occasional Buyer", ("infrequent purchases", "gift buyer")),
)
_LEVELS = ("emerging", "developing", "strength")
_SEGMENTS = ("quality_seeker", "bargain_hunter", "loyal", "seasonal", "explorer", "new_customer")


def _rng(customer_id: str) -> random.Random:
    """A private generator seeded from the id, stable across processes (unlike hash())."""
    digest = hashlib.sha256(customer_id.encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def churn_level(risk: float) -> str:
    """Bucket a churn risk the way Quimbi does: < 0.3 low, < 0.6 medium, else high."""
    if risk < MEDIUM_CHURN:
        return "low"
    return "medium" if risk < HIGH_CHURN else "high"


def analyze_customer(customer_id: str) -> dict[str, Any]:
    """Customer intelligence derived only from a hash of the id (context does not change it)."""
    rng = _rng(customer_id)
    arch_id, arch_name, traits = rng.choice(_ARCHETYPES)
    level = rng.choice(_LEVELS)
    churn = round(rng.random(), 2)
    ltv = round(rng.uniform(50, 5000), 2)
    scores = {name: round(rng.random(), 2) for name in rng.sample(_SEGMENTS, 3)}
    # Keep segments consistent with the predictions so the data tells one story.
    scores["whale"] = round(min(ltv / 5000, 1.0), 2)
    scores["at_risk"] = churn
    memberships = dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))
    orders = rng.randint(1, 60)
    return {
        "customer_id": customer_id,
        "archetype": {"id": arch_id, "name": arch_name, "level": level, "traits": list(traits)},
        "segments": {"dominant_segments": list(memberships)[:2], "memberships": memberships},
        "predictions": {
            "churn_risk": churn,
            "churn_risk_level": churn_level(churn),
            "lifetime_value": ltv,
        },
        "behavioral_metrics": {
            "total_orders": orders,
            "average_order_value": round(ltv / orders, 2),
            "days_since_last_order": int(churn * 300) + rng.randint(0, 60),
            "support_contacts_90d": rng.randint(0, 8),
            "email_engagement_rate": round(rng.uniform(0.05, 0.9), 2),
        },
    }


def _number(profile: Mapping[str, Any], key: str) -> float:
    """Read churn_risk / lifetime_value from a flat profile or a nested analyze result."""
    value = profile.get(key)
    if value is None and isinstance(profile.get("predictions"), Mapping):
        value = profile["predictions"].get(key)
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _first_name(profile: Mapping[str, Any]) -> str | None:
    name = str(profile.get("first_name") or profile.get("name") or "").strip()
    return name.split()[0] if name else None


def _quote(text: str, limit: int = 80) -> str:
    """The first sentence of a message, flattened and shortened, safe to put in quotes."""
    flat = " ".join(text.replace('"', "'").split())
    first = re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0].rstrip(".!?")
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + "..."
    return first


_GREETING = {"empathetic": "Hi {name},", "professional": "Hello {name},", "friendly": "Hey {name}!"}
_ACK = {
    "empathetic": 'I\'m sorry to hear about "{quote}", and I understand how frustrating that is.',
    "professional": 'Thank you for contacting us regarding "{quote}".',
    "friendly": 'Thanks so much for reaching out about "{quote}"!',
}
_ACK_NO_MESSAGE = {
    "empathetic": "I'm sorry for any trouble you've had, and I'm here to help.",
    "professional": "Thank you for contacting us.",
    "friendly": "Thanks so much for reaching out!",
}
_GOAL_SENTENCE = {
    "empathetic": "I'm personally looking into this so we can {goal}.",
    "professional": "We are reviewing your request in order to {goal}.",
    "friendly": "I'm on it so we can {goal} as quickly as possible!",
}
_GOALS = {
    "resolve_issue": "get this resolved for you",
    "retain_customer": "make things right for you",
    "retention": "make things right for you",
    "upsell": "find the best option for you",
    "follow_up": "make sure everything is working as expected",
    "apologize": "make this right",
}
_LOYALTY = {
    "empathetic": "You have been a valued customer, and keeping your trust matters a great deal.",
    "professional": "We value your continued business and want to put this right.",
    "friendly": "We really love having you with us, and we want to keep it that way!",
}
_PRIORITY = {
    "empathetic": "Your request has been given priority so you are not kept waiting.",
    "professional": "As one of our priority customers, your request has been escalated.",
    "friendly": "You're one of our VIPs, so this goes straight to the front of the line!",
}
_FILLERS = {
    "empathetic": (
        "I know how much your time matters, so I'll keep you updated at every step.",
        "Please don't hesitate to share any other details that might help.",
        "Thank you for your patience while we sort this out.",
        "I want you to feel confident that this is in good hands.",
    ),
    "professional": (
        "We will keep you informed of any progress.",
        "If you have additional details, please reply to this message.",
        "We appreciate your patience in the meantime.",
        "Our team is committed to resolving this promptly.",
    ),
    "friendly": (
        "I'll keep you posted as soon as there's news!",
        "Feel free to send over anything else that might help.",
        "Thanks for bearing with us!",
        "We'll get this sorted together!",
    ),
}
_CLOSING = {"empathetic": "Warm regards,", "professional": "Kind regards,", "friendly": "Cheers,"}


def _goal_phrase(goal: str) -> str:
    key = goal.strip().lower().replace(" ", "_")
    if key in _GOALS:
        return _GOALS[key]
    text = goal.strip().replace("_", " ").rstrip(".!?")
    return f"help with {text[:1].lower()}{text[1:]}" if text else _GOALS["resolve_issue"]


def generate_message(
    customer_profile: Mapping[str, Any],
    goal: str,
    conversation: Sequence[Mapping[str, Any]],
    channel: str,
    tone: Tone,
    length: Length,
) -> dict[str, Any]:
    """A draft reply: greeting by first name, a nod to the last customer message, then
    tone-specific sentences; `length` fixes the number of body sentences (2/4/6)."""
    name = _first_name(customer_profile)
    last_customer = next(
        (str(t.get("content", "")) for t in reversed(conversation) if not t.get("from_agent")),
        "",
    )
    agent = next(
        (
            str(t["from_name"])
            for t in reversed(conversation)
            if t.get("from_agent") and t.get("from_name")
        ),
        "Customer Support",
    )
    # Candidate sentences in order of importance, each tagged with what it personalises.
    quote = _quote(last_customer) if last_customer.strip() else ""
    candidates: list[tuple[str, str | None]] = [
        (_ACK[tone].format(quote=quote), "Referenced the customer's last message")
        if quote
        else (_ACK_NO_MESSAGE[tone], None),
        (_GOAL_SENTENCE[tone].format(goal=_goal_phrase(goal)), None),
    ]
    if _number(customer_profile, "churn_risk") >= HIGH_CHURN:
        candidates.append((_LOYALTY[tone], "Acknowledged loyalty (high churn risk)"))
    if _number(customer_profile, "lifetime_value") >= HIGH_VALUE:
        candidates.append((_PRIORITY[tone], "Offered priority handling (high lifetime value)"))
    candidates.extend((sentence, None) for sentence in _FILLERS[tone])
    chosen = candidates[: BODY_SENTENCES[length]]

    personalization = ["Used customer's first name"] if name else []
    if tone == "empathetic" and quote:
        personalization.append("Acknowledged frustration")
    personalization.extend(tag for _, tag in chosen if tag)

    greeting = _GREETING[tone].format(name=name or "there")
    body = " ".join(sentence for sentence, _ in chosen)
    if channel.lower() == "email":
        content = f"{greeting}\n\n{body}\n\n{_CLOSING[tone]}\n{agent}"
    else:
        content = f"{greeting} {body}"
    return {
        "draft_content": content,
        "tone": tone,
        "channel": channel,
        "personalization_applied": personalization,
    }


_REFUND_WORDS = ("refund", "money back", "reimburse", "chargeback", "charged twice")
_TOPICS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (
        ("cancel", "unsubscribe", "close my account"),
        "address_cancellation_request",
        "The customer mentions cancelling.",
        "Gives a chance to resolve the underlying problem before the customer leaves",
    ),
    (
        ("shipping", "delivery", "tracking", "package", "arrived"),
        "provide_order_tracking",
        "The conversation is about an order in transit.",
        "Answers the most likely follow-up question up front",
    ),
    (
        ("payment", "card", "declined", "charge"),
        "verify_payment_status",
        "The conversation mentions a payment problem.",
        "Confirms the facts before promising a fix",
    ),
)


def _action(action: str, reasoning: str, impact: str) -> dict[str, Any]:
    return {"action": action, "priority": 0, "reasoning": reasoning, "expected_impact": impact}


def recommend_actions(
    customer_profile: Mapping[str, Any],
    ticket: Mapping[str, Any],
    conversation: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Next best actions ordered by importance (priority 1 first): churn and value decide the
    top of the list, words in the subject and customer messages add the specific steps."""
    churn = _number(customer_profile, "churn_risk")
    ltv = _number(customer_profile, "lifetime_value")
    text = " ".join(
        [str(ticket.get("subject", ""))]
        + [str(t.get("content", "")) for t in conversation if not t.get("from_agent")]
    ).lower()
    actions: list[dict[str, Any]] = []
    if churn >= HIGH_CHURN:
        actions.append(
            _action(
                "offer_retention_incentive",
                f"Churn risk {churn:.2f} is high; a goodwill gesture now costs less than losing "
                "the customer.",
                f"Lowers churn risk and protects ${ltv:,.2f} of lifetime value",
            )
        )
    if ltv >= HIGH_VALUE:
        actions.append(
            _action(
                "escalate_to_senior_agent",
                f"Lifetime value ${ltv:,.2f} puts the customer in the VIP tier.",
                "Faster, more experienced handling for a high-value customer",
            )
        )
    if any(word in text for word in _REFUND_WORDS):
        actions.append(
            _action(
                "process_refund",
                "The customer asks for their money back.",
                "Resolves the request in one step and avoids a chargeback",
            )
        )
    for words, name, reasoning, impact in _TOPICS:
        if any(word in text for word in words):
            actions.append(_action(name, reasoning, impact))
    priority = str(ticket.get("priority", "")).lower()
    if priority in ("urgent", "high"):
        actions.append(
            _action(
                "prioritize_response",
                f"Ticket priority is {priority}.",
                "Keeps the ticket inside its SLA",
            )
        )
    if MEDIUM_CHURN <= churn < HIGH_CHURN:
        actions.append(
            _action(
                "schedule_follow_up",
                f"Churn risk {churn:.2f} is moderate; checking back shows the issue stayed fixed.",
                "Raises satisfaction and catches repeat problems early",
            )
        )
    actions.append(
        _action(
            "send_personalized_response",
            "Every ticket needs a reply that uses what we know about the customer.",
            "Faster resolution and higher satisfaction",
        )
    )
    for rank, action in enumerate(actions, start=1):
        action["priority"] = rank
    return actions
