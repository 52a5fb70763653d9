"""Request and response models. Requests forbid unknown fields (→ 422); no response ever holds
a password hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from quimbi_common.enums import AgentStatus, AssignmentReason, AssignmentStatus, Role

from .domain import normalize_label, password_problem


def _check_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(f"password {problem}")
    return value


def _normalize_email(value: str) -> str:
    return value.strip().lower()


def _normalize_labels(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(normalize_label(value), None)
    return list(seen)


Password = Annotated[str, AfterValidator(_check_password)]
Email = Annotated[EmailStr, Field(max_length=255), AfterValidator(_normalize_email)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Department = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Specializations = Annotated[list[Label], Field(max_length=50), AfterValidator(_normalize_labels)]
Capacity = Annotated[int, Field(ge=0, le=1000)]
Satisfaction = Annotated[float, Field(ge=0, le=5)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Request):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class AgentCreate(Request):
    email: Email
    password: Password
    name: Name
    role: Role = Role.AGENT
    status: AgentStatus = AgentStatus.OFFLINE
    department: Department | None = None
    specializations: Specializations = Field(default_factory=list)
    max_concurrent_tickets: Capacity | None = None
    customer_satisfaction_score: Satisfaction = 0.0


NULLABLE_ON_UPDATE = frozenset({"department"})


class AgentUpdate(Request):
    """Only the fields sent are changed; `null` clears the department."""

    email: Email | None = None
    password: Password | None = None
    name: Name | None = None
    role: Role | None = None
    status: AgentStatus | None = None
    department: Department | None = None
    specializations: Specializations | None = None
    max_concurrent_tickets: Capacity | None = None
    is_active: bool | None = None
    customer_satisfaction_score: Satisfaction | None = None

    @model_validator(mode="after")
    def _only_department_clears(self) -> AgentUpdate:
        nulls = [
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in NULLABLE_ON_UPDATE
        ]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self


class StatusUpdate(Request):
    status: AgentStatus


class AgentRead(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    status: AgentStatus
    department: str | None
    specializations: list[str]
    max_concurrent_tickets: int
    is_active: bool
    tickets_resolved_today: int
    avg_response_time_seconds: int
    customer_satisfaction_score: float
    last_login_at: datetime | None
    created_at: datetime


class Pagination(BaseModel):
    page: int
    limit: int
    total: int
    has_next: bool
    has_prev: bool


class AgentList(BaseModel):
    agents: list[AgentRead]
    pagination: Pagination


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int
    agent: AgentRead


class AssignRequest(Request):
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    reason: AssignmentReason | None = None
    transfer_reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class AssignmentRead(BaseModel):
    id: str
    ticket_id: str
    agent_id: str
    previous_agent_id: str | None
    reason: AssignmentReason
    transfer_reason: str | None
    status: AssignmentStatus
    assigned_at: datetime
    accepted_at: datetime | None
    completed_at: datetime | None
    time_to_accept_seconds: int | None
    time_to_complete_seconds: int | None
    is_active: bool


class AssignmentHistory(BaseModel):
    ticket_id: str
    assignments: list[AssignmentRead]
