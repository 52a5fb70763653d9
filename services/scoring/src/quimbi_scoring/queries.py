"""Reads that shape answers: the score breakdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.catchup import NotVisibleYet
from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.errors import NotFoundError
from quimbi_common.topic_alerts import matched_topic_alerts

from . import domain
from .models import Message
from .schemas import PartBreakdown, ScoreBreakdown
from .settings import Settings

# The holder: the agent of agents' current assignment (`assignees`), else the ticket's own field.
_BREAKDOWN = sa.text(
    "SELECT t.id, t.subject, t.status, t.priority,"
    "  coalesce(a.agent_id, t.assigned_agent_id) AS assigned_agent_id, "
    "s.smart_score, s.parts, s.inputs, s.computed_at, s.version "
    "FROM tickets t JOIN ticket_scores s ON s.ticket_id = t.id "
    "LEFT JOIN ticket_assignees a ON a.ticket_id = t.id "
    "WHERE t.id = :id AND NOT t.deleted"
).columns(parts=JSONB, inputs=JSONB)


async def score_breakdown(
    session: AsyncSession,
    ticket_id: str,
    caller: Principal,
    topic_alerts: Sequence[str],
    settings: Settings,
) -> ScoreBreakdown:
    """Every part of the stored score with its inputs, plus the topic-alert boost if asked."""
    row = (await session.execute(_BREAKDOWN, {"id": ticket_id})).first()
    if row is None:
        raise NotFoundError(f"Ticket {ticket_id} not found")
    if not _may_see(caller, row.assigned_agent_id):  # an assignment to the caller may be coming
        raise NotVisibleYet(f"Ticket {ticket_id} not found")
    matched: list[str] = []
    if topic_alerts:
        contents = await session.scalars(
            sa.select(Message.content).where(Message.ticket_id == ticket_id, ~Message.deleted)
        )
        matched = matched_topic_alerts(topic_alerts, [row.subject, *contents])
    weights = settings.weights
    boost = weights.topic_alert_boost if matched else 0.0
    parts = _part_breakdowns(row.parts, row.inputs, weights)
    parts["topic_alert"] = PartBreakdown(
        points=boost,
        weight=weights.topic_alert_boost,
        max_points=weights.topic_alert_boost,
        formula="TOPIC_ALERT_BOOST when a keyword appears in the subject or any message",
        inputs={"topic_alerts": list(topic_alerts), "matched": matched},
    )
    return ScoreBreakdown(
        ticket_id=row.id,
        status=TicketStatus(row.status),
        priority=TicketPriority(row.priority),
        smart_score=row.smart_score,
        topic_alert_boost=boost,
        total=domain.round_half_up(row.smart_score + boost, domain.SCORE_DECIMALS),
        matches_topic_alert=bool(matched),
        topic_alerts_active=list(topic_alerts),
        matched_topic_alerts=matched,
        parts=parts,
        computed_at=row.computed_at,
        version=row.version,
    )


def _may_see(caller: Principal, assigned_agent_id: str | None) -> bool:
    return caller.sees_all_tickets or (
        caller.agent_id is not None and caller.agent_id == assigned_agent_id
    )


def _part_breakdowns(
    parts: dict[str, float], inputs: dict[str, Any], weights: domain.Weights
) -> dict[str, PartBreakdown]:
    done = {"status": inputs["status"]}
    return {
        "priority": PartBreakdown(
            points=parts["priority"],
            weight=None,
            max_points=max(domain.PRIORITY_POINTS.values()),
            formula="low 0, normal 1, high 2.5, urgent 4",
            inputs={"priority": inputs["priority"], **done},
        ),
        "wait": PartBreakdown(
            points=parts["wait"],
            weight=weights.urgency,
            max_points=domain.WAIT_CAP,
            formula="min(3, SCORING_URGENCY_WEIGHT * log10(1 + hours_waiting))",
            inputs={
                "hours_waiting": inputs["hours_waiting"],
                "waiting_since": inputs["waiting_since"],
                **done,
            },
        ),
        "sentiment": PartBreakdown(
            points=parts["sentiment"],
            weight=domain.SENTIMENT_POINTS,
            max_points=domain.SENTIMENT_POINTS,
            formula="2 * clamp((0.5 - customer_sentiment) / 0.5, 0, 1)",
            inputs={"customer_sentiment": inputs["customer_sentiment"], **done},
        ),
        "value": PartBreakdown(
            points=parts["value"],
            weight=weights.value,
            max_points=weights.value,
            formula="SCORING_VALUE_WEIGHT * clamp(lifetime_value / SCORING_HIGH_VALUE_LTV, 0, 1)",
            inputs={
                "lifetime_value": inputs["lifetime_value"],
                "high_value_ltv": weights.high_value_ltv,
                **done,
            },
        ),
        "churn": PartBreakdown(
            points=parts["churn"],
            weight=weights.churn,
            max_points=weights.churn,
            formula="SCORING_CHURN_WEIGHT * clamp(churn_risk, 0, 1)",
            inputs={"churn_risk": inputs["churn_risk"], **done},
        ),
    }
