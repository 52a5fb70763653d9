"""What ticket and message events maintain here: each ticket's SLA clock (started, paused,
resumed, answered, resolved, stopped), a consumer batch at a time.

The handlers only queue their events; at the end of the batch's unit of work (its
before-commit step) they are applied together: the tickets they name are locked in id order
(one statement), their clocks and early facts read (one statement each), every event applied
in memory in the order it was handed over (a ticket's events of one topic in offset order),
and the changed clocks written with one upsert (which also wakes the requests waiting for
those tickets), the early facts with one, the events to the outbox with one insert. The
rules are `service`'s clock functions, as for the API and the scheduler; what changed is the
round trips (issue 15: a `ticket.created` cost 7 of them and ORM bookkeeping, a customer
message 2).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.catchup import CHANNEL
from quimbi_common.clock import utcnow
from quimbi_common.enums import SlaStatus, TicketPriority, TicketStatus
from quimbi_common.events import Contract, EventType, MessageData, TicketData, TicketDeletedData
from quimbi_common.uow import UnitOfWork

from .calendar import BusinessCalendar
from .models import Clock, ClockRow, SlaPolicy, SlaTracking
from .service import (
    apply_policy,
    aware,
    pause_clock,
    published_state,
    resume_clock,
    settled_events,
)

Change = TicketData | TicketDeletedData | MessageData  # TicketUpdatedData is a TicketData

_TABLE = cast(sa.Table, SlaTracking.__table__)
_COLUMNS = [f.name for f in dataclasses.fields(ClockRow)]
_KEPT_ON_UPDATE = ("id", "ticket_id")


def _array(column: str) -> str:
    return f"{_TABLE.c[column].type.compile(dialect=postgresql.dialect())}[]"


# Each ticket's advisory lock (the key `service.lock_ticket` takes), in the order given.
_LOCK = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n) ORDER BY n"
)
_LOAD = sa.text(
    f"SELECT {', '.join(_COLUMNS)} FROM sla_tracking "  # noqa: S608 (column names)
    "WHERE ticket_id = ANY(CAST(:ids AS text[])) FOR UPDATE"
)
_LOAD_FACTS = sa.text(
    "SELECT ticket_id, first_agent_message_at, deleted_version FROM ticket_facts "
    "WHERE ticket_id = ANY(CAST(:ids AS text[]))"
)
# The batch's changed clocks, whole: inserted or replaced (the rows are locked). Every ticket
# written is notified: requests waiting to see it look again once the batch commits.
_WRITE = sa.text(
    f"INSERT INTO sla_tracking ({', '.join(_COLUMNS)}) "  # noqa: S608 (column names)
    f"SELECT * FROM unnest({', '.join(f'CAST(:{c} AS {_array(c)})' for c in _COLUMNS)}) "
    "ON CONFLICT (ticket_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in _KEPT_ON_UPDATE)
    + ", updated_at = now() "
    "RETURNING pg_notify(:channel, ticket_id)"
)
_REMEMBER = sa.text(
    "INSERT INTO ticket_facts AS f (ticket_id, first_agent_message_at, deleted_version) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:answered AS timestamptz[]), "
    "CAST(:deleted AS int[])) "
    "ON CONFLICT (ticket_id) DO UPDATE SET "
    "first_agent_message_at = least(f.first_agent_message_at, excluded.first_agent_message_at), "
    "deleted_version = greatest(f.deleted_version, excluded.deleted_version)"
)
_FORGET = sa.text("DELETE FROM ticket_facts WHERE ticket_id = ANY(CAST(:ids AS text[]))")


@dataclass(slots=True)
class Facts:
    """What arrived before a ticket's clock existed (`ticket_facts`)."""

    first_agent_message_at: datetime | None = None
    deleted_version: int | None = None


def _least(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _ticket_id(change: Change) -> str:
    return change.ticket_id if isinstance(change, MessageData) else change.id


@dataclass
class _Batch:
    """A batch's clocks in memory while its events are applied, and what to write after."""

    session: AsyncSession
    calendar: BusinessCalendar
    now: datetime
    clocks: dict[str, ClockRow]
    facts: dict[str, Facts]  # tickets without a clock: what their facts say
    stored_facts: set[str]  # tickets with a `ticket_facts` row in the database
    policies: dict[str, SlaPolicy] | None = None
    changed: dict[str, ClockRow] = field(default_factory=dict)
    remembered: set[str] = field(default_factory=set)  # facts to store
    events: list[tuple[EventType, Contract]] = field(default_factory=list)

    async def policy(self, priority: TicketPriority) -> SlaPolicy:
        if self.policies is None:
            policies = await self.session.scalars(sa.select(SlaPolicy))
            self.policies = {p.priority: p for p in policies}
        policy = self.policies.get(priority.value)
        if policy is None:
            raise LookupError(f"No SLA policy for priority {priority}")
        return policy

    async def apply(self, change: Change) -> None:
        if isinstance(change, MessageData):
            self.message(change)
        elif isinstance(change, TicketDeletedData):
            self.deleted(change)
        else:
            await self.ticket(change)

    def settle(self, row: ClockRow, before: tuple[Any, ...] | None) -> None:
        self.events.extend(settled_events(row, before, self.calendar, self.now))
        self.changed[row.ticket_id] = row

    async def ticket(self, data: TicketData) -> None:
        """ticket.created / ticket.updated: start the clock, or follow status, priority and
        assignee. Works from the ticket's whole state (not only `changes`), so a clock can
        start from a ticket.updated that overtook its ticket.created; older versions are
        ignored."""
        row = self.clocks.get(data.id)
        if row is None:
            facts = self.facts.get(data.id)
            if facts is not None and (facts.deleted_version or 0) >= data.version:
                return
            await self.start(data, facts)
            return
        if row.deleted_at is not None or data.version <= row.ticket_version:
            return
        before = published_state(row)
        _apply_ticket_state(row, data, self.calendar, self.now)
        if data.priority.value != row.priority:
            row.priority = data.priority.value
            apply_policy(row, await self.policy(data.priority))
        self.settle(row, before)

    async def start(self, data: TicketData, facts: Facts | None) -> None:
        policy = await self.policy(data.priority)
        created_at = aware(data.created_at)
        row = ClockRow(
            id=str(uuid.uuid4()),
            ticket_id=data.id,
            ticket_version=0,
            ticket_created_at=created_at,
            ticket_status=TicketStatus.OPEN.value,
            priority=data.priority.value,
            assigned_agent_id=None,
            deleted_at=None,
            first_response_target_seconds=policy.first_response_target_seconds,
            resolution_target_seconds=policy.resolution_target_seconds,
            warning_threshold_percent=policy.warning_threshold_percent,
            business_hours_only=policy.business_hours_only,
            first_response_status=SlaStatus.PENDING.value,
            first_response_deadline=created_at,  # settled below
            first_response_at=facts.first_agent_message_at if facts else None,
            first_response_paused_seconds=0.0,
            first_response_warning_sent=False,
            first_response_breach_sent=False,
            resolution_status=SlaStatus.PENDING.value,
            resolution_deadline=created_at,
            resolved_at=None,
            resolution_paused_seconds=0.0,
            resolution_warning_sent=False,
            resolution_breach_sent=False,
            is_paused=False,
            paused_at=None,
            total_paused_seconds=0,
            next_check_at=None,
            version=0,
        )
        _apply_ticket_state(row, data, self.calendar, self.now)
        self.clocks[data.id] = row
        self.facts.pop(data.id, None)  # used: the facts row goes (if stored)
        self.remembered.discard(data.id)
        self.settle(row, None)

    def message(self, data: MessageData) -> None:
        """message.added: the first agent message answers; a customer message resumes a
        pause."""
        sent_at = min(aware(data.created_at), self.now)
        row = self.clocks.get(data.ticket_id)
        if row is None:
            if data.from_agent:
                self.remember(data.ticket_id, Facts(first_agent_message_at=sent_at))
            return
        if row.deleted_at is not None:
            return
        before = published_state(row)
        if data.from_agent:
            if row.first_response_at is not None and row.first_response_at <= sent_at:
                return
            row.first_response_at = sent_at
        else:
            if not row.is_paused or row.paused_at is None or sent_at < row.paused_at:
                return
            resume_clock(row, sent_at, self.calendar)
        self.settle(row, before)

    def deleted(self, data: TicketDeletedData) -> None:
        """ticket.deleted: the clock stops for good and the ticket's SLA is no longer shown."""
        row = self.clocks.get(data.id)
        if row is None:
            self.remember(data.id, Facts(deleted_version=data.version))
            return
        if row.deleted_at is None:
            row.deleted_at = aware(data.deleted_at)
            row.next_check_at = None
            row.ticket_version = max(row.ticket_version, data.version)
            self.changed[row.ticket_id] = row

    def remember(self, ticket_id: str, fact: Facts) -> None:
        """Keep a fact about a ticket whose clock does not exist yet (earliest answer,
        deletion)."""
        held = self.facts.setdefault(ticket_id, Facts())
        held.first_agent_message_at = _least(
            held.first_agent_message_at, fact.first_agent_message_at
        )
        held.deleted_version = _greatest(held.deleted_version, fact.deleted_version)
        self.remembered.add(ticket_id)

    async def write(self, unit: UnitOfWork) -> None:
        session = self.session
        if self.changed:
            rows = [self.changed[k] for k in sorted(self.changed)]
            columns: dict[str, Any] = {c: [getattr(r, c) for r in rows] for c in _COLUMNS}
            await session.execute(_WRITE, {**columns, "channel": CHANNEL})
        started = sorted(self.stored_facts & set(self.clocks))
        if started:
            await session.execute(_FORGET, {"ids": started})
        if self.remembered:
            ids = sorted(self.remembered)
            await session.execute(
                _REMEMBER,
                {
                    "ids": ids,
                    "answered": [self.facts[i].first_agent_message_at for i in ids],
                    "deleted": [self.facts[i].deleted_version for i in ids],
                },
            )
        if self.events:
            await unit.emit_many(self.events)


def _apply_ticket_state(
    row: Clock, data: TicketData, calendar: BusinessCalendar, now: datetime
) -> None:
    """Move the clock by the ticket's change of status (pending pauses, done resolves)."""
    at = min(aware(data.updated_at), now)
    old, new = TicketStatus(row.ticket_status), data.status
    if old is TicketStatus.PENDING and new is not TicketStatus.PENDING and row.is_paused:
        resume_clock(row, at, calendar)
    if new.is_done and not old.is_done:
        row.resolved_at = at
    elif old.is_done and not new.is_done:
        row.resolved_at = None  # reopened: the resolution clock runs on
    if new is TicketStatus.PENDING and old is not TicketStatus.PENDING and not row.is_paused:
        pause_clock(row, at, calendar)
    row.ticket_status = new.value
    row.assigned_agent_id = data.assigned_agent_id
    row.ticket_version = data.version


async def apply(
    unit: UnitOfWork,
    changes: Sequence[Change],
    calendar: BusinessCalendar,
    now: datetime | None = None,
) -> None:
    """Apply ticket and message events to their clocks, in the order given, now."""
    if not changes:
        return
    session = unit.session
    ids = sorted({_ticket_id(change) for change in changes})
    await session.execute(_LOCK, {"keys": [f"sla:{i}" for i in ids]})
    loaded = await session.execute(_LOAD, {"ids": ids})
    clocks = {row.ticket_id: ClockRow(*row) for row in loaded}
    facts: dict[str, Facts] = {}
    if missing := [i for i in ids if i not in clocks]:
        stored = await session.execute(_LOAD_FACTS, {"ids": missing})
        facts = {r.ticket_id: Facts(r.first_agent_message_at, r.deleted_version) for r in stored}
    batch = _Batch(session, calendar, now or utcnow(), clocks, facts, set(facts))
    for change in changes:
        await batch.apply(change)
    await batch.write(unit)


_QUEUE = "quimbi_sla.clocks"


def queue(unit: UnitOfWork, changes: Sequence[Change], calendar: BusinessCalendar) -> None:
    """Apply these events with the rest of the unit's (a consumer batch's) at its end: one set
    of statements for the whole batch, whatever topics its events came from."""
    session = unit.session
    transaction = session.sync_session.get_transaction()
    owner, pending = session.info.get(_QUEUE, (None, []))
    if owner is not transaction:  # a new transaction (a batch run again) starts afresh
        pending = []
        session.info[_QUEUE] = (transaction, pending)
    pending.extend(changes)
    unit.before_commit(_QUEUE, lambda: apply(unit, pending, calendar))  # the first one kept


async def apply_ticket(
    unit: UnitOfWork, data: TicketData, calendar: BusinessCalendar, now: datetime | None = None
) -> None:
    """One ticket.created / ticket.updated, applied at once (tests, tools)."""
    await apply(unit, [data], calendar, now)
