"""Request and response models of the SLA API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from quimbi_common.enums import SlaStatus, TicketPriority
from quimbi_common.inputs import PatchModel

TARGET_MAX_SECONDS = 366 * 24 * 3600  # a year (leap or not): beyond it an SLA means nothing


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    priority: TicketPriority
    first_response_target_seconds: int
    resolution_target_seconds: int
    warning_threshold_percent: int
    business_hours_only: bool
    updated_at: datetime | None = None
    updated_by: str | None = None


class PolicyUpdate(PatchModel):
    """Any subset of the targets; the merged policy is validated as a whole."""

    first_response_target_seconds: int | None = Field(default=None, gt=0, le=TARGET_MAX_SECONDS)
    resolution_target_seconds: int | None = Field(default=None, gt=0, le=TARGET_MAX_SECONDS)
    warning_threshold_percent: int | None = Field(default=None, ge=1, le=100)
    business_hours_only: bool | None = None


class BusinessHoursRead(BaseModel):
    timezone: str
    weekly_hours: dict[str, list[str]]
    holidays: list[str]


class PolicyList(BaseModel):
    policies: list[PolicyRead]
    business_hours: BusinessHoursRead


class MetricRead(BaseModel):
    """One metric of a ticket's SLA at the moment of the request."""

    status: SlaStatus
    deadline: datetime
    warning_at: datetime
    completed_at: datetime | None
    target_seconds: int
    elapsed_seconds: float
    seconds_remaining: float = Field(
        description="Clock time left (business seconds under a business-hours policy); "
        "frozen while paused, negative once overdue."
    )
    percent_used: float


class TicketSlaRead(BaseModel):
    """A ticket's SLA: the tracking row's fields (as in sla.updated) plus per-metric detail."""

    ticket_id: str
    priority: TicketPriority
    first_response_status: SlaStatus
    first_response_deadline: datetime
    first_response_at: datetime | None
    resolution_status: SlaStatus
    resolution_deadline: datetime
    resolved_at: datetime | None
    is_paused: bool
    paused_at: datetime | None
    total_paused_seconds: int
    business_hours_only: bool
    warning_threshold_percent: int
    first_response: MetricRead
    resolution: MetricRead
    version: int
