"""The periodic recomputation: wait grows with time, due slots are rescored, replicas share,
and the SQL formula of the bulk pass agrees with the Python one of the handlers.

Time passing is simulated by moving a ticket's clock facts back in the projection and making
its slot due now.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.testing import unique
from quimbi_scoring import domain
from quimbi_scoring.models import RECALC_BUCKETS, RECALC_SLOTS
from quimbi_scoring.service import recalculate_due_slots, recalculate_slot

pytestmark = pytest.mark.service


async def _age(scoring: Any, ticket_ids: list[str], hours: float) -> None:
    """As if `hours` had passed since these tickets were scored, and their slots are due."""
    async with scoring.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE tickets SET created_at = created_at - make_interval(secs => :s), "
                "waiting_since = waiting_since - make_interval(secs => :s) "
                "WHERE id = ANY(CAST(:ids AS text[]))"
            ),
            {"s": hours * 3600, "ids": ticket_ids},
        )
        await conn.execute(
            sa.text(
                "UPDATE recalc_slots SET due_at = now() - interval '1 second' WHERE slot IN "
                "(SELECT recalc_bucket / :width FROM tickets WHERE id = ANY(CAST(:ids AS text[])))"
            ),
            {"ids": ticket_ids, "width": RECALC_BUCKETS // RECALC_SLOTS},
        )


async def test_the_background_loop_rescores_due_tickets_as_they_wait(
    scoring: Any, new_ticket: Any
) -> None:
    # given a new normal ticket (score 1.0)
    created = new_ticket()
    await scoring.send("ticket.created", created)
    assert (await scoring.wait_scored(created.id))["smart_score"] == 1.0
    # when nine hours pass and its slot comes due
    await _age(scoring, [created.id], hours=9)
    # then the loop publishes the longer wait: 1 + 1.5·log10(10)
    later = await scoring.wait_scored(created.id, lambda d: d["version"] == 2, timeout=10)
    assert later["smart_score"] == 2.5
    assert later["parts"]["wait"] == pytest.approx(1.5, abs=1e-3)
    assert later["inputs"]["hours_waiting"] == pytest.approx(9.0, abs=0.01)
    assert later["inputs"]["priority"] == "normal"
    # and the breakdown shows the stored recomputation
    response = await scoring.client.get(
        f"/api/tickets/{created.id}/score-breakdown", headers=scoring.headers()
    )
    assert response.json()["smart_score"] == 2.5
    assert response.json()["version"] == 2


async def test_a_pass_that_changes_nothing_publishes_nothing(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a ticket an agent answered (nobody waits, so time changes nothing)
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    await scoring.handled(
        await scoring.send("message.added", new_message(created.id, from_agent=True))
    )
    # when its slot comes due and is recomputed
    await _age(scoring, [created.id], hours=9)
    await recalculate_due_slots(scoring.units, scoring.settings)
    # then nothing was published
    assert [d["version"] for d in await scoring.published(created.id)] == [1]


async def test_resolved_tickets_are_left_out_of_the_recalculation(
    scoring: Any, new_ticket: Any
) -> None:
    # given a closed urgent ticket (score 0)
    created = new_ticket(status=TicketStatus.CLOSED, priority=TicketPriority.URGENT)
    await scoring.send("ticket.created", created)
    assert (await scoring.wait_scored(created.id))["smart_score"] == 0.0
    # when its slot is recomputed much later, then it still scores 0 and nothing is published
    await _age(scoring, [created.id], hours=50)
    await recalculate_due_slots(scoring.units, scoring.settings)
    assert [d["smart_score"] for d in await scoring.published(created.id)] == [0.0]


async def test_a_slot_is_rescheduled_one_period_on_in_its_own_phase(scoring: Any) -> None:
    # given a slot that was due 3.5 periods ago (the service was down)
    period = scoring.settings.recalc_period_seconds
    now = datetime.now(UTC)
    async with scoring.engine.begin() as conn:
        slot = await conn.scalar(sa.text("SELECT min(slot) FROM recalc_slots"))
        await conn.execute(
            sa.text("UPDATE recalc_slots SET due_at = :due WHERE slot = :slot"),
            {"due": now - timedelta(seconds=3.5 * period), "slot": slot},
        )
    # when the loop catches up
    await recalculate_due_slots(scoring.units, scoring.settings, clock=lambda: now)
    # then the slot is next due half a period from now, not a whole period from now
    async with scoring.engine.connect() as conn:
        due = await conn.scalar(
            sa.text("SELECT due_at FROM recalc_slots WHERE slot = :slot"), {"slot": slot}
        )
    assert due - now == pytest.approx(timedelta(seconds=0.5 * period), abs=timedelta(seconds=1))


async def test_concurrent_replicas_rescore_each_due_ticket_once(
    scoring: Any, new_ticket: Any
) -> None:
    # given 30 scored tickets that have all waited 5 more hours
    tickets = [new_ticket() for _ in range(30)]
    ids = [await scoring.send("ticket.created", t) for t in tickets]
    await scoring.handled(*ids)
    await _age(scoring, [t.id for t in tickets], hours=5)
    # when three replicas (two here, and the app's own loop) work through the due slots
    await asyncio.gather(
        recalculate_due_slots(scoring.units, scoring.settings),
        recalculate_due_slots(scoring.units, scoring.settings),
    )
    # then every ticket was rescored exactly once, with one new version each
    for created in tickets:
        published = await scoring.published(created.id)
        assert [d["version"] for d in published] == [1, 2]
        assert published[-1]["smart_score"] == 2.17  # 1 + 1.5·log10(6)


async def test_the_sql_formula_agrees_with_the_domain_formula(scoring: Any) -> None:
    # given 400 open tickets with tie-prone inputs (2-decimal values) in one slot
    rng = random.Random(5)
    now = datetime.now(UTC)
    cases = []
    async with scoring.engine.begin() as conn:
        slot = rng.randrange(RECALC_SLOTS)
        for i in range(400):
            waiting = rng.choice([None, now - timedelta(seconds=rng.randint(0, 900_000))])
            case = {
                "id": _id_in_slot(slot),
                "customer_id": unique("cust-"),
                "priority": rng.choice(list(TicketPriority)).value,
                "waiting_since": waiting,
                "sentiment": round(rng.uniform(-0.1, 1.0), 2),
                "ltv": round(rng.uniform(-10, 1500), 2),
                "churn": round(rng.uniform(-0.1, 1.2), 3),
            }
            if i == 0:  # 1 + 0.67 + 1.005 = 2.675: a tie Python's round() would take down
                case.update(priority="normal", waiting_since=None, sentiment=0.5)
                case.update(ltv=335.0, churn=0.335)
            cases.append(case)
            await conn.execute(
                sa.text(
                    "INSERT INTO customers (id, lifetime_value, churn_risk) "
                    "VALUES (:customer_id, :ltv, :churn)"
                ),
                case,
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO tickets (id, customer_id, subject, status, priority, "
                    "created_at, version, waiting_since, customer_sentiment) VALUES "
                    "(:id, :customer_id, 's', 'open', :priority, now(), 1, :waiting_since, "
                    ":sentiment)"
                ),
                case,
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO ticket_scores (ticket_id, smart_score, parts, inputs, "
                    "computed_at, version) VALUES (:id, -1, '{}', '{}', now(), 1)"
                ),
                case,
            )
    # when PostgreSQL recomputes the slot
    await scoring.units.run(lambda unit: recalculate_slot(unit, scoring.settings, slot, now))
    # then every total and part is what the Python formula says
    async with scoring.engine.connect() as conn:
        stored = {
            row.ticket_id: row
            for row in await conn.execute(
                sa.text(
                    "SELECT ticket_id, smart_score, parts FROM ticket_scores "
                    "WHERE ticket_id = ANY(CAST(:ids AS text[]))"
                ),
                {"ids": [c["id"] for c in cases]},
            )
        }
    for case in cases:
        expected = domain.compute_score(
            domain.ScoreInputs(
                priority=TicketPriority(case["priority"]),
                status=TicketStatus.OPEN,
                hours_waiting=domain.hours_waiting(case["waiting_since"], now),
                customer_sentiment=case["sentiment"],
                lifetime_value=case["ltv"],
                churn_risk=case["churn"],
            ),
            scoring.settings.weights,
        )
        assert stored[case["id"]].smart_score == expected.total, case
        assert stored[case["id"]].parts == expected.parts.as_dict(), case


def _id_in_slot(slot: int) -> str:
    import hashlib

    while True:
        candidate = unique("eq-")
        bucket = hashlib.md5(candidate.encode()).digest()[0]  # noqa: S324 (a hash, not a secret)
        if bucket // (RECALC_BUCKETS // RECALC_SLOTS) == slot:
            return candidate
