"""Request and response models. Response shapes follow the seed's Appendix B (a frontend
contract); request models refuse unknown fields, so a typo is a 422 rather than a silent no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from quimbi_common.enums import Channel, Intent, SlaStatus, TicketPriority, TicketStatus
from quimbi_common.inputs import NoNul, PatchModel, RequestModel, Text
from quimbi_common.pagination import Pagination
from quimbi_common.topic_alerts import MAX_KEYWORD_LENGTH, MAX_KEYWORDS

SUBJECT_MAX_CHARS = 500
CONTENT_MAX_BYTES = 64 * 1024
NAME_MAX_CHARS = 255
CATEGORY_MAX_CHARS = 100
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 100
ATTACHMENTS_PER_MESSAGE_MAX = 10  # files named by one message
TOPIC_ALERTS_MAX = MAX_KEYWORDS
TOPIC_ALERT_MAX_CHARS = MAX_KEYWORD_LENGTH


def _content_fits(value: str) -> str:
    if not value.strip():
        raise ValueError("content must not be blank")
    if len(value.encode()) > CONTENT_MAX_BYTES:
        raise ValueError(f"content must be at most {CONTENT_MAX_BYTES} bytes (UTF-8)")
    return value


def _lower(value: str) -> str:
    return value.lower()


Subject = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=SUBJECT_MAX_CHARS), NoNul
]
Content = Annotated[
    Text,
    AfterValidator(_content_fits),
    # bytes cannot be said in JSON Schema: the char bound is the byte bound's loosest reading
    Field(
        min_length=1,
        max_length=CONTENT_MAX_BYTES,
        pattern=r"\S",
        description=f"Not blank; at most {CONTENT_MAX_BYTES} bytes in UTF-8",
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=NAME_MAX_CHARS), NoNul]
Category = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=1, max_length=CATEGORY_MAX_CHARS
    ),
    NoNul,
]
Email = Annotated[EmailStr, AfterValidator(_lower)]
Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:@-]+$"
    ),
    NoNul,
]


# --- requests -----------------------------------------------------------------------------------


class CustomerIn(RequestModel):
    """A customer found by email, or created (optionally with an external id)."""

    email: Email
    name: Name | None = None
    id: Identifier | None = None


class MessageCreate(RequestModel):
    content: Content
    from_agent: bool | None = Field(
        None, description="Defaults to true for an agent's token, false for the integration key"
    )
    from_name: Name | None = None
    from_email: Email | None = None


class TicketCreate(RequestModel):
    """A ticket for an existing customer (`customer_id`) or a customer found or created by
    email (`customer`): exactly one of the two, the other absent or null."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}},
                {"required": ["customer"], "properties": {"customer": {"type": "object"}}},
            ]
        }
    )

    customer_id: Identifier | None = None
    customer: CustomerIn | None = None
    subject: Subject
    priority: TicketPriority = TicketPriority.NORMAL
    channel: Channel
    category: Category | None = None
    assigned_agent_id: Identifier | None = None
    message: MessageCreate | None = Field(None, description="The ticket's first message")

    @model_validator(mode="after")
    def _one_customer(self) -> TicketCreate:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give exactly one of customer_id and customer")
        return self


class TicketUpdate(PatchModel):
    """Fields to change; omitted ones stay. The assignee changes through the agents service."""

    nullable = frozenset({"category"})

    subject: Subject | None = None
    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    channel: Channel | None = None
    category: Category | None = None  # null clears it


class MessageUpdate(RequestModel):
    content: Content


# --- responses ----------------------------------------------------------------------------------


class CustomerSummary(BaseModel):
    id: str
    email: str
    name: str | None
    lifetime_value: float
    churn_risk: float


class SlaSummary(BaseModel):
    first_response_status: SlaStatus
    first_response_deadline: datetime | None
    first_response_at: datetime | None
    resolution_status: SlaStatus
    resolution_deadline: datetime | None
    resolved_at: datetime | None
    is_paused: bool
    total_paused_seconds: int


ScoreStatus = Literal["pending", "scored"]
SlaState = Literal["pending", "tracked"]


class TicketSummary(BaseModel):
    id: str
    customer_id: str
    subject: str
    status: TicketStatus
    priority: TicketPriority
    channel: Channel
    category: str | None
    assigned_agent_id: str | None
    created_at: datetime
    updated_at: datetime
    customer_sentiment: float
    smart_score: float
    estimated_difficulty: float
    score_status: ScoreStatus = Field(
        description="`pending` until the scoring service has scored the ticket (its "
        "`smart_score` is then 0 only because it is not known yet); then `scored`"
    )
    sla_status: SlaState = Field(
        description="`pending` until the SLA service has started the ticket's clocks (the "
        "detail's `sla` is then null); then `tracked`"
    )


class TicketListItem(TicketSummary):
    smart_score: float = Field(description="The stored score plus TOPIC_ALERT_BOOST on a match")
    matches_topic_alert: bool


class TicketList(BaseModel):
    tickets: list[TicketListItem]
    pagination: Pagination
    topic_alerts_active: list[str]
    matches: int


class AttachmentRead(BaseModel):
    id: str
    filename: str = Field(description="The client's name without paths or control characters")
    content_type: str = Field(description="Sniffed from the bytes, never the client's word")
    size_bytes: int
    sha256: str = Field(description="Hex SHA-256 of the bytes")
    message_id: str | None = Field(description="The message it is attached to; null until then")
    created_at: datetime


class AttachmentList(BaseModel):
    ticket_id: str
    attachments: list[AttachmentRead]


class MessageRead(BaseModel):
    id: str
    ticket_id: str
    from_agent: bool
    author_agent_id: str | None
    from_name: str | None
    from_email: str | None
    content: str
    created_at: datetime
    updated_at: datetime
    sentiment_score: float | None
    detected_intent: Intent | None
    version: int
    attachments: list[AttachmentRead] = Field(
        default_factory=list, description="Files attached to the message (additive)"
    )


class MessageWithStatus(MessageRead):
    ticket_status: TicketStatus = Field(description="The ticket's status after this message")


class MessageList(BaseModel):
    ticket_id: str
    messages: list[MessageRead]


class TicketDetail(TicketSummary):
    version: int
    created_by_agent_id: str | None
    customer: CustomerSummary
    sla: SlaSummary | None = Field(description="The SLA clocks as last reported; null until known")
    messages: list[MessageRead]


class CustomerRead(BaseModel):
    id: str
    email: str
    name: str | None
    created_at: datetime
    lifetime_value: float
    total_orders: int
    churn_risk: float
    churn_risk_level: str | None
    intelligence_fetched_at: datetime | None
    recent_tickets: list[TicketSummary]


# --- bulk changes -------------------------------------------------------------------------------

BULK_MAX_TICKETS = 500


class TicketFilter(RequestModel):
    """The list filters of `GET /api/tickets`, as a body (bulk changes)."""

    status: TicketStatus | None = None
    channel: Channel | None = None
    priority: TicketPriority | None = None
    category: Category | None = None
    assigned_agent_id: Identifier | None = None
    unassigned: bool = False
    customer_id: Identifier | None = None


class BulkChanges(PatchModel):
    """What to change on every selected ticket; at least one field. The assignee is not here:
    assignment belongs to the agents service (`POST /api/tickets/bulk/assign`)."""

    nullable = frozenset({"category"})

    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    category: Category | None = None  # null clears it

    @model_validator(mode="before")
    @classmethod
    def _no_assignee(cls, data: Any) -> Any:
        if isinstance(data, dict) and "assigned_agent_id" in data:
            raise PydanticCustomError(
                "assignment_elsewhere",
                "assignment belongs to the agents service: POST /api/tickets/bulk/assign",
            )
        return data

    @model_validator(mode="after")
    def _something(self) -> BulkChanges:
        if not self.model_fields_set:
            raise ValueError("name at least one of status, priority, category")
        return self


TicketIds = Annotated[list[Identifier], Field(min_length=1, max_length=BULK_MAX_TICKETS)]


class BulkUpdate(RequestModel):
    """Tickets by id (`ticket_ids`, at most 500, repeats ignored) or by the list filters
    (`filter`, which must match at most 500 of the tickets the caller may see): exactly one."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["ticket_ids"], "properties": {"ticket_ids": {"type": "array"}}},
                {"required": ["filter"], "properties": {"filter": {"type": "object"}}},
            ]
        }
    )

    ticket_ids: (
        Annotated[list[Identifier], Field(min_length=1, max_length=BULK_MAX_TICKETS)] | None
    ) = None
    filter: TicketFilter | None = None
    changes: BulkChanges

    @model_validator(mode="after")
    def _one_selection(self) -> BulkUpdate:
        if (self.ticket_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ticket_ids and filter")
        return self


BulkOutcome = Literal["updated", "unchanged", "not_found", "conflict"]


class BulkResult(BaseModel):
    id: str
    outcome: BulkOutcome = Field(
        description="`updated` (changed, `ticket.updated` published), `unchanged` (already so), "
        "`not_found` (no such ticket, or one the caller may not see), `conflict` (an illegal "
        "status move; `allowed` lists the legal ones)"
    )
    status: int = Field(description="What a single PATCH of this ticket would have answered")
    detail: str | None = None
    allowed: list[TicketStatus] | None = None
    version: int | None = Field(None, description="The ticket's version after the change")
    consistency_token: str | None = Field(
        None,
        description="This ticket's change as an `X-Consistency-Token` value, to send with a "
        "follow-up about this ticket (the response header names at most 32 events)",
    )


class BulkResponse(BaseModel):
    results: list[BulkResult] = Field(description="One per selected ticket, in request order")
    requested: int
    updated: int
    unchanged: int
    failed: int


# --- search -------------------------------------------------------------------------------------

SEARCH_MAX_CHARS = 200


class SearchHighlight(BaseModel):
    """HTML-safe snippets: the text escaped, the matched words in `<mark>…</mark>`."""

    subject: str = Field(description="The subject, matched words marked")
    message_id: str | None = Field(description="The best-matching message; null if none matches")
    message: str | None = Field(description="Fragments of that message, matched words marked")


class SearchItem(TicketSummary):
    rank: float = Field(description="Relevance: the best of twice the subject's and each message's")
    highlight: SearchHighlight


class SearchResults(BaseModel):
    tickets: list[SearchItem]
    pagination: Pagination
    query: str
    exhaustive: bool = Field(
        description="True: every match was ranked and `total` counts them all. False: the "
        "words are in more tickets than the service ranks (SEARCH_CANDIDATES); the results "
        "are the best of a bounded set that holds the newest matches, and `total` counts the "
        "tickets ranked"
    )


# --- canned responses ---------------------------------------------------------------------------

TEMPLATE_NAME_MAX_CHARS = 100
TemplateName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TEMPLATE_NAME_MAX_CHARS),
    NoNul,
]


class TemplateCreate(RequestModel):
    name: TemplateName
    body: Content = Field(
        description="The reply; placeholders `{{customer_name}}`, `{{customer_email}}`, "
        "`{{ticket_id}}`, `{{ticket_subject}}`, `{{agent_name}}` (any other is a 422)"
    )
    shared: bool = Field(False, description="Shared with every agent (team_lead and up)")


class TemplateUpdate(PatchModel):
    name: TemplateName | None = None
    body: Content | None = None
    shared: bool | None = None


class TemplateRead(BaseModel):
    id: str
    name: str
    body: str
    shared: bool
    owner_agent_id: str
    created_at: datetime
    updated_at: datetime
    version: int


class TemplateList(BaseModel):
    templates: list[TemplateRead]
    placeholders: dict[str, str] = Field(description="The placeholders a body may use")


class TemplatePreviewRequest(RequestModel):
    ticket_id: Identifier


class TemplatePreview(BaseModel):
    template_id: str
    ticket_id: str
    content: str = Field(description="The body with its placeholders filled in for the ticket")


class MessagePost(MessageCreate):
    """A message: its `content`, or a canned response (`template_id`, agents only) rendered
    for this ticket; exactly one of the two."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["content"], "properties": {"content": {"type": "string"}}},
                {"required": ["template_id"], "properties": {"template_id": {"type": "string"}}},
            ]
        }
    )

    # Optional here (one of content / template_id, checked below): pydantic allows narrowing
    # a field's type in a subclass, mypy does not.
    content: Content | None = None  # type: ignore[assignment]
    template_id: Identifier | None = Field(
        None, description="A canned response the caller may use, rendered for this ticket"
    )
    attachment_ids: list[Identifier] = Field(
        default_factory=list,
        max_length=ATTACHMENTS_PER_MESSAGE_MAX,
        description="Files the caller uploaded to this ticket (`POST .../attachments`) and "
        "has not attached yet",
    )

    @model_validator(mode="after")
    def _content_or_template(self) -> MessagePost:
        if (self.content is None) == (self.template_id is None):
            raise ValueError("give exactly one of content and template_id")
        return self


# --- CSAT ---------------------------------------------------------------------------------------

CSAT_COMMENT_MAX_CHARS = 2000


def _blank_is_none(value: str) -> str | None:
    return value or None


class RatingCreate(RequestModel):
    """The customer's rating of a resolved or closed ticket (sent by the integration key)."""

    rating: int = Field(strict=True, ge=1, le=5, description="1 (very unhappy) to 5 (very happy)")
    comment: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=CSAT_COMMENT_MAX_CHARS),
            NoNul,
            AfterValidator(_blank_is_none),
        ]
        | None
    ) = Field(None, description="Optional; trimmed, a blank one is stored as null")


class RatingRead(BaseModel):
    ticket_id: str
    customer_id: str
    rating: int
    comment: str | None
    agent_id: str | None = Field(description="Who the ticket was assigned to when it was rated")
    rated_at: datetime
