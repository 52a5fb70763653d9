"""Response models of the scoring API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from quimbi_common.enums import TicketPriority, TicketStatus


class PartBreakdown(BaseModel):
    """One part of the score: its points, the weight and cap applied, the inputs it used."""

    points: float
    weight: float | None = Field(description="The configured weight, when the part has one")
    max_points: float
    formula: str
    inputs: dict[str, Any]


class ScoreBreakdown(BaseModel):
    """Why a ticket sits where it does in the smart inbox."""

    ticket_id: str
    status: TicketStatus
    priority: TicketPriority
    smart_score: float = Field(description="The stored score: the five parts, to 2 decimals")
    topic_alert_boost: float = Field(description="TOPIC_ALERT_BOOST when a keyword matched")
    total: float = Field(description="smart_score + topic_alert_boost: what the inbox sorts by")
    matches_topic_alert: bool
    topic_alerts_active: list[str]
    matched_topic_alerts: list[str]
    parts: dict[str, PartBreakdown] = Field(
        description="priority, wait, sentiment, value, churn, topic_alert"
    )
    computed_at: datetime
    version: int = Field(description="The ticket.scored version this computation carries")
