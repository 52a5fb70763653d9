"""Request and response models. Requests forbid unknown fields (→ 422); no response ever holds
a password hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    EmailStr,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from quimbi_common.enums import AgentStatus, AssignmentReason, AssignmentStatus, Role
from quimbi_common.inputs import NoNul, PatchModel, RequestModel, Text
from quimbi_common.pagination import Pagination

from .domain import BCRYPT_MAX_BYTES, PASSWORD_MIN_LENGTH, normalize_label, password_problem


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


Password = Annotated[
    Text,
    AfterValidator(_check_password),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": PASSWORD_MIN_LENGTH,
            "maxLength": BCRYPT_MAX_BYTES,
            "description": f"{PASSWORD_MIN_LENGTH} characters to {BCRYPT_MAX_BYTES} bytes "
            "(UTF-8); no NUL",
        }
    ),
]
Email = Annotated[EmailStr, Field(max_length=255), AfterValidator(_normalize_email)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul]
Department = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]
Specializations = Annotated[list[Label], Field(max_length=50), AfterValidator(_normalize_labels)]
Capacity = Annotated[int, Field(ge=0, le=1000)]
Satisfaction = Annotated[float, Field(ge=0, le=5)]


class LoginRequest(RequestModel):
    email: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320), NoNul
    ]
    password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            description="Any text; one that no agent has (a NUL, say) is a 401 like any other",
        ),
    ]


class AgentCreate(RequestModel):
    email: Email
    password: Password
    name: Name
    role: Role = Role.AGENT
    status: AgentStatus = AgentStatus.OFFLINE
    department: Department | None = None
    specializations: Specializations = Field(default_factory=list)
    max_concurrent_tickets: Capacity | None = None
    customer_satisfaction_score: Satisfaction = 0.0


class AgentUpdate(PatchModel):
    """Only the fields sent are changed; `null` clears the department."""

    nullable = frozenset({"department"})

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


class StatusUpdate(RequestModel):
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


class AgentList(BaseModel):
    agents: list[AgentRead]
    pagination: Pagination


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int
    agent: AgentRead


class AssignRequest(RequestModel):
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul]
    reason: AssignmentReason | None = None
    transfer_reason: Annotated[str, StringConstraints(max_length=2000), NoNul] | None = None


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


BULK_MAX_TICKETS = 500
TicketIdItem = Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul]


class BulkAssignRequest(AssignRequest):
    """One assignee for up to 500 tickets (repeats ignored), each assigned as by
    `POST /api/tickets/{id}/assign`."""

    ticket_ids: Annotated[list[TicketIdItem], Field(min_length=1, max_length=BULK_MAX_TICKETS)]


class BulkAssignResult(BaseModel):
    id: str
    outcome: Literal["assigned", "not_found", "conflict"] = Field(
        description="`assigned` (`ticket.assigned` published), `not_found` (unknown ticket), "
        "`conflict` (closed or resolved, already the agent's, or assigned concurrently)"
    )
    status: int = Field(description="What the single assign route would have answered")
    detail: str | None = None
    assignment_id: str | None = None


class BulkAssignResponse(BaseModel):
    results: list[BulkAssignResult] = Field(description="One per ticket, in request order")
    requested: int
    assigned: int
    failed: int
