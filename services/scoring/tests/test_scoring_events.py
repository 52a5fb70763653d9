"""Events in, ticket.scored out: the projections, rescoring, idempotence and ordering.

Tickets created 200 hours ago wait the full 3 points, so totals are exact whatever the pace.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.events import (
    CustomerIntelligenceData,
    FieldChange,
    MessageUpdatedData,
    TicketDeletedData,
)
from quimbi_common.testing import EventProbe, unique
from quimbi_scoring import projections

pytestmark = pytest.mark.service


async def test_a_new_ticket_is_scored_from_its_fields_and_customer_snapshot(
    scoring: Any, new_ticket: Any
) -> None:
    # given a high-priority ticket created 9 hours ago for a customer worth 500, churn 0.2
    created = new_ticket(
        priority=TicketPriority.HIGH, hours_ago=9, lifetime_value=500.0, churn_risk=0.2
    )
    # when tickets publishes ticket.created
    await scoring.send("ticket.created", created)
    # then ticket.scored carries 2.5 + 1.5·log10(1+9) + 0 + 2·0.5 + 3·0.2 = 5.6
    scored = await scoring.wait_scored(created.id)
    assert scored["smart_score"] == 5.6
    assert scored["parts"] == {
        "priority": 2.5,
        "wait": pytest.approx(1.5, abs=1e-3),
        "sentiment": 0.0,
        "value": 1.0,
        "churn": 0.6,
    }
    assert scored["inputs"]["priority"] == "high"
    assert scored["inputs"]["hours_waiting"] == pytest.approx(9.0, abs=0.01)
    assert scored["inputs"]["lifetime_value"] == 500.0
    assert scored["version"] == 1


async def test_conversation_drives_wait_and_sentiment(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a normal ticket
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    # when an unhappy customer message from 99 hours ago arrives (wait 3, sentiment 2·0.8)
    await scoring.send("message.added", new_message(created.id, sentiment=0.1, minutes_ago=99 * 60))
    # then the score rises to 1 + 3 + 1.6
    unhappy = await scoring.wait_scored(created.id, lambda d: d["version"] == 2)
    assert unhappy["smart_score"] == 5.6
    assert unhappy["parts"]["sentiment"] == 1.6
    # when an agent replies, nobody is waiting any more
    await scoring.send("message.added", new_message(created.id, from_agent=True))
    answered = await scoring.wait_scored(created.id, lambda d: d["version"] == 3)
    assert answered["parts"]["wait"] == 0.0
    assert answered["inputs"]["waiting_since"] is None
    assert answered["smart_score"] == 2.6


async def test_deleting_the_only_message_makes_the_wait_run_from_creation(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a new ticket whose only customer message is 99 hours old (wait 3)
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    old = new_message(created.id, minutes_ago=99 * 60)
    await scoring.handled(await scoring.send("message.added", old))
    assert (await scoring.published(created.id))[-1]["smart_score"] == 4.0
    # when that message is deleted
    await scoring.handled(
        await scoring.send("message.deleted", old.model_copy(update={"version": 2}))
    )
    # then the wait runs from the ticket's creation again (just now)
    last = (await scoring.published(created.id))[-1]
    assert last["smart_score"] == 1.0
    assert last["inputs"]["waiting_since"] is not None


async def test_a_ticket_and_its_first_message_arriving_together_are_both_counted(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given ten new tickets whose first (angry, 99 h old) message is published alongside them
    tickets = [new_ticket() for _ in range(10)]
    ids = []
    for created in tickets:
        first = new_message(created.id, sentiment=0.0, minutes_ago=99 * 60)
        ids += [
            await scoring.send("message.added", first),
            await scoring.send("ticket.created", created),
        ]
    await scoring.handled(*ids)
    # then, whichever handler ran first, every score counts the message: 1 + 3 + 2
    for created in tickets:
        assert (await scoring.published(created.id))[-1]["smart_score"] == 6.0


async def test_an_unchanged_score_publishes_nothing(scoring: Any, new_ticket: Any) -> None:
    # given a scored ticket
    created = new_ticket(hours_ago=200)
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    # when only its assignee changes
    agent = unique("agent-")
    reassigned = await scoring.send(
        "ticket.updated",
        new_ticket(
            created.id,
            version=2,
            customer_id=created.customer_id,
            created_at=created.created_at,
            assigned_agent_id=agent,
            changes={"assigned_agent_id": FieldChange(old=None, new=agent)},
        ),
    )
    await scoring.handled(reassigned)
    # then no new ticket.scored, though the new assignee may now see the breakdown
    assert [d["version"] for d in await scoring.published(created.id)] == [1]
    response = await scoring.client.get(
        f"/api/tickets/{created.id}/score-breakdown", headers=scoring.headers("agent", agent)
    )
    assert response.status_code == 200


async def test_out_of_order_and_replayed_events_leave_the_newest_state(
    scoring: Any, new_ticket: Any
) -> None:
    # given ticket.updated v3 (urgent) arriving before ticket.created v1 (low) and v2 (high)
    first = new_ticket(priority=TicketPriority.LOW, hours_ago=200)
    same = {"customer_id": first.customer_id, "created_at": first.created_at, "changes": {}}
    urgent = new_ticket(first.id, version=3, priority=TicketPriority.URGENT, **same)
    high = new_ticket(first.id, version=2, priority=TicketPriority.HIGH, **same)
    ids = [
        await scoring.send("ticket.updated", urgent),
        await scoring.send("ticket.created", first),
        await scoring.send("ticket.updated", high),
        # and the newest version delivered again (a new delivery, a new event id)
        await scoring.send("ticket.updated", urgent),
    ]
    await scoring.handled(*ids)
    # then the stored score is v3's, and v2 was never scored
    published = await scoring.published(first.id)
    assert published[-1]["inputs"]["priority"] == "urgent"
    assert published[-1]["smart_score"] == 7.0
    assert "high" not in [d["inputs"]["priority"] for d in published]
    response = await _breakdown(scoring, first.id, expect=200)
    assert response.json()["smart_score"] == 7.0


async def test_stale_message_versions_and_deletions_are_respected(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a ticket and a message whose edit (v2, happy) arrives before its creation (v1, angry)
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    angry = new_message(created.id, sentiment=0.0, minutes_ago=5)
    happy = MessageUpdatedData(
        **{**angry.model_dump(), "version": 2, "sentiment_score": 0.9},
        changes={"sentiment_score": FieldChange(old=0.0, new=0.9)},
    )
    await scoring.handled(await scoring.send("message.updated", happy))
    await scoring.handled(await scoring.send("message.added", angry))
    # when a second, unhappy message arrives
    other = new_message(created.id, sentiment=0.0, minutes_ago=1)
    await scoring.handled(await scoring.send("message.added", other))
    # then the sentiment is the mean of the happy edit and the new message
    assert (await scoring.published(created.id))[-1]["inputs"]["customer_sentiment"] == 0.45
    # when that message is deleted, then only the happy edit counts again
    deleted = await scoring.send("message.deleted", other.model_copy(update={"version": 2}))
    await scoring.handled(deleted)
    last = (await scoring.published(created.id))[-1]
    assert last["inputs"]["customer_sentiment"] == 0.9
    assert last["parts"]["sentiment"] == 0.0


async def test_intelligence_rescores_every_ticket_of_the_customer(
    scoring: Any, new_ticket: Any
) -> None:
    # given two tickets of one customer with no known value (score 1 + wait 3)
    customer = unique("cust-")
    tickets = [new_ticket(customer_id=customer, hours_ago=200) for _ in range(2)]
    for created in tickets:
        await scoring.send("ticket.created", created)
        await scoring.wait_scored(created.id)
    fetched = datetime.now(UTC)

    async def intelligence(churn: float, ltv: float, at: datetime) -> str:
        data = CustomerIntelligenceData(
            customer_id=customer,
            churn_risk=churn,
            churn_risk_level="high",
            lifetime_value=ltv,
            fetched_at=at,
        )
        return str(await scoring.send("customer.intelligence_updated", data))

    # when fresh intelligence arrives, then an older one late
    fresh = await intelligence(1.0, 2000.0, fetched)
    stale = await intelligence(0.0, 0.0, fetched - timedelta(hours=1))
    await scoring.handled(fresh, stale)
    # then both tickets score the newest values, 1 + 3 + 2 + 3, once
    for created in tickets:
        assert [d["smart_score"] for d in await scoring.published(created.id)] == [4.0, 9.0]
    # and a later ticket's snapshot (no value, no churn) does not override intelligence
    third = new_ticket(customer_id=customer, hours_ago=200)
    await scoring.send("ticket.created", third)
    assert (await scoring.wait_scored(third.id))["smart_score"] == 9.0


async def test_a_batch_of_intelligence_keeps_each_customers_newest_and_rescores_once(
    scoring: Any, new_ticket: Any
) -> None:
    # given a scored ticket of each of two customers (1 + wait 3)
    customers = [unique("cust-"), unique("cust-")]
    tickets = [new_ticket(customer_id=c, hours_ago=200) for c in customers]
    for created in tickets:
        await scoring.send("ticket.created", created)
        await scoring.wait_scored(created.id)
    at = datetime.now(UTC)

    def intelligence(customer: str, churn: float, ltv: float, hours_ago: float) -> Any:
        return CustomerIntelligenceData(
            customer_id=customer,
            churn_risk=churn,
            churn_risk_level="high",
            lifetime_value=ltv,
            fetched_at=at - timedelta(hours=hours_ago),
        )

    # when one consumer batch brings, out of order, three fetches of the first customer and
    # one of the second
    batch = [
        intelligence(customers[0], 0.0, 0.0, 2),
        intelligence(customers[0], 1.0, 2000.0, 0),  # the newest
        intelligence(customers[1], 1.0, 0.0, 0),
        intelligence(customers[0], 0.0, 10.0, 1),
    ]
    async with scoring.units.begin() as unit:
        await projections.apply_customer_intelligence(unit, batch, scoring.settings, at)
    # then each ticket is rescored once, from its customer's newest values
    first, second = [await scoring.published(t.id) for t in tickets]
    assert [d["smart_score"] for d in first] == [4.0, 9.0]  # + LTV 2 + churn 3
    assert [d["smart_score"] for d in second] == [4.0, 7.0]  # + churn 3


async def test_a_newer_snapshot_rescores_the_customers_other_tickets(
    scoring: Any, new_ticket: Any
) -> None:
    # given a ticket of a customer known only from snapshots (LTV 0)
    customer = unique("cust-")
    first = new_ticket(customer_id=customer, hours_ago=200)
    await scoring.send("ticket.created", first)
    await scoring.wait_scored(first.id)
    # when another of their tickets arrives with a newer snapshot (LTV 1000)
    second = new_ticket(customer_id=customer, hours_ago=100, lifetime_value=1000.0)
    await scoring.send("ticket.created", second)
    # then the first ticket is rescored too: 1 + 3 + 2
    assert (await scoring.wait_scored(first.id, lambda d: d["version"] == 2))["smart_score"] == 6.0


async def test_resolving_scores_zero_and_reopening_scores_again(
    scoring: Any, new_ticket: Any
) -> None:
    created = new_ticket(priority=TicketPriority.URGENT, hours_ago=200)
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    same = {"customer_id": created.customer_id, "created_at": created.created_at, "changes": {}}
    await scoring.send(
        "ticket.updated", new_ticket(created.id, version=2, status=TicketStatus.CLOSED, **same)
    )
    closed = await scoring.wait_scored(created.id, lambda d: d["version"] == 2)
    assert closed["smart_score"] == 0.0
    await scoring.send(
        "ticket.updated", new_ticket(created.id, version=3, priority=TicketPriority.URGENT, **same)
    )
    reopened = await scoring.wait_scored(created.id, lambda d: d["version"] == 3)
    assert reopened["smart_score"] == 7.0


async def test_a_deleted_ticket_is_forgotten_and_stays_deleted(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a scored ticket
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    # when it is deleted, and a stale update and a message arrive afterwards
    deleted = await scoring.send(
        "ticket.deleted",
        TicketDeletedData(id=created.id, version=2, deleted_at=datetime.now(UTC)),
    )
    await scoring.handled(deleted)
    late = [
        await scoring.send(
            "ticket.updated",
            new_ticket(created.id, version=2, customer_id=created.customer_id, changes={}),
        ),
        await scoring.send("message.added", new_message(created.id, sentiment=0.0)),
    ]
    await scoring.handled(*late)
    # then it stays unknown and nothing more was published for it
    await _breakdown(scoring, created.id, expect=404)
    assert [d["version"] for d in await scoring.published(created.id)] == [1]


async def test_a_malformed_event_goes_to_the_dead_letter_topic(scoring: Any) -> None:
    ticket_id = unique("bad-")
    async with EventProbe(
        ["ticket.created.dlq"], prefix=scoring.settings.kafka_topic_prefix
    ) as dlq:
        await scoring.send_raw("ticket.created", ticket_id, b'{"not": "an event"}')
        await dlq.wait_for("ticket.created.dlq", lambda body: body == {"not": "an event"})


async def _breakdown(scoring: Any, ticket_id: str, *, expect: int) -> Any:
    response = await scoring.client.get(
        f"/api/tickets/{ticket_id}/score-breakdown", headers=scoring.headers()
    )
    assert response.status_code == expect, response.text
    return response


async def test_a_ticket_scored_twice_in_one_transaction_publishes_its_final_score_once(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a ticket and its first (angry, 99 h old) message handled in one consumer batch
    created = new_ticket()
    first = new_message(created.id, sentiment=0.0, minutes_ago=99 * 60)
    settings = scoring.settings
    async with scoring.units.begin() as unit:
        await projections.apply_ticket(unit, created, settings, datetime.now(UTC))
        await projections.apply_message(unit, first, settings, datetime.now(UTC))
    # then one ticket.scored, with the score after the message (1 + 3 + 2): the ticket was
    # scored once, when the unit ended, so it is its first version
    [published] = await scoring.published(created.id)
    assert published["smart_score"] == 6.0
    assert published["version"] == 1


async def test_a_ticket_update_of_only_sentiment_is_not_consumed(
    scoring: Any, new_ticket: Any
) -> None:
    # given a scored ticket
    created = new_ticket(hours_ago=200)
    await scoring.handled(await scoring.send("ticket.created", created))
    # when tickets publishes a new sentiment estimate, then another ticket's event
    sentiment_only = await scoring.send(
        "ticket.updated",
        new_ticket(
            created.id,
            version=2,
            customer_id=created.customer_id,
            created_at=created.created_at,
            customer_sentiment=0.1,
            changes={"customer_sentiment": FieldChange(old=0.5, new=0.1)},
        ),
    )
    # and then (same topic and key: behind it in the partition) a change scoring holds
    urgent = await scoring.send(
        "ticket.updated",
        new_ticket(
            created.id,
            version=3,
            customer_id=created.customer_id,
            created_at=created.created_at,
            priority=TicketPriority.URGENT,
            changes={"priority": FieldChange(old="normal", new="urgent")},
        ),
    )
    await scoring.handled(urgent)
    # then the sentiment-only update was dropped before any work, unrecorded (news for the
    # tickets service alone: no consistency token names it), without rescoring
    async with scoring.engine.connect() as conn:
        recorded = await conn.scalar(
            sa.text("SELECT count(*) FROM processed_events WHERE event_id = CAST(:id AS uuid)"),
            {"id": sentiment_only},
        )
    assert recorded == 0
    assert [d["version"] for d in await scoring.published(created.id)] == [1, 2]


async def test_a_mixed_batch_is_applied_together_and_each_ticket_published_once(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a scored ticket of a customer, and a ticket about to be deleted
    customer = unique("cust-")
    known = new_ticket(customer_id=customer, hours_ago=200)
    doomed = new_ticket(hours_ago=200)
    for created in (known, doomed):
        await scoring.handled(await scoring.send("ticket.created", created))
    settings, now = scoring.settings, datetime.now(UTC)
    # when one consumer batch brings, in a scrambled order: new tickets of the customer, their
    # first messages (one before its ticket, one edited later in the batch), the customer's
    # intelligence, a stale replay of the known ticket and the other ticket's deletion
    fresh = [new_ticket(customer_id=customer, hours_ago=200) for _ in range(2)]
    early = new_message(fresh[0].id, sentiment=0.0, minutes_ago=99 * 60)
    edited = new_message(fresh[1].id, sentiment=0.9, minutes_ago=99 * 60)
    intelligence = CustomerIntelligenceData(
        customer_id=customer,
        churn_risk=1.0,
        churn_risk_level="high",
        lifetime_value=2000.0,
        fetched_at=now,
    )
    async with scoring.units.begin() as unit:
        await projections.apply_message(unit, early, settings, now)
        projections.queue_tickets(unit, [*fresh, known], settings, now)
        projections.queue_messages(unit, [edited], settings, now)
        projections.queue_customer_intelligence(unit, [intelligence], settings, now)
        projections.queue_messages(
            unit, [edited.model_copy(update={"version": 2, "sentiment_score": 0.0})], settings, now
        )
        projections.queue_ticket_deletions(
            unit,
            [TicketDeletedData(id=doomed.id, version=2, deleted_at=now)],
            settings,
            now,
        )
    # then each new ticket is published once, version 1, with its message (wait 3, sentiment
    # 2 from the newest edit) and the customer's intelligence (LTV 2, churn 3): 1+3+2+2+3
    for created in fresh:
        assert [(d["smart_score"], d["version"]) for d in await scoring.published(created.id)] == [
            (11.0, 1)
        ]
    # and the known ticket once more, for the intelligence (1 + 3 + 2 + 3)
    assert [d["smart_score"] for d in await scoring.published(known.id)] == [4.0, 9.0]
    # and the deleted one is gone
    await _breakdown(scoring, doomed.id, expect=404)
