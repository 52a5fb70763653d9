"""What the proxy reads (the tickets service's ticket detail) and what it answers (Appendix B)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from quimbi_common.inputs import NoNul, RequestModel

from .settings import Length, Tone

# --- read from the tickets service ----------------------------------------------------------


class _Lenient(BaseModel):
    """Upstream shapes: take what we need, ignore what we do not know."""

    model_config = ConfigDict(extra="ignore")


class TicketMessage(_Lenient):
    id: str = ""
    from_agent: bool = False
    content: str = ""
    from_name: str | None = None
    created_at: datetime | None = None


class TicketCustomer(_Lenient):
    id: str
    email: str | None = None
    name: str | None = None
    lifetime_value: float = 0.0
    churn_risk: float = 0.0


class TicketContext(_Lenient):
    """`GET /api/tickets/{id}` of the tickets service: the ticket, its messages, its customer."""

    id: str
    customer_id: str
    subject: str = ""
    status: str = "open"
    priority: str = "normal"
    channel: str = "email"
    category: str | None = None
    messages: list[TicketMessage] = Field(default_factory=list)
    customer: TicketCustomer | None = None


# --- read from Quimbi -----------------------------------------------------------------------


class Predictions(BaseModel):
    churn_risk: float
    churn_risk_level: str
    lifetime_value: float


class QuimbiAnalysis(_Lenient):
    """`POST /api/intelligence/analyze`."""

    customer_id: str
    archetype: dict[str, Any] = Field(default_factory=dict)
    segments: dict[str, Any] = Field(default_factory=dict)
    predictions: Predictions
    behavioral_metrics: dict[str, Any] = Field(default_factory=dict)


class QuimbiDraft(_Lenient):
    """`POST /api/generation/message`."""

    draft_content: str
    tone: str | None = None
    channel: str | None = None
    personalization_applied: list[str] = Field(default_factory=list)


class NextBestAction(_Lenient):
    action: str
    priority: int
    reasoning: str = ""
    expected_impact: str = ""


class QuimbiActions(_Lenient):
    """`POST /api/generation/actions`."""

    actions: list[NextBestAction]


# --- requests and answers -------------------------------------------------------------------


class Freshness(BaseModel):
    """Where an answer came from: `cached` (from Redis), `stale` (Quimbi unavailable, so the
    last known answer, older than its normal lifetime)."""

    cached: bool = False
    stale: bool = False


class RegenerateDraftRequest(RequestModel):
    tone: Tone = "empathetic"
    length: Length = "medium"
    include_details: (
        list[Annotated[str, StringConstraints(min_length=1, max_length=100), NoNul]] | None
    ) = Field(default=None, max_length=20)


class CustomerDna(BaseModel):
    dominant_segments: list[str]
    archetype_level: str | None = None


class DraftResponse(Freshness):
    ticket_id: str
    draft_content: str
    tone: str
    length: str
    channel: str
    personalization_applied: list[str]
    customer_dna: CustomerDna
    churn_risk: float
    churn_risk_level: str
    lifetime_value: float
    generated_at: datetime


class RecommendationResponse(Freshness):
    ticket_id: str
    next_best_actions: list[NextBestAction]
    churn_risk: float
    customer_value: str
    lifetime_value: float
    generated_at: datetime


class CustomerIntelligenceResponse(Freshness):
    customer_id: str
    archetype: dict[str, Any]
    segments: dict[str, Any]
    predictions: Predictions
    behavioral_metrics: dict[str, Any]
    fetched_at: datetime
