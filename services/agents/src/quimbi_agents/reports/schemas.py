"""The reports' answer shapes (JSON; the CSV columns are these, flattened in `export.py`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Durations(BaseModel):
    """Seconds from the ticket's creation to the moment measured, over the period's tickets."""

    count: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None


class SlaMetricFigures(BaseModel):
    met: int = 0
    breached: int = 0
    attainment_percent: float | None = Field(
        default=None, description="met / (met + breached) * 100; null when neither"
    )


class SlaFigures(BaseModel):
    first_response: SlaMetricFigures = Field(default_factory=SlaMetricFigures)
    resolution: SlaMetricFigures = Field(default_factory=SlaMetricFigures)


class Backlog(BaseModel):
    """Open tickets held now (not resolved, closed or deleted), by priority."""

    low: int = 0
    normal: int = 0
    high: int = 0
    urgent: int = 0
    total: int = 0


class Csat(BaseModel):
    count: int = 0
    mean: float | None = None
    distribution: dict[str, int] = Field(
        default_factory=lambda: {str(r): 0 for r in range(1, 6)},
        description="ratings 1..5 → how many",
    )


class Figures(BaseModel):
    tickets_handled: int = 0
    first_response: Durations = Field(default_factory=Durations)
    resolution: Durations = Field(default_factory=Durations)
    sla: SlaFigures = Field(default_factory=SlaFigures)
    backlog: Backlog = Field(default_factory=Backlog)
    csat: Csat = Field(default_factory=Csat)


class AgentFigures(Figures):
    agent_id: str
    name: str
    email: str
    department: str | None


class TeamFigures(Figures):
    department: str | None = Field(description="the team; null for agents without a department")
    agents: int


class Period(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    department: str | None = None
    generated_at: datetime


class AgentReport(Period):
    agents: list[AgentFigures]


class TeamReport(Period):
    teams: list[TeamFigures]
