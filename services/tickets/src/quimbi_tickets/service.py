"""Use cases: one function per thing the service does, each taking a unit of work (the route's,
committed by `UnitsOfWork.run`; the change and its outbox events go together). What other
services' events maintain is in projections.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from quimbi_common import ids
from quimbi_common.auth import Principal
from quimbi_common.catchup import NotVisibleYet
from quimbi_common.clock import utcnow
from quimbi_common.enums import Intent, Role, TicketPriority, TicketStatus
from quimbi_common.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from quimbi_common.events import (
    Contract,
    EventType,
    FieldChange,
    MessageData,
    MessageUpdatedData,
    TicketData,
    TicketDeletedData,
    TicketUpdatedData,
)
from quimbi_common.runtime import json_safe
from quimbi_common.uow import UnitOfWork

from . import domain, search, templates
from .attachments import records as attachment_records
from .models import Customer, Message, Ticket
from .schemas import (
    CustomerIn,
    MessageCreate,
    MessagePost,
    MessageUpdate,
    TicketCreate,
    TicketUpdate,
)
from .settings import Settings

# Fields whose change is a change of the ticket (a version bump and a ticket.updated event).
TRACKED_FIELDS = (
    "subject",
    "status",
    "priority",
    "channel",
    "category",
    "assigned_agent_id",
    "customer_sentiment",
    "estimated_difficulty",
)


def new_id(prefix: str) -> str:
    """Time-ordered (UUIDv7): other services tell a new id from an unknown old one by it."""
    return ids.new_id(prefix)


# --- event data ---------------------------------------------------------------------------------

ContractT = TypeVar("ContractT", bound=Contract)


def _event_data(cls: type[ContractT], row: Any, **given: Any) -> ContractT:
    """An event's data read off an ORM row by field name, but for the fields `given`."""
    fields = {name: getattr(row, name) for name in cls.model_fields if name not in given}
    return cls.model_validate({**fields, **given}, from_attributes=True)


def ticket_data(ticket: Ticket, **extra: Any) -> TicketData:
    """`ticket.created`/`ticket.updated` data; with `changes=`, the updated kind."""
    cls = TicketUpdatedData if "changes" in extra else TicketData
    return _event_data(cls, ticket, **extra)


def message_data(message: Message, ticket_status: str, **extra: Any) -> MessageData:
    cls = MessageUpdatedData if "changes" in extra else MessageData
    return _event_data(cls, message, ticket_status=ticket_status, **extra)


def snapshot(entity: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(entity, name) for name in fields}


def _changes(before: dict[str, Any], entity: Any) -> dict[str, FieldChange]:
    return {
        name: FieldChange(old=json_safe(old), new=json_safe(getattr(entity, name)))
        for name, old in before.items()
        if getattr(entity, name) != old
    }


# --- reading ------------------------------------------------------------------------------------


def visibility(principal: Principal) -> list[sa.ColumnElement[bool]]:
    """The WHERE clause limiting tickets to those the caller may see (agents: their own)."""
    if principal.sees_all_tickets:
        return []
    return [Ticket.assigned_agent_id == principal.agent_id]


async def load_ticket(
    session: AsyncSession, principal: Principal, ticket_id: str, *, lock: bool = False
) -> Ticket:
    """The ticket with its customer, or 404 when it does not exist or the caller may not see it
    (`NotVisibleYet`: an assignment to the caller may be on its way from the agents service)."""
    stmt = (
        sa.select(Ticket)
        .where(Ticket.id == ticket_id, *visibility(principal))
        .options(joinedload(Ticket.customer))
    )
    if lock:
        stmt = stmt.with_for_update(of=Ticket)
    ticket = (await session.execute(stmt)).scalar_one_or_none()
    if ticket is None:
        hidden = not principal.sees_all_tickets and await session.scalar(
            sa.select(Ticket.id).where(Ticket.id == ticket_id)
        )
        raise (NotVisibleYet if hidden else NotFoundError)(f"Ticket {ticket_id} not found")
    return ticket


async def ticket_messages(session: AsyncSession, ticket_id: str) -> list[Message]:
    """The conversation, oldest first."""
    rows = await session.scalars(
        sa.select(Message)
        .where(Message.ticket_id == ticket_id)
        .order_by(Message.created_at, Message.id)
    )
    return list(rows)


@dataclass(frozen=True)
class TicketView:
    ticket: Ticket
    messages: list[Message]


async def list_messages(
    session: AsyncSession, principal: Principal, ticket_id: str
) -> list[Message]:
    await load_ticket(session, principal, ticket_id)
    return await ticket_messages(session, ticket_id)


@dataclass(frozen=True)
class CustomerView:
    customer: Customer
    recent_tickets: list[Ticket]


async def get_customer(
    session: AsyncSession, settings: Settings, principal: Principal, customer_id: str
) -> CustomerView:
    """A customer and their latest tickets; an agent sees a customer only through own tickets."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError(f"Customer {customer_id} not found")
    tickets = list(
        await session.scalars(
            sa.select(Ticket)
            .where(Ticket.customer_id == customer_id, *visibility(principal))
            .order_by(Ticket.created_at.desc(), Ticket.id)
            .limit(settings.context_max_past_tickets)
        )
    )
    if not tickets and not principal.sees_all_tickets:
        raise NotFoundError(f"Customer {customer_id} not found")
    return CustomerView(customer, tickets)


# --- derived fields -----------------------------------------------------------------------------


async def refresh_derived(session: AsyncSession, settings: Settings, ticket: Ticket) -> None:
    """Recompute customer_sentiment, estimated_difficulty and the search document from the
    stored subject and conversation."""
    await session.flush()
    ticket.search_document = search.document_of(ticket.id, ticket.subject)
    customer_messages = Message.ticket_id == ticket.id, Message.from_agent.is_(False)
    recent = await session.scalars(
        sa.select(Message.sentiment_score)
        .where(*customer_messages)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(settings.customer_sentiment_window)
    )
    intents = await session.scalars(
        sa.select(Message.detected_intent).where(*customer_messages).distinct()
    )
    message_count = await session.scalar(
        sa.select(sa.func.count()).where(Message.ticket_id == ticket.id)
    )
    set_derived(settings, ticket, list(recent), list(intents), message_count or 0)


def set_derived(
    settings: Settings,
    ticket: Ticket,
    recent: list[float | None],
    intents: list[str | None],
    message_count: int,
) -> None:
    """customer_sentiment and estimated_difficulty from the conversation's facts: the customer
    messages' sentiments, newest first; their detected intents; how many messages it holds."""
    ticket.customer_sentiment = domain.customer_sentiment(
        recent[: settings.customer_sentiment_window]
    )
    subject_intent = domain.detect_intent(ticket.subject, domain.sentiment_score(ticket.subject))
    ticket.estimated_difficulty = domain.estimated_difficulty(
        priority=TicketPriority(ticket.priority),
        intents=[subject_intent, *(Intent(i) for i in dict.fromkeys(intents) if i)],
        message_count=message_count,
        sentiment=ticket.customer_sentiment,
    )


async def bump_and_publish(
    unit: UnitOfWork, ticket: Ticket, before: dict[str, Any], at: datetime
) -> str | None:
    """If a tracked field changed: new version, updated_at, and a ticket.updated event (its id
    is returned; None when nothing changed)."""
    changes = _bump(ticket, before, at)
    if not changes:
        return None
    return await unit.emit(EventType.TICKET_UPDATED, ticket_data(ticket, changes=changes))


def _bump(ticket: Ticket, before: dict[str, Any], at: datetime) -> dict[str, FieldChange]:
    """The tracked fields changed since `before`; if any, a new version and updated_at."""
    changes = _changes(before, ticket)
    if changes:
        ticket.version += 1
        ticket.updated_at = at
    return changes


# --- tickets ------------------------------------------------------------------------------------


def _initial_assignee(principal: Principal, requested: str | None) -> str | None:
    """An agent's new ticket is theirs unless they (senior and up) name someone else."""
    if not principal.is_agent:
        if requested is not None:
            raise ForbiddenError("The integration key may not assign tickets")
        return None
    if requested is None or requested == principal.agent_id:
        return principal.agent_id
    if not principal.has_role(Role.SENIOR_AGENT):
        raise ForbiddenError("Only senior agents and above may assign tickets to someone else")
    return requested


async def _customer_for(session: AsyncSession, body: TicketCreate, at: datetime) -> Customer:
    if body.customer_id is not None:
        customer = await session.get(Customer, body.customer_id)
        if customer is None:
            raise UnprocessableError(
                f"Customer {body.customer_id} not found",
                errors=[
                    {
                        "loc": ["body", "customer_id"],
                        "msg": "unknown customer",
                        "type": "value_error",
                    }
                ],
            )
        return customer
    assert body.customer is not None
    return await _find_or_create_customer(session, body.customer, at)


# The customer with this email, inserted if new, in one statement: the inserted row, else the
# existing one (a row committed by a concurrent creation after this statement began is not
# seen by its SELECT: `_find_or_create_customer` then reads again).
_FIND_OR_CREATE_CUSTOMER = sa.text(
    "WITH inserted AS (INSERT INTO customers (id, email, name, created_at, updated_at) "
    "VALUES (:id, :email, :name, :at, :at) ON CONFLICT DO NOTHING "
    "RETURNING id, email, name, lifetime_value::float8, churn_risk_score::float8) "
    "SELECT * FROM inserted UNION ALL "
    "SELECT id, email, name, lifetime_value::float8, churn_risk_score::float8 FROM customers "
    "WHERE email = :email AND NOT EXISTS (SELECT FROM inserted)"
)
_CUSTOMER_BY_EMAIL = sa.text(
    "SELECT id, email, name, lifetime_value::float8, churn_risk_score::float8 FROM customers "
    "WHERE email = :email"
)
_NAME_CUSTOMER = sa.text(
    "UPDATE customers SET name = :name, updated_at = :at WHERE id = :id AND name IS NULL"
)


async def _find_or_create_customer(
    session: AsyncSession, wanted: CustomerIn, at: datetime
) -> Customer:
    """The customer with this email, created if new (safe against concurrent creation), as a
    record the session does not track."""
    params = {"id": wanted.id or new_id("cust"), "email": wanted.email, "name": wanted.name}
    row = (await session.execute(_FIND_OR_CREATE_CUSTOMER, {**params, "at": at})).first()
    if row is None:
        row = (await session.execute(_CUSTOMER_BY_EMAIL, {"email": wanted.email})).first()
    if row is None or (wanted.id is not None and row.id != wanted.id):
        raise ConflictError("That customer id belongs to a customer with another email")
    customer = Customer(
        id=row.id,
        email=row.email,
        name=row.name,
        lifetime_value=row.lifetime_value,
        churn_risk_score=row.churn_risk_score,
    )
    if customer.name is None and wanted.name:
        await session.execute(_NAME_CUSTOMER, {"id": customer.id, "name": wanted.name, "at": at})
        customer.name = wanted.name
    return customer


def _new_message(
    ticket: Ticket, body: MessageCreate, principal: Principal, from_agent: bool, at: datetime
) -> Message:
    sentiment = domain.sentiment_score(body.content)
    if from_agent:
        from_name, from_email = body.from_name, body.from_email or principal.email
    else:
        customer = ticket.customer
        from_name = body.from_name or customer.name
        from_email = body.from_email or customer.email
    return Message(
        id=new_id("msg"),
        ticket_id=ticket.id,
        from_agent=from_agent,
        author_agent_id=principal.agent_id if from_agent else None,
        content=body.content,
        from_name=from_name,
        from_email=from_email,
        created_at=at,
        updated_at=at,
        sentiment_score=sentiment,
        detected_intent=domain.detect_intent(body.content, sentiment).value,
        version=1,
        attachments=[],
    )


def _message_author(principal: Principal, body: MessageCreate) -> bool:
    """Whether the message is an agent's; only an agent's token may speak as an agent."""
    from_agent = principal.is_agent if body.from_agent is None else body.from_agent
    if from_agent and not principal.is_agent:
        raise ForbiddenError("The integration key may only post customer messages")
    return from_agent


# A new ticket and its first message (if any) in one statement. The derived fields of a new
# ticket follow from the request alone; its search document is the subject (weight A) and the
# message's vector, as `search.document_of` builds it from the stored rows.
_INSERT_TICKET = sa.text(
    "WITH new_ticket AS (INSERT INTO tickets (id, customer_id, subject, status, priority, "
    "channel, category, assigned_agent_id, created_by_agent_id, created_at, updated_at, version, "
    "smart_score, customer_sentiment, estimated_difficulty, search_document) VALUES (:id, "
    ":customer_id, CAST(:subject AS text), :status, :priority, :channel, :category, "
    ":assigned_agent_id, :created_by_agent_id, CAST(:at AS timestamptz), "
    "CAST(:at AS timestamptz), 1, 0, :customer_sentiment, :estimated_difficulty, "
    "setweight(to_tsvector('english'::regconfig, CAST(:subject AS text)), 'A') "
    "|| coalesce(to_tsvector('english'::regconfig, CAST(:content AS text)), '')) RETURNING id) "
    "INSERT INTO messages (id, ticket_id, from_agent, author_agent_id, content, from_name, "
    "from_email, created_at, updated_at, sentiment_score, detected_intent, version) "
    "SELECT CAST(:message_id AS text), new_ticket.id, CAST(:from_agent AS boolean), "
    "CAST(:author_agent_id AS text), CAST(:content AS text), CAST(:from_name AS text), "
    "CAST(:from_email AS text), CAST(:at AS timestamptz), CAST(:at AS timestamptz), "
    "CAST(:sentiment_score AS numeric), CAST(:detected_intent AS text), 1 "
    "FROM new_ticket WHERE CAST(:message_id AS text) IS NOT NULL"
)


def _derived_for_new(settings: Settings, ticket: Ticket, messages: list[Message]) -> None:
    """The derived fields of a ticket whose messages are all in hand."""
    customer_messages = [m for m in messages if not m.from_agent]
    set_derived(
        settings,
        ticket,
        [m.sentiment_score for m in reversed(customer_messages)],
        [m.detected_intent for m in customer_messages],
        len(messages),
    )


async def create_ticket(
    unit: UnitOfWork, settings: Settings, principal: Principal, body: TicketCreate
) -> TicketView:
    """Insert the ticket (and its first message) with plain statements: the ticket and message
    returned are records of what was stored, not objects of the session."""
    session = unit.session
    at = utcnow()
    assignee = _initial_assignee(principal, body.assigned_agent_id)
    from_agent = _message_author(principal, body.message) if body.message else False
    customer = await _customer_for(session, body, at)
    ticket = Ticket(
        id=new_id("ticket"),
        customer_id=customer.id,
        subject=body.subject,
        status=TicketStatus.OPEN.value,
        priority=body.priority.value,
        channel=body.channel.value,
        category=body.category,
        assigned_agent_id=assignee,
        created_by_agent_id=principal.agent_id,
        created_at=at,
        updated_at=at,
        version=1,
        smart_score=0.0,
        score_version=0,
        sla_version=0,
    )
    ticket.customer = customer
    messages = []
    if body.message is not None:
        messages.append(_new_message(ticket, body.message, principal, from_agent, at))
    _derived_for_new(settings, ticket, messages)
    first = messages[0] if messages else None
    await session.execute(
        _INSERT_TICKET,
        {
            "id": ticket.id,
            "customer_id": ticket.customer_id,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "channel": ticket.channel,
            "category": ticket.category,
            "assigned_agent_id": ticket.assigned_agent_id,
            "created_by_agent_id": ticket.created_by_agent_id,
            "at": at,
            "customer_sentiment": ticket.customer_sentiment,
            "estimated_difficulty": ticket.estimated_difficulty,
            **_message_params(first),
        },
    )
    await unit.emit_many(
        [
            (EventType.TICKET_CREATED, ticket_data(ticket)),
            *((EventType.MESSAGE_ADDED, message_data(m, ticket.status)) for m in messages),
        ]
    )
    return TicketView(ticket, messages)


def _message_params(message: Message | None) -> dict[str, Any]:
    """A new message's columns as statement parameters (all None for no message)."""
    if message is None:
        return {"message_id": None, **dict.fromkeys(_MESSAGE_PARAMS)}
    return {"message_id": message.id, **{name: getattr(message, name) for name in _MESSAGE_PARAMS}}


_MESSAGE_PARAMS = (
    "from_agent",
    "author_agent_id",
    "content",
    "from_name",
    "from_email",
    "sentiment_score",
    "detected_intent",
)


async def update_ticket(
    unit: UnitOfWork,
    settings: Settings,
    principal: Principal,
    ticket_id: str,
    body: TicketUpdate,
) -> TicketView:
    ticket = await load_ticket(unit.session, principal, ticket_id, lock=True)
    await change_ticket(unit, settings, ticket, body.model_dump(exclude_unset=True))
    return TicketView(ticket, await ticket_messages(unit.session, ticket_id))


async def change_ticket(
    unit: UnitOfWork, settings: Settings, ticket: Ticket, wanted: dict[str, Any]
) -> str | None:
    """Apply field changes to a locked, visible ticket (one PATCH, or one ticket of a bulk
    change): 409 before any write on an illegal status move; returns the id of the
    ticket.updated event, None when nothing changed."""
    if "status" in wanted and not domain.can_transition(
        TicketStatus(ticket.status), wanted["status"]
    ):
        raise ConflictError(
            f"A ticket cannot go from {ticket.status} to {TicketStatus(wanted['status']).value}",
            allowed=sorted(
                s.value for s in domain.ALLOWED_TRANSITIONS[TicketStatus(ticket.status)]
            ),
        )
    before = snapshot(ticket, TRACKED_FIELDS)
    for name, value in wanted.items():
        setattr(ticket, name, json_safe(value))
    if ticket.subject != before["subject"] or ticket.priority != before["priority"]:
        await refresh_derived(unit.session, settings, ticket)
    return await bump_and_publish(unit, ticket, before, utcnow())


FilesRemover = Callable[[list[str]], Awaitable[object]]


async def _remove_files_after_commit(
    unit: UnitOfWork, keys: list[str], remove: FilesRemover | None
) -> None:
    """The stored files of what this unit deletes: recorded as due in the same transaction,
    removed once it commits (and by the sweeper, should that fail)."""
    if not keys:
        return
    await attachment_records.schedule_deletion(unit.session, keys, utcnow())
    if remove is not None:
        unit.after_commit(lambda: remove(keys))


async def delete_ticket(
    unit: UnitOfWork, principal: Principal, ticket_id: str, remove_files: FilesRemover | None = None
) -> None:
    """Hard delete (messages and attachments go with it; their files after the commit);
    consumers learn it from ticket.deleted."""
    session = unit.session
    ticket = await load_ticket(session, principal, ticket_id, lock=True)
    keys = await attachment_records.ticket_file_keys(session, ticket_id)
    await _remove_files_after_commit(unit, keys, remove_files)
    await session.execute(sa.delete(Ticket).where(Ticket.id == ticket_id))
    data = TicketDeletedData(
        id=ticket_id, version=ticket.version + 1, deleted_at=utcnow(), deleted_by=principal.agent_id
    )
    await unit.emit(EventType.TICKET_DELETED, data)


# --- messages -----------------------------------------------------------------------------------


_TICKETS, _CUSTOMERS = Ticket.__table__, Customer.__table__
_TICKET_FOR_MESSAGE = tuple(
    _TICKETS.c[name]
    for name in (
        "id",
        "customer_id",
        "subject",
        "status",
        "priority",
        "channel",
        "category",
        "assigned_agent_id",
        "created_by_agent_id",
        "created_at",
        "updated_at",
        "version",
        "customer_sentiment",
        "estimated_difficulty",
    )
)
_CUSTOMER_FOR_MESSAGE = tuple(
    _CUSTOMERS.c[name] for name in ("id", "email", "name", "lifetime_value", "churn_risk_score")
)


async def _lock_ticket_record(
    session: AsyncSession, principal: Principal, ticket_id: str
) -> Ticket:
    """`load_ticket(lock=True)` read as plain rows: a record of the ticket (with its customer)
    that the session does not track, so nothing is flushed from it."""
    stmt = (
        sa.select(*_TICKET_FOR_MESSAGE, *_CUSTOMER_FOR_MESSAGE)
        .join(_CUSTOMERS, _CUSTOMERS.c.id == _TICKETS.c.customer_id)
        .where(_TICKETS.c.id == ticket_id)
        .where(*visibility(principal))
        .with_for_update(of=_TICKETS)
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        hidden = not principal.sees_all_tickets and await session.scalar(
            sa.select(Ticket.id).where(Ticket.id == ticket_id)
        )
        raise (NotVisibleYet if hidden else NotFoundError)(f"Ticket {ticket_id} not found")
    values = tuple(row)
    ticket_count = len(_TICKET_FOR_MESSAGE)
    ticket = Ticket(**{c.key: v for c, v in zip(_TICKET_FOR_MESSAGE, values, strict=False)})
    ticket.customer = Customer(
        **{c.key: v for c, v in zip(_CUSTOMER_FOR_MESSAGE, values[ticket_count:], strict=True)}
    )
    return ticket


# What `refresh_derived` reads, in one statement (after the ticket's lock, so a message
# committed meanwhile is seen).
_CONVERSATION_FACTS = sa.text(
    "SELECT ARRAY(SELECT m.sentiment_score::float8 FROM messages m "
    "WHERE m.ticket_id = :ticket_id AND NOT m.from_agent "
    "ORDER BY m.created_at DESC, m.id DESC LIMIT :window) AS recent, "
    "ARRAY(SELECT DISTINCT m.detected_intent FROM messages m "
    "WHERE m.ticket_id = :ticket_id AND NOT m.from_agent) AS intents, "
    "(SELECT count(*) FROM messages m WHERE m.ticket_id = :ticket_id) AS message_count"
)

# The message and the ticket's new state in one statement; the search document is rebuilt as
# `search.document_of` does, with the new message (not visible to the statement's own scan).
_INSERT_MESSAGE = sa.text(
    "WITH new_message AS (INSERT INTO messages (id, ticket_id, from_agent, author_agent_id, "
    "content, from_name, from_email, created_at, updated_at, sentiment_score, detected_intent, "
    "version) VALUES (:message_id, :ticket_id, :from_agent, :author_agent_id, :content, "
    ":from_name, :from_email, :at, :at, :sentiment_score, :detected_intent, 1) "
    "RETURNING id, created_at, search_vector) "
    "UPDATE tickets SET status = :status, customer_sentiment = :customer_sentiment, "
    "estimated_difficulty = :estimated_difficulty, version = :version, "
    "updated_at = :updated_at, search_document = "
    "setweight(to_tsvector('english'::regconfig, tickets.subject), 'A') "
    "|| coalesce((SELECT tsvector_concat_agg(s.vector ORDER BY s.created_at, s.id) FROM ("
    "SELECT m.search_vector, m.created_at, m.id FROM messages m "
    "WHERE m.ticket_id = :ticket_id UNION ALL "
    "SELECT search_vector, created_at, id FROM new_message) AS s(vector, created_at, id)), '') "
    "WHERE tickets.id = :ticket_id"
)


async def add_message(
    unit: UnitOfWork,
    settings: Settings,
    principal: Principal,
    ticket_id: str,
    body: MessageCreate,
) -> tuple[Message, str]:
    """Store a message; a customer's reopens a pending or resolved ticket, a closed one refuses.
    A canned response (`template_id`) is rendered for the ticket into the content.

    Plain statements (lock, read the conversation's facts, insert + update, outbox): the
    message and ticket are records of what was stored, not objects of the session."""
    session = unit.session
    from_agent = _message_author(principal, body)
    ticket = await _lock_ticket_record(session, principal, ticket_id)
    if isinstance(body, MessagePost) and body.template_id is not None:
        body = await _from_template(session, principal, ticket, body, from_agent=from_agent)
    try:
        status = domain.status_after_message(TicketStatus(ticket.status), from_agent=from_agent)
    except domain.ClosedTicketError:
        raise ConflictError("The ticket is closed; open a new ticket instead") from None
    at = utcnow()
    message = _new_message(ticket, body, principal, from_agent, at)
    claimed = []
    if isinstance(body, MessagePost) and body.attachment_ids:
        claimed = await attachment_records.claim(session, principal, ticket.id, body.attachment_ids)
    facts = (
        await session.execute(
            _CONVERSATION_FACTS,
            {"ticket_id": ticket.id, "window": settings.customer_sentiment_window},
        )
    ).one()
    before = snapshot(ticket, TRACKED_FIELDS)
    ticket.status = status.value
    _derive(settings, ticket, message, facts.recent, facts.intents, facts.message_count)
    changes = _bump(ticket, before, at)
    await session.execute(
        _INSERT_MESSAGE,
        {
            **_message_params(message),
            "ticket_id": ticket.id,
            "at": at,
            "status": ticket.status,
            "customer_sentiment": ticket.customer_sentiment,
            "estimated_difficulty": ticket.estimated_difficulty,
            "version": ticket.version,
            "updated_at": ticket.updated_at,
        },
    )
    for attachment in claimed:  # flushed with the next statement, after the message exists
        attachment.message_id = message.id
    message.attachments = claimed
    events: list[tuple[EventType, Contract]] = []
    if changes:
        events.append((EventType.TICKET_UPDATED, ticket_data(ticket, changes=changes)))
    events.append((EventType.MESSAGE_ADDED, message_data(message, ticket.status)))
    await unit.emit_many(events)
    return message, ticket.status


def _derive(
    settings: Settings,
    ticket: Ticket,
    message: Message,
    recent: list[float | None],
    intents: list[str | None],
    message_count: int,
) -> None:
    """The derived fields with `message` added to the stored conversation (its facts read
    before the insert)."""
    if not message.from_agent:  # the newest customer message
        recent = [message.sentiment_score, *recent]
        intents = [*intents, message.detected_intent]
    set_derived(settings, ticket, recent, intents, message_count + 1)


async def _from_template(
    session: AsyncSession,
    principal: Principal,
    ticket: Ticket,
    body: MessagePost,
    *,
    from_agent: bool,
) -> MessagePost:
    """The message with its content rendered from the canned response (an agent's reply)."""
    if not principal.is_agent:
        raise ForbiddenError("The integration key may not use canned responses")
    if not from_agent:
        raise UnprocessableError(
            "A canned response is an agent's message",
            errors=[
                {"loc": ["body", "from_agent"], "msg": "must not be false", "type": "value_error"}
            ],
        )
    assert body.template_id is not None
    template = await templates.usable_template(session, principal, body.template_id)
    content = await templates.render_for(session, principal, template, ticket)
    return body.model_copy(update={"content": content})


async def _editable_message(
    session: AsyncSession, principal: Principal, ticket_id: str, message_id: str
) -> tuple[Ticket, Message]:
    """The ticket (locked) and message, if the caller may change it: an agent their own
    messages, an admin any (customer messages included)."""
    ticket = await load_ticket(session, principal, ticket_id, lock=True)
    message = await session.scalar(
        sa.select(Message).where(Message.id == message_id, Message.ticket_id == ticket_id)
    )
    if message is None:
        raise NotFoundError(f"Message {message_id} not found")
    own = message.from_agent and message.author_agent_id == principal.agent_id
    if not own and not principal.has_role(Role.ADMIN):
        raise ForbiddenError("Agents may change only their own messages")
    return ticket, message


async def edit_message(
    unit: UnitOfWork,
    settings: Settings,
    principal: Principal,
    ticket_id: str,
    message_id: str,
    body: MessageUpdate,
) -> tuple[Message, str]:
    session = unit.session
    ticket, message = await _editable_message(session, principal, ticket_id, message_id)
    if body.content == message.content:
        return message, ticket.status
    at = utcnow()
    message_before = snapshot(message, ("content", "sentiment_score", "detected_intent"))
    message.content = body.content
    message.sentiment_score = domain.sentiment_score(body.content)
    message.detected_intent = domain.detect_intent(body.content, message.sentiment_score).value
    message.version += 1
    message.updated_at = at
    before = snapshot(ticket, TRACKED_FIELDS)
    await refresh_derived(session, settings, ticket)
    await bump_and_publish(unit, ticket, before, at)
    changes = _changes(message_before, message)
    await unit.emit(
        EventType.MESSAGE_UPDATED, message_data(message, ticket.status, changes=changes)
    )
    return message, ticket.status


async def delete_message(
    unit: UnitOfWork,
    settings: Settings,
    principal: Principal,
    ticket_id: str,
    message_id: str,
    remove_files: FilesRemover | None = None,
) -> None:
    """Delete a message, its attachments with it (their files after the commit)."""
    session = unit.session
    ticket, message = await _editable_message(session, principal, ticket_id, message_id)
    keys = [a.storage_key for a in message.attachments]
    await _remove_files_after_commit(unit, keys, remove_files)
    await session.delete(message)
    message.version += 1
    before = snapshot(ticket, TRACKED_FIELDS)
    await refresh_derived(session, settings, ticket)
    await bump_and_publish(unit, ticket, before, utcnow())
    await unit.emit(EventType.MESSAGE_DELETED, message_data(message, ticket.status))
