"""Routes: parse, authorize, call the use case, shape the answer (Appendix B shapes)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel

from quimbi_common.auth import Admin, Caller, CurrentAgent
from quimbi_common.enums import Channel, TicketPriority, TicketStatus
from quimbi_common.errors import NotFoundError, UnprocessableError
from quimbi_common.inputs import keyword_list_schema
from quimbi_common.openapi import problems
from quimbi_common.pagination import Page, Pagination
from quimbi_common.runtime import RuntimeDep, SessionDep, UnitsDep, provided
from quimbi_common.topic_alerts import topic_alert_keywords

from . import bulk, csat, queries, search, service, templates
from .attachments.service import Sweeper
from .models import Message, Ticket
from .schemas import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    SEARCH_MAX_CHARS,
    TOPIC_ALERT_MAX_CHARS,
    TOPIC_ALERTS_MAX,
    BulkResponse,
    BulkUpdate,
    CustomerRead,
    CustomerSummary,
    MessageList,
    MessagePost,
    MessageRead,
    MessageUpdate,
    MessageWithStatus,
    RatingCreate,
    RatingRead,
    SearchHighlight,
    SearchItem,
    SearchResults,
    SlaSummary,
    TemplateCreate,
    TemplateList,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplateRead,
    TemplateUpdate,
    TicketCreate,
    TicketDetail,
    TicketList,
    TicketSummary,
    TicketUpdate,
)
from .settings import Settings

router = APIRouter(tags=["tickets"])


SettingsDep = Annotated[Settings, Depends(provided(Settings))]
SweeperDep = Annotated[Sweeper, Depends(provided(Sweeper))]


async def _list_filters(
    status: TicketStatus | None = None,
    channel: Channel | None = None,
    priority: TicketPriority | None = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    assigned_agent_id: Annotated[str | None, Query(max_length=255)] = None,
    unassigned: bool = False,
    customer_id: Annotated[str | None, Query(max_length=255)] = None,
    page: Page = 1,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
) -> queries.InboxQuery:
    """The list's filters and page, shared by the inbox and search (query parameters)."""
    return queries.InboxQuery(
        page=page,
        limit=limit,
        status=status,
        channel=channel,
        priority=priority,
        category=category.strip().lower() if category else None,
        assigned_agent_id=assigned_agent_id,
        unassigned=unassigned,
        customer_id=customer_id,
    )


ListFilters = Annotated[queries.InboxQuery, Depends(_list_filters)]


# --- shaping ------------------------------------------------------------------------------------


def _reported(score_version: int, sla_version: int) -> dict[str, str]:
    """Whether scoring and SLA have reported on the ticket yet: a new ticket shows `pending`
    instead of a bare zero score or a null SLA (read-your-writes, see the README)."""
    return {
        "score_status": "scored" if score_version else "pending",
        "sla_status": "tracked" if sla_version else "pending",
    }


def _fields(row: Any, model: type[BaseModel], **given: Any) -> dict[str, Any]:
    """A response model's fields read off an ORM row by name, but for those `given`."""
    return {
        name: given[name] if name in given else getattr(row, name) for name in model.model_fields
    }


def _summary_fields(ticket: Ticket) -> dict[str, Any]:
    return _fields(ticket, TicketSummary, **_reported(ticket.score_version, ticket.sla_version))


def _sla(ticket: Ticket) -> SlaSummary | None:
    if not ticket.sla_version or ticket.sla_first_response_status is None:
        return None
    return SlaSummary(**{name: getattr(ticket, f"sla_{name}") for name in SlaSummary.model_fields})


def _message(message: Message) -> MessageRead:
    return MessageRead.model_validate(message, from_attributes=True)


def _detail(view: service.TicketView) -> TicketDetail:
    ticket = view.ticket
    return TicketDetail(
        **_summary_fields(ticket),
        version=ticket.version,
        created_by_agent_id=ticket.created_by_agent_id,
        customer=CustomerSummary.model_validate(ticket.customer, from_attributes=True),
        sla=_sla(ticket),
        messages=[_message(m) for m in view.messages],
    )


# --- tickets ------------------------------------------------------------------------------------


@router.get("/api/tickets", response_model=TicketList, summary="The smart inbox")
async def list_tickets(
    agent: CurrentAgent,
    runtime: RuntimeDep,
    settings: SettingsDep,
    filters: ListFilters,
    topic_alerts: Annotated[
        str | None,
        Query(
            max_length=4000,
            json_schema_extra=keyword_list_schema(TOPIC_ALERTS_MAX, TOPIC_ALERT_MAX_CHARS),
        ),
    ] = None,
) -> Response:
    """Tickets by smart score (plus TOPIC_ALERT_BOOST on a keyword match), then oldest first.

    `smart_score` in each item is the ordering score, i.e. including the boost.
    """
    query = dataclasses.replace(
        filters,
        topic_alerts=topic_alert_keywords(topic_alerts, TOPIC_ALERTS_MAX, TOPIC_ALERT_MAX_CHARS),
    )
    assert runtime.engine is not None
    body = await queries.inbox_page(runtime.engine, agent, query, boost=settings.topic_alert_boost)
    return Response(body, media_type="application/json")


@router.post(
    "/api/tickets",
    status_code=status.HTTP_201_CREATED,
    responses=problems(
        **{
            "403": "The integration key, or an agent below senior_agent, names an assignee",
            "409": "The customer id belongs to a customer with another email",
        }
    ),
)
async def create_ticket(
    body: TicketCreate, caller: Caller, units: UnitsDep, settings: SettingsDep
) -> TicketDetail:
    """Create a ticket (agents, and the integration key). An agent's ticket is theirs unless
    a senior agent or above names another assignee."""
    return _detail(
        await units.run(lambda unit: service.create_ticket(unit, settings, caller, body))
    )


@router.get(
    "/api/tickets/search",
    summary="Full-text search over subjects and messages",
    responses=problems(**{"503": "The search ran past its time budget (or a dependency is out)"}),
)
async def search_tickets(
    agent: CurrentAgent,
    runtime: RuntimeDep,
    settings: SettingsDep,
    filters: ListFilters,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=SEARCH_MAX_CHARS,
            pattern=r"\S",
            description='Words to find; "quoted phrases", `or`, `-excluded` (websearch syntax)',
        ),
    ],
    order: Annotated[
        search.SearchOrder,
        Query(description="`relevance` (then the inbox order) or `smart` (the inbox order)"),
    ] = "relevance",
) -> SearchResults:
    """Tickets whose text (subject and messages together) contains the words (English
    stemming), with the list's filters and visibility, ranked, with HTML-safe highlighted
    snippets. Words in more than SEARCH_CANDIDATES tickets are ranked among a bounded set that
    holds their newest matches (`exhaustive: false`; `total` then counts the tickets ranked)."""
    assert runtime.engine is not None
    found = await search.search(
        runtime.engine,
        agent,
        filters,
        q,
        order,
        candidates=settings.search_candidates,
        timeout_ms=settings.search_timeout_ms,
    )
    items = [
        SearchItem(
            **{name: row.get(name) for name in SearchItem.model_fields if name in row},
            **_reported(row["score_version"], row["sla_version"]),
            highlight=SearchHighlight(
                subject=search.safe_snippet(row["subject_headline"]) or "",
                message_id=row["message_id"],
                message=search.safe_snippet(row["message_headline"]),
            ),
        )
        for row in found.rows
    ]
    pagination = Pagination(
        page=filters.page,
        limit=filters.limit,
        total=found.total,
        has_next=filters.page * filters.limit < found.total,
        has_prev=filters.page > 1,
    )
    return SearchResults(tickets=items, pagination=pagination, query=q, exhaustive=found.exhaustive)


@router.post(
    "/api/tickets/bulk",
    summary="Change many tickets at once",
    responses=problems(**{"422": "A bad body, or a filter matching more than 500 tickets"}),
)
async def bulk_update_tickets(
    body: BulkUpdate, agent: CurrentAgent, units: UnitsDep, settings: SettingsDep
) -> BulkResponse:
    """Change status, priority or category of up to 500 tickets, chosen by id or by the list
    filters, each as a single PATCH would (same rules, same `ticket.updated` event). Partial
    success: every ticket gets its own result (`not_found` for one the caller may not see,
    `conflict` for an illegal status move); the others change. Assignment is not here: it
    belongs to the agents service."""
    return await units.run(lambda unit: bulk.bulk_update(unit, settings, agent, body))


@router.get("/api/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: str, agent: CurrentAgent, session: SessionDep, runtime: RuntimeDep
) -> TicketDetail:
    """The ticket with its customer, SLA summary and messages."""
    view = await runtime.projections.until_found(
        ticket_id, lambda: service.get_ticket(session, agent, ticket_id), session, owner=True
    )
    return _detail(view)


@router.patch(
    "/api/tickets/{ticket_id}",
    responses=problems(**{"409": "An illegal status move, e.g. from closed"}),
)
async def update_ticket(
    ticket_id: str,
    body: TicketUpdate,
    agent: CurrentAgent,
    units: UnitsDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
) -> TicketDetail:
    """Change subject, status, priority, channel or category (illegal status moves: 409)."""
    view = await runtime.projections.until_found(
        ticket_id,
        lambda: units.run(
            lambda unit: service.update_ticket(unit, settings, agent, ticket_id, body)
        ),
        owner=True,
    )
    return _detail(view)


@router.delete("/api/tickets/{ticket_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_ticket(
    ticket_id: str, admin: Admin, units: UnitsDep, sweeper: SweeperDep
) -> Response:
    """Delete a ticket, its messages and their attachments (admin only)."""
    await units.run(lambda unit: service.delete_ticket(unit, admin, ticket_id, sweeper.delete_now))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- messages -----------------------------------------------------------------------------------


@router.get("/api/tickets/{ticket_id}/messages", tags=["messages"])
async def list_messages(
    ticket_id: str, agent: CurrentAgent, session: SessionDep, runtime: RuntimeDep
) -> MessageList:
    """The conversation, oldest first."""
    messages = await runtime.projections.until_found(
        ticket_id, lambda: service.list_messages(session, agent, ticket_id), session, owner=True
    )
    return MessageList(ticket_id=ticket_id, messages=[_message(m) for m in messages])


@router.post(
    "/api/tickets/{ticket_id}/messages",
    status_code=status.HTTP_201_CREATED,
    tags=["messages"],
    responses=problems(
        **{
            "403": "The integration key may post customer messages only (and no templates)",
            "409": "The ticket is closed",
        }
    ),
)
async def add_message(
    ticket_id: str,
    body: MessagePost,
    caller: Caller,
    units: UnitsDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
) -> MessageWithStatus:
    """Post a message. A customer message reopens a pending or resolved ticket; a closed
    ticket refuses messages (409). The integration key may post customer messages only.
    Instead of `content`, an agent may name a canned response (`template_id`): its body,
    filled in for this ticket, is the message (an unknown or unusable template: 422)."""
    message, ticket_status = await runtime.projections.until_found(
        ticket_id,
        lambda: units.run(
            lambda unit: service.add_message(unit, settings, caller, ticket_id, body)
        ),
        owner=True,
    )
    return MessageWithStatus(**_message(message).model_dump(), ticket_status=ticket_status)


@router.patch("/api/tickets/{ticket_id}/messages/{message_id}", tags=["messages"])
async def edit_message(
    ticket_id: str,
    message_id: str,
    body: MessageUpdate,
    agent: CurrentAgent,
    units: UnitsDep,
    settings: SettingsDep,
) -> MessageWithStatus:
    """Edit a message's content: an agent their own messages, an admin any message."""
    message, ticket_status = await units.run(
        lambda unit: service.edit_message(unit, settings, agent, ticket_id, message_id, body)
    )
    return MessageWithStatus(**_message(message).model_dump(), ticket_status=ticket_status)


@router.delete(
    "/api/tickets/{ticket_id}/messages/{message_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["messages"],
)
async def delete_message(
    ticket_id: str,
    message_id: str,
    agent: CurrentAgent,
    units: UnitsDep,
    settings: SettingsDep,
    sweeper: SweeperDep,
) -> Response:
    """Delete a message (and its attachments): an agent their own messages, an admin any."""
    await units.run(
        lambda unit: service.delete_message(
            unit, settings, agent, ticket_id, message_id, sweeper.delete_now
        )
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- CSAT ---------------------------------------------------------------------------------------


@router.post(
    "/api/tickets/{ticket_id}/csat",
    status_code=status.HTTP_201_CREATED,
    tags=["csat"],
    summary="Record the customer's rating of a resolved ticket",
    responses={
        200: {"model": RatingRead, "description": "The same rating was already recorded (a retry)"},
        **problems(
            **{
                "403": "An agent's token: only the integration key rates, for the customer",
                "409": "The ticket is not resolved or closed, or was already rated differently",
            }
        ),
    },
)
async def rate_ticket(
    ticket_id: str, body: RatingCreate, caller: Caller, units: UnitsDep, response: Response
) -> RatingRead:
    """CSAT, once per ticket, by the integration key on the customer's behalf: a rating 1-5
    and an optional comment for a resolved or closed ticket, announced as `ticket.rated` with
    the ticket's assignee. The identical request again answers 200 with the stored rating
    (nothing new is recorded); a different one is a 409."""
    rated = await units.run(lambda unit: csat.rate_ticket(unit, caller, ticket_id, body))
    if not rated.created:
        response.status_code = status.HTTP_200_OK
    return RatingRead.model_validate(rated.rating, from_attributes=True)


@router.get("/api/tickets/{ticket_id}/csat", tags=["csat"])
async def get_rating(
    ticket_id: str, agent: CurrentAgent, session: SessionDep, runtime: RuntimeDep
) -> RatingRead:
    """The customer's rating of a ticket the caller may see (404 when not rated)."""
    rating = await runtime.projections.until_found(
        ticket_id, lambda: csat.get_rating(session, agent, ticket_id), session, owner=True
    )
    return RatingRead.model_validate(rating, from_attributes=True)


# --- customers ----------------------------------------------------------------------------------


@router.get("/api/customers/{customer_id}", tags=["customers"])
async def get_customer(
    customer_id: str, agent: CurrentAgent, session: SessionDep, settings: SettingsDep
) -> CustomerRead:
    """Basic info, lifetime value and churn risk as last known, and recent tickets (an agent:
    only through, and only, their own tickets)."""
    view = await service.get_customer(session, settings, agent, customer_id)
    recent = [TicketSummary(**_summary_fields(t)) for t in view.recent_tickets]
    return CustomerRead(**_fields(view.customer, CustomerRead, recent_tickets=recent))


# --- canned responses ---------------------------------------------------------------------------


def _template(template: Any) -> TemplateRead:
    return TemplateRead.model_validate(template, from_attributes=True)


@router.get("/api/canned-responses", tags=["canned responses"])
async def list_templates(
    agent: CurrentAgent,
    session: SessionDep,
    shared: Annotated[
        bool | None, Query(description="Only shared (true) or only personal (false) ones")
    ] = None,
) -> TemplateList:
    """The canned responses the caller may use: shared ones and their own, by name."""
    found = await templates.list_templates(session, agent, shared)
    return TemplateList(
        templates=[_template(t) for t in found], placeholders=templates.PLACEHOLDERS
    )


@router.post(
    "/api/canned-responses",
    status_code=status.HTTP_201_CREATED,
    tags=["canned responses"],
    responses=problems(**{"403": "A shared template by an agent below team_lead"}),
)
async def create_template(
    body: TemplateCreate, agent: CurrentAgent, units: UnitsDep
) -> TemplateRead:
    """Create a canned response: personal (any agent), or shared (team_lead and up). A body
    naming a placeholder outside the fixed set is a 422."""
    return _template(await units.run(lambda unit: templates.create_template(unit, agent, body)))


@router.get("/api/canned-responses/{template_id}", tags=["canned responses"])
async def get_template(template_id: str, agent: CurrentAgent, session: SessionDep) -> TemplateRead:
    """One canned response (another agent's personal one is a 404)."""
    return _template(await templates.get_template(session, agent, template_id))


@router.patch(
    "/api/canned-responses/{template_id}",
    tags=["canned responses"],
    responses=problems(**{"403": "A shared template (or sharing one) below team_lead"}),
)
async def update_template(
    template_id: str, body: TemplateUpdate, agent: CurrentAgent, units: UnitsDep
) -> TemplateRead:
    """Change name, body or sharing: personal templates their owner, shared ones team leads
    and up."""
    return _template(
        await units.run(lambda unit: templates.update_template(unit, agent, template_id, body))
    )


@router.delete(
    "/api/canned-responses/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["canned responses"],
    responses=problems(**{"403": "A shared template below team_lead"}),
)
async def delete_template(template_id: str, agent: CurrentAgent, units: UnitsDep) -> Response:
    """Delete a canned response (as for changing it)."""
    await units.run(lambda unit: templates.delete_template(unit, agent, template_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/canned-responses/{template_id}/preview",
    tags=["canned responses"],
    responses=problems(**{"422": "A bad body, or a ticket the caller may not see"}),
)
async def preview_template(
    template_id: str, body: TemplatePreviewRequest, agent: CurrentAgent, session: SessionDep
) -> TemplatePreview:
    """The canned response filled in for a ticket, as `template_id` on a message would post it
    (nothing is stored)."""
    template = await templates.get_template(session, agent, template_id)
    try:
        ticket = await service.load_ticket(session, agent, body.ticket_id)
    except NotFoundError:  # also NotVisibleYet: the ticket is a reference in the body
        raise UnprocessableError(
            f"Ticket {body.ticket_id} not found",
            errors=[{"loc": ["body", "ticket_id"], "msg": "unknown ticket", "type": "value_error"}],
        ) from None
    content = await templates.render_for(session, agent, template, ticket, field="ticket_id")
    return TemplatePreview(template_id=template.id, ticket_id=ticket.id, content=content)
