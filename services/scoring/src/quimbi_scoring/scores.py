"""Score a few tickets the way event handlers need it: compute in Python (domain.py), store the
result, and publish ticket.scored when the total changed at 2 decimals, once per transaction:
a consumer batch that scores a ticket twice (ticket.created and its first message arrive
together) publishes only the final score, by rewriting the event it added.

Called with the ticket rows already locked (the handler holds them); the score rows are
locked here before they are read, so the periodic recalculation either finished first or
skips them (it never waits).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.events import ScoreParts, TicketScoredData
from quimbi_common.outbox import add_events, replace_events

from . import domain
from .models import Customer, Ticket
from .settings import Settings

SOURCE = "scoring"
SCORED = "ticket.scored"


@dataclass(frozen=True)
class Scorable:
    """What the formula needs of one ticket."""

    id: str
    priority: str
    status: str
    waiting_since: datetime | None
    customer_sentiment: float
    lifetime_value: float
    churn_risk: float


@dataclass(frozen=True)
class ScoredBatch:
    computed: int
    published: int


SCORABLE_COLUMNS = (
    Ticket.id,
    Ticket.priority,
    Ticket.status,
    Ticket.waiting_since,
    Ticket.customer_sentiment,
    sa.func.coalesce(Customer.lifetime_value, 0.0).label("lifetime_value"),
    sa.func.coalesce(Customer.churn_risk, 0.0).label("churn_risk"),
)

_UPSERT_SCORES = (
    "INSERT INTO ticket_scores "
    "(ticket_id, smart_score, parts, inputs, computed_at, version, revision) "
    "SELECT id, score, parts::jsonb, inputs::jsonb, :computed_at, version, 1 "
    "FROM unnest(CAST(:ids AS text[]), CAST(:scores AS float8[]), CAST(:parts AS text[]), "
    "CAST(:inputs AS text[]), CAST(:versions AS int[])) "
    "AS s(id, score, parts, inputs, version) "
    "ON CONFLICT (ticket_id) DO UPDATE SET smart_score = excluded.smart_score, "
    "parts = excluded.parts, inputs = excluded.inputs, computed_at = excluded.computed_at, "
    "version = excluded.version, revision = ticket_scores.revision + 1"
)
_WRITE_SCORES = sa.text(_UPSERT_SCORES)
_LOCK_SCORES = sa.text(
    "SELECT ticket_id, smart_score, version FROM ticket_scores "
    "WHERE ticket_id = ANY(CAST(:ids AS text[])) ORDER BY ticket_id FOR UPDATE"
)


async def load_for_customer(session: AsyncSession, customer_id: str) -> list[Scorable]:
    """Every live ticket of a customer, their rows locked in id order."""
    rows = await session.execute(
        sa.select(*SCORABLE_COLUMNS)
        .select_from(sa.outerjoin(Ticket, Customer, Customer.id == Ticket.customer_id))
        .where(Ticket.customer_id == customer_id, ~Ticket.deleted)
        .order_by(Ticket.id)
        .with_for_update(of=Ticket)
    )
    return [Scorable(**row._mapping) for row in rows]


async def score_tickets(
    session: AsyncSession,
    settings: Settings,
    now: datetime,
    tickets: Sequence[Scorable],
    *,
    first_time: bool = False,
) -> ScoredBatch:
    """Compute, store, and publish the changed totals. `first_time`: these tickets were just
    inserted in this transaction, so they have no stored score to read."""
    if not tickets:
        return ScoredBatch(0, 0)
    stored: dict[str, Any] = {}
    if not first_time:
        result = await session.execute(_LOCK_SCORES, {"ids": [t.id for t in tickets]})
        stored = {row.ticket_id: row for row in result}
    weights = settings.weights
    names = ("ids", "scores", "parts", "inputs", "versions")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    changed: list[TicketScoredData] = []
    for ticket in tickets:
        inputs = domain.ScoreInputs(
            priority=TicketPriority(ticket.priority),
            status=TicketStatus(ticket.status),
            hours_waiting=domain.hours_waiting(ticket.waiting_since, now),
            customer_sentiment=ticket.customer_sentiment,
            lifetime_value=ticket.lifetime_value,
            churn_risk=ticket.churn_risk,
        )
        score = domain.compute_score(inputs, weights)
        parts = score.parts.as_dict()
        document = inputs_document(inputs, ticket.waiting_since)
        previous = stored.get(ticket.id)
        version = previous.version if previous else 0
        if previous is None or previous.smart_score != score.total:
            version += 1
            changed.append(
                TicketScoredData(
                    ticket_id=ticket.id,
                    smart_score=score.total,
                    parts=ScoreParts(**parts),
                    inputs=document,
                    computed_at=now,
                    version=version,
                )
            )
        columns["ids"].append(ticket.id)
        columns["scores"].append(score.total)
        columns["parts"].append(json.dumps(parts))
        columns["inputs"].append(json.dumps(document))
        columns["versions"].append(version)
    await session.execute(_WRITE_SCORES, {"computed_at": now, **columns})
    await _publish(session, changed)
    return ScoredBatch(len(tickets), len(changed))


_UNSENT = "quimbi_scoring.unsent_scores"


async def _publish(session: AsyncSession, changed: list[TicketScoredData]) -> None:
    """Add ticket.scored for each change, or rewrite the one this transaction already added."""
    transaction = session.sync_session.get_transaction()
    owner, unsent = session.info.get(_UNSENT, (None, {}))
    if owner is not transaction:
        unsent = {}
        session.info[_UNSENT] = (transaction, unsent)
    again = [(unsent[e.ticket_id], SCORED, e) for e in changed if e.ticket_id in unsent]
    fresh = [e for e in changed if e.ticket_id not in unsent]
    await replace_events(session, again, source=SOURCE)
    ids = await add_events(session, [(SCORED, event) for event in fresh], source=SOURCE)
    unsent.update(zip((e.ticket_id for e in fresh), ids, strict=True))


def inputs_document(inputs: domain.ScoreInputs, waiting_since: datetime | None) -> dict[str, Any]:
    """The `inputs` of ticket.scored and of the stored score."""
    return {
        "priority": inputs.priority.value,
        "status": inputs.status.value,
        "waiting_since": waiting_since.isoformat() if waiting_since else None,
        "hours_waiting": domain.round_half_up(inputs.hours_waiting, domain.PART_DECIMALS),
        "customer_sentiment": domain.round_half_up(inputs.customer_sentiment, domain.PART_DECIMALS),
        "lifetime_value": inputs.lifetime_value,
        "churn_risk": inputs.churn_risk,
    }
