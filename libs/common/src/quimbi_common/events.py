"""Event contracts: the CloudEvents 1.0 envelope and the data of every topic (ARCHITECTURE §4).

Within a `dataversion` a contract only grows: new optional fields, never a removed or retyped
one. `docs/events/` is generated from these models (`python -m quimbi_common.catalogue`).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .enums import (
    AgentStatus,
    AssignmentReason,
    AssignmentStatus,
    Channel,
    Intent,
    Role,
    SlaMetric,
    SlaStatus,
    TicketPriority,
    TicketStatus,
)


class Contract(BaseModel):
    """Base of every event's data: immutable, and tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="allow")


class FieldChange(Contract):
    old: Any = None
    new: Any = None


class CustomerSnapshot(Contract):
    id: str
    email: str
    name: str | None = None
    lifetime_value: float = 0.0
    churn_risk: float = 0.0


class TicketData(Contract):
    """A ticket after the change."""

    id: str
    customer_id: str
    subject: str
    status: TicketStatus
    priority: TicketPriority
    channel: Channel
    category: str | None = None
    assigned_agent_id: str | None = None
    created_at: datetime
    updated_at: datetime
    customer_sentiment: float = 0.5
    estimated_difficulty: float = 0.5
    version: int
    customer: CustomerSnapshot


class TicketUpdatedData(TicketData):
    changes: dict[str, FieldChange] = Field(default_factory=dict)


class TicketDeletedData(Contract):
    id: str
    version: int
    deleted_at: datetime
    deleted_by: str | None = None


class AttachmentData(Contract):
    """A file attached to a message: what it is, never where it is stored."""

    id: str
    filename: str
    content_type: str = Field(description="Sniffed from the bytes, never the client's word")
    size_bytes: int
    sha256: str = Field(description="Hex SHA-256 of the stored bytes")


class MessageData(Contract):
    """A message after the change, with the ticket's status after it."""

    id: str
    ticket_id: str
    from_agent: bool
    author_agent_id: str | None = None
    from_name: str | None = None
    from_email: str | None = None
    content: str
    created_at: datetime
    sentiment_score: float | None = None
    detected_intent: Intent | None = None
    version: int
    ticket_status: TicketStatus
    attachments: list[AttachmentData] = Field(
        default_factory=list, description="Files attached to the message (additive, optional)"
    )


class MessageUpdatedData(MessageData):
    changes: dict[str, FieldChange] = Field(default_factory=dict)


class ScoreParts(Contract):
    priority: float
    wait: float
    sentiment: float
    value: float
    churn: float


class TicketScoredData(Contract):
    ticket_id: str
    smart_score: float
    parts: ScoreParts
    inputs: dict[str, Any] = Field(default_factory=dict)
    computed_at: datetime
    version: int


class AssignmentData(Contract):
    id: str
    ticket_id: str
    agent_id: str
    previous_agent_id: str | None = None
    reason: AssignmentReason
    transfer_reason: str | None = None
    status: AssignmentStatus
    assigned_at: datetime
    accepted_at: datetime | None = None
    completed_at: datetime | None = None
    time_to_accept_seconds: int | None = None
    time_to_complete_seconds: int | None = None
    is_active: bool
    version: int


class SlaTrackingData(Contract):
    ticket_id: str
    priority: TicketPriority
    first_response_status: SlaStatus
    first_response_deadline: datetime
    first_response_at: datetime | None = None
    resolution_status: SlaStatus
    resolution_deadline: datetime
    resolved_at: datetime | None = None
    is_paused: bool = False
    total_paused_seconds: int = 0
    version: int


class SlaAlertData(SlaTrackingData):
    metric: SlaMetric


class AgentData(Contract):
    id: str
    email: str
    name: str
    role: Role
    status: AgentStatus
    department: str | None = None
    specializations: list[str] = Field(default_factory=list)
    max_concurrent_tickets: int
    is_active: bool
    version: int


class AgentUpdatedData(AgentData):
    changes: dict[str, FieldChange] = Field(default_factory=dict)


class TicketRatedData(Contract):
    """CSAT: the customer's 1-5 rating of a resolved ticket, recorded once per ticket."""

    ticket_id: str
    customer_id: str
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
    agent_id: str | None = None  # the ticket's assignee when it was rated
    rated_at: datetime


class CustomerIntelligenceData(Contract):
    customer_id: str
    churn_risk: float
    churn_risk_level: str
    lifetime_value: float
    archetype: dict[str, Any] = Field(default_factory=dict)
    segments: dict[str, Any] = Field(default_factory=dict)
    fetched_at: datetime


DataT = TypeVar("DataT", bound=Contract)


class Event(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 structured-mode envelope around one contract."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: int = 1
    correlationid: str | None = None
    # CloudEvents distributed-tracing extension: the W3C context of the transaction that wrote it.
    traceparent: str | None = None
    data: DataT


class EventType(StrEnum):
    """Every topic by name (= the CloudEvents `type`): service code names topics only so."""

    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    TICKET_DELETED = "ticket.deleted"
    MESSAGE_ADDED = "message.added"
    MESSAGE_UPDATED = "message.updated"
    MESSAGE_DELETED = "message.deleted"
    TICKET_SCORED = "ticket.scored"
    TICKET_ASSIGNED = "ticket.assigned"
    ASSIGNMENT_UPDATED = "assignment.updated"
    SLA_UPDATED = "sla.updated"
    SLA_WARNING = "sla.warning"
    SLA_BREACHED = "sla.breached"
    SLA_DECIDED = "sla.decided"
    AGENT_CREATED = "agent.created"
    AGENT_UPDATED = "agent.updated"
    AGENT_DELETED = "agent.deleted"
    CUSTOMER_INTELLIGENCE_UPDATED = "customer.intelligence_updated"
    TICKET_RATED = "ticket.rated"


@dataclass(frozen=True)
class Topic:
    """One topic: its name (= the event type), data model, version and how it is keyed."""

    name: EventType
    data: type[Contract]
    key_field: str
    subject_field: str
    summary: str
    dataversion: int = 1
    # Fields of `data` no other service holds (the producer's own estimates): an update that
    # changes only these is news for the producer alone (`for_others`).
    producer_only: frozenset[str] = frozenset()

    def key(self, data: Contract) -> str:
        return str(getattr(data, self.key_field))

    def subject(self, data: Contract) -> str:
        return str(getattr(data, self.subject_field))

    def envelope(self) -> type[Event[Any]]:
        return _envelope(self.data)


@functools.cache
def _envelope(data: type[Contract]) -> type[Event[Any]]:
    """Built once per contract: pydantic holds parametrised classes only weakly, and rebuilding
    one costs more than a millisecond per event."""
    return Event[data]  # type: ignore[valid-type]


_E = EventType
TOPICS: dict[str, Topic] = {  # keyed by EventType (a str: a topic read off Kafka finds it)
    t.name: t
    for t in (
        Topic(_E.TICKET_CREATED, TicketData, "id", "id", "A ticket was created."),
        Topic(
            _E.TICKET_UPDATED,
            TicketUpdatedData,
            "id",
            "id",
            "A ticket changed.",
            producer_only=frozenset({"customer_sentiment", "estimated_difficulty"}),
        ),
        Topic(_E.TICKET_DELETED, TicketDeletedData, "id", "id", "A ticket was deleted."),
        Topic(_E.MESSAGE_ADDED, MessageData, "ticket_id", "id", "A message was added."),
        Topic(_E.MESSAGE_UPDATED, MessageUpdatedData, "ticket_id", "id", "A message was edited."),
        Topic(_E.MESSAGE_DELETED, MessageData, "ticket_id", "id", "A message was deleted."),
        Topic(_E.TICKET_SCORED, TicketScoredData, "ticket_id", "ticket_id", "A score changed."),
        Topic(_E.TICKET_ASSIGNED, AssignmentData, "ticket_id", "id", "A ticket was assigned."),
        Topic(_E.ASSIGNMENT_UPDATED, AssignmentData, "ticket_id", "id", "An assignment changed."),
        Topic(_E.SLA_UPDATED, SlaTrackingData, "ticket_id", "ticket_id", "An SLA clock changed."),
        Topic(_E.SLA_WARNING, SlaAlertData, "ticket_id", "ticket_id", "An SLA metric is at risk."),
        Topic(_E.SLA_BREACHED, SlaAlertData, "ticket_id", "ticket_id", "An SLA was breached."),
        Topic(
            _E.SLA_DECIDED,
            SlaTrackingData,
            "ticket_id",
            "ticket_id",
            "An SLA metric's outcome changed: it became met or breached, its decisive time or "
            "deadline moved, or it was undecided again (a reopened ticket). The same clock, "
            "with the same version, as the `sla.updated` published beside it.",
        ),
        Topic(_E.AGENT_CREATED, AgentData, "id", "id", "An agent was created."),
        Topic(_E.AGENT_UPDATED, AgentUpdatedData, "id", "id", "An agent changed."),
        Topic(_E.AGENT_DELETED, AgentData, "id", "id", "An agent was deleted."),
        Topic(
            _E.CUSTOMER_INTELLIGENCE_UPDATED,
            CustomerIntelligenceData,
            "customer_id",
            "customer_id",
            "Fresh customer intelligence (churn risk, lifetime value) from Quimbi.",
        ),
        Topic(
            _E.TICKET_RATED,
            TicketRatedData,
            "ticket_id",
            "ticket_id",
            "A customer rated a resolved ticket (CSAT, 1-5, once per ticket).",
        ),
    )
}


def dead_letter_topic(topic: str) -> str:
    """Where a consumer parks what it cannot apply: `<topic>.dlq` (prefixed as `topic` is)."""
    return f"{topic}.dlq"


def build_event(
    topic: EventType,
    data: Contract,
    *,
    source: str,
    correlation_id: str | None = None,
    traceparent: str | None = None,
) -> tuple[str, Event[Any]]:
    """The Kafka key and the envelope for `data` on `topic`; refuses data of the wrong contract."""
    spec = TOPICS[topic]
    if not isinstance(data, spec.data):
        raise TypeError(f"{topic} carries {spec.data.__name__}, not {type(data).__name__}")
    event = spec.envelope()(
        source=f"/services/{source}",
        type=topic,
        subject=spec.subject(data),
        dataversion=spec.dataversion,
        correlationid=correlation_id,
        traceparent=traceparent,
        data=data,
    )
    return spec.key(data), event


PRODUCER_ONLY_HEADER = "x-producer-only"
"""Kafka header (value `1`) on an event `for_others` rejects: consumers drop it unread."""


def for_others(topic: str, data: Contract) -> bool:
    """Whether an event carries news for other services: not an update whose `changes` name
    only its topic's `producer_only` fields (a customer message moves the ticket's sentiment
    estimate, which only tickets shows). Services drop the others before any work and without
    recording them, and a write's consistency token does not name them: nobody applies them.
    They are still published, unchanged, for readers of the whole stream (analytics, the live
    inbox)."""
    only = TOPICS[topic].producer_only
    changes = getattr(data, "changes", None)
    return not (only and changes and changes.keys() <= only)


def parse_event(topic: str, raw: bytes | str) -> Event[Any]:
    """Validate a message body against its topic's contract (raises pydantic.ValidationError)."""
    return TOPICS[topic].envelope().model_validate_json(raw)
