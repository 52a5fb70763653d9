"""Scoring's use cases: score tickets (what the projections call when an event touched them)
and recompute the due tickets periodically (what the job calls).

Scoring a few tickets: compute in Python (domain.py), store the result, and publish
ticket.scored when the total changed at 2 decimals. The projections call it once per unit of
work, at its end, for every ticket whose inputs the unit moved (`projections`), so a
consumer batch holding a ticket's ticket.created and first message publishes one score.
Called with the ticket rows already locked (the handler holds them); the score rows are
locked here before they are read, so the periodic recalculation either finished first or
skips them (it never waits).

The periodic recomputation: every open ticket at least every SCORING_RECALCULATION_INTERVAL.

Open tickets fall into RECALC_SLOTS slots (by a hash of the id). Each slot has a due time;
the slots' due times are spread over the interval, so the work arrives evenly rather than as
one burst. A
replica claims a due slot with FOR UPDATE SKIP LOCKED (several replicas split the slots; a
crashed one's slot stays due), recomputes its tickets, and moves the slot on by one period,
keeping its phase.

The recomputation is one SQL statement per slot: the §5 formula evaluated by PostgreSQL, and
only the tickets whose total changed at 2 decimals are written and come back to Python for
their ticket.scored event. Unchanged tickets cost no write at all. The formula is the one in
`domain.py` operation for operation, with the same rounding (`round_half_up`), so the handlers
(Python) and this pass (SQL) agree; a test holds them to it. A row an event handler holds or
rewrote since the statement read it is skipped (SKIP LOCKED + the `revision` guard): the
handler's result stands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.clock import utcnow
from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.events import EventType, ScoreParts, TicketScoredData
from quimbi_common.uow import UnitOfWork, UnitsOfWork

from . import domain
from .models import RECALC_BUCKETS, RECALC_SLOTS
from .settings import Settings


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


# What the formula needs of each ticket, its row locked (id order); plain SQL: built per
# batch, an ORM select with an IN list of the batch's ids cost more than the statement.
_LOAD_TICKETS = sa.text(
    "SELECT t.id, t.priority, t.status, t.waiting_since, t.customer_sentiment,"
    "  coalesce(c.lifetime_value, 0.0) AS lifetime_value,"
    "  coalesce(c.churn_risk, 0.0) AS churn_risk "
    "FROM tickets t LEFT JOIN customers c ON c.id = t.customer_id "
    "WHERE t.id = ANY(CAST(:ids AS text[])) AND NOT t.deleted "
    "ORDER BY t.id FOR UPDATE OF t"
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


async def load_tickets(session: AsyncSession, ticket_ids: Sequence[str]) -> list[Scorable]:
    """These tickets as they stand (the live ones), their rows locked in id order."""
    rows = await session.execute(_LOAD_TICKETS, {"ids": list(ticket_ids)})
    return [Scorable(*row) for row in rows]


async def score_tickets(
    unit: UnitOfWork,
    settings: Settings,
    now: datetime,
    tickets: Sequence[Scorable],
    *,
    unscored: Collection[str] = (),
) -> ScoredBatch:
    """Compute, store, and publish the changed totals. `unscored`: tickets just inserted in
    this transaction, so they have no stored score to read."""
    if not tickets:
        return ScoredBatch(0, 0)
    session = unit.session
    stored: dict[str, Any] = {}
    scored_before = [t.id for t in tickets if t.id not in unscored]
    if scored_before:
        result = await session.execute(_LOCK_SCORES, {"ids": scored_before})
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
    await unit.emit_many([(EventType.TICKET_SCORED, event) for event in changed])
    return ScoredBatch(len(tickets), len(changed))


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


# --- the periodic recalculation -------------------------------------------------------------

Clock = Callable[[], datetime]

_CLAIM_DUE_SLOT = sa.text(
    "SELECT slot FROM recalc_slots WHERE due_at <= :now ORDER BY due_at LIMIT 1 "
    "FOR UPDATE SKIP LOCKED"
)
# Next due time: the first multiple of the period after now, from the slot's own phase.
_RESCHEDULE_SLOT = sa.text(
    "UPDATE recalc_slots SET due_at = due_at + make_interval(secs => :period) "
    "* (floor(extract(epoch FROM CAST(:now AS timestamptz) - due_at) / :period) + 1) "
    "WHERE slot = :slot"
).bindparams(sa.bindparam("period", type_=sa.Float))
# A slot due later than one period from now (a shorter interval was configured) comes forward.
_PULL_IN_SLOTS = sa.text(
    "UPDATE recalc_slots SET due_at = CAST(:now AS timestamptz) + make_interval(secs => :period) "
    "WHERE due_at > CAST(:now AS timestamptz) + make_interval(secs => :period)"
).bindparams(sa.bindparam("period", type_=sa.Float))
_FLOAT_PARAMS = (
    "p_low",
    "p_normal",
    "p_high",
    "p_urgent",
    "wait_cap",
    "urgency",
    "sentiment_points",
    "neutral",
    "value_weight",
    "high_value_ltv",
    "churn_weight",
)
_SLOT_PASS = (
    sa.text(
        "WITH inputs AS ("
        "  SELECT s.ticket_id, s.smart_score AS old_score, s.revision, t.priority, t.status,"
        "    t.waiting_since, t.customer_sentiment,"
        "    coalesce(c.lifetime_value, 0.0) AS lifetime_value,"
        "    coalesce(c.churn_risk, 0.0) AS churn_risk,"
        "    CASE WHEN t.waiting_since IS NULL THEN 0.0 ELSE greatest(0.0,"
        "      extract(epoch FROM CAST(:now AS timestamptz) - t.waiting_since)::float8 / 3600.0)"
        "    END AS hours_waiting"
        "  FROM tickets t JOIN ticket_scores s ON s.ticket_id = t.id"
        "  LEFT JOIN customers c ON c.id = t.customer_id"
        # the partial index ix_tickets_open_recalc_bucket serves this (models.OPEN_TICKET)
        "  WHERE t.recalc_bucket >= :first_bucket AND t.recalc_bucket < :end_bucket"
        "    AND NOT t.deleted AND t.status NOT IN ('resolved', 'closed')"
        "), parts AS ("
        "  SELECT *,"
        "    CASE priority WHEN 'low' THEN :p_low WHEN 'normal' THEN :p_normal"
        "      WHEN 'high' THEN :p_high ELSE :p_urgent END AS p_priority,"
        "    least(:wait_cap, :urgency * log(1.0 + hours_waiting)) AS p_wait,"
        "    :sentiment_points * least(1.0, greatest(0.0,"
        "      (:neutral - customer_sentiment) / :neutral)) AS p_sentiment,"
        "    :value_weight * least(1.0, greatest(0.0, lifetime_value / :high_value_ltv))"
        "      AS p_value,"
        "    :churn_weight * least(1.0, greatest(0.0, churn_risk)) AS p_churn"
        "  FROM inputs"
        "), scored AS ("
        "  SELECT *, round((p_priority + p_wait + p_sentiment + p_value + p_churn)::numeric, 2)"
        "    ::float8 AS score FROM parts"
        "), locked AS ("
        "  SELECT s.ticket_id FROM ticket_scores s JOIN scored ON scored.ticket_id = s.ticket_id"
        "  WHERE scored.score <> scored.old_score AND s.revision = scored.revision"
        "  FOR UPDATE OF s SKIP LOCKED"
        ") "
        "UPDATE ticket_scores s SET smart_score = sc.score, computed_at = :now,"
        "  version = s.version + 1, revision = s.revision + 1,"
        "  parts = jsonb_build_object("
        "    'priority', round(sc.p_priority::numeric, 4)::float8,"
        "    'wait', round(sc.p_wait::numeric, 4)::float8,"
        "    'sentiment', round(sc.p_sentiment::numeric, 4)::float8,"
        "    'value', round(sc.p_value::numeric, 4)::float8,"
        "    'churn', round(sc.p_churn::numeric, 4)::float8),"
        "  inputs = jsonb_build_object("
        "    'priority', sc.priority, 'status', sc.status,"
        "    'waiting_since', to_char(sc.waiting_since AT TIME ZONE 'UTC',"
        '      \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\'),'
        "    'hours_waiting', round(sc.hours_waiting::numeric, 4)::float8,"
        "    'customer_sentiment', round(sc.customer_sentiment::numeric, 4)::float8,"
        "    'lifetime_value', sc.lifetime_value, 'churn_risk', sc.churn_risk)"
        " FROM scored sc JOIN locked ON locked.ticket_id = sc.ticket_id"
        " WHERE s.ticket_id = sc.ticket_id"
        " RETURNING s.ticket_id, s.smart_score, s.parts, s.inputs, s.version"
    )
    .bindparams(*(sa.bindparam(name, type_=sa.Float) for name in _FLOAT_PARAMS))
    .columns(parts=JSONB, inputs=JSONB)
)


@dataclass(frozen=True)
class PassResult:
    slots: int
    published: int


def _formula_params(settings: Settings) -> dict[str, Any]:
    weights = settings.weights
    points = domain.PRIORITY_POINTS
    return {
        "p_low": points[TicketPriority.LOW],
        "p_normal": points[TicketPriority.NORMAL],
        "p_high": points[TicketPriority.HIGH],
        "p_urgent": points[TicketPriority.URGENT],
        "wait_cap": domain.WAIT_CAP,
        "urgency": weights.urgency,
        "sentiment_points": domain.SENTIMENT_POINTS,
        "neutral": domain.NEUTRAL_SENTIMENT,
        "value_weight": weights.value,
        "high_value_ltv": weights.high_value_ltv,
        "churn_weight": weights.churn,
    }


async def recalculate_slot(unit: UnitOfWork, settings: Settings, slot: int, now: datetime) -> int:
    """Recompute one slot's open tickets; store and publish the changed ones.
    Returns how many changed."""
    width = RECALC_BUCKETS // RECALC_SLOTS
    params = {"first_bucket": slot * width, "end_bucket": (slot + 1) * width, "now": now}
    rows = (await unit.session.execute(_SLOT_PASS, {**params, **_formula_params(settings)})).all()
    events = [
        TicketScoredData(
            ticket_id=row.ticket_id,
            smart_score=row.smart_score,
            parts=ScoreParts(**row.parts),
            inputs=row.inputs,
            computed_at=now,
            version=row.version,
        )
        for row in rows
    ]
    await unit.emit_many([(EventType.TICKET_SCORED, event) for event in events])
    return len(events)


async def recalculate_next_due_slot(
    unit: UnitOfWork, settings: Settings, now: datetime
) -> int | None:
    """Claim one due slot, recompute it and schedule its next turn; None when none is due.
    Returns how many scores changed."""
    slot = await unit.session.scalar(_CLAIM_DUE_SLOT, {"now": now})
    if slot is None:
        return None
    changed = await recalculate_slot(unit, settings, slot, now)
    await unit.session.execute(
        _RESCHEDULE_SLOT, {"slot": slot, "now": now, "period": settings.recalc_period_seconds}
    )
    return changed


async def recalculate_due_slots(
    units: UnitsOfWork,
    settings: Settings,
    clock: Clock = lambda: utcnow(),
) -> PassResult:
    """Work through the due slots, one unit of work each, until none is due (or the rest are
    held by other replicas)."""
    slots = published = 0
    while True:
        changed = await units.run(lambda unit: recalculate_next_due_slot(unit, settings, clock()))
        if changed is None:
            return PassResult(slots, published)
        slots += 1
        published += changed


async def pull_in_slots(unit: UnitOfWork, settings: Settings) -> None:
    """A slot due later than one period from now (a shorter interval was set) comes forward."""
    await unit.session.execute(
        _PULL_IN_SLOTS, {"now": utcnow(), "period": settings.recalc_period_seconds}
    )
