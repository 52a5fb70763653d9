"""What other services tell the tickets service: scores, assignments, SLA clocks, intelligence;
and read-your-writes for an agent whose view waits on ticket.assigned.

The test topics have one partition, so once an event is recorded as processed every event
published before it has been handled too.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from quimbi_common import ids
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.enums import (
    AssignmentReason,
    AssignmentStatus,
    Role,
    SlaStatus,
    TicketPriority,
)
from quimbi_common.events import (
    AssignmentData,
    CustomerIntelligenceData,
    ScoreParts,
    SlaTrackingData,
    TicketScoredData,
)
from quimbi_common.testing import unique
from quimbi_common.uow import UnitsOfWork
from quimbi_tickets import projections

if TYPE_CHECKING:
    from conftest import Actor, World

pytestmark = pytest.mark.service
T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def _scored(ticket_id: str, score: float, version: int) -> TicketScoredData:
    return TicketScoredData(
        ticket_id=ticket_id,
        smart_score=score,
        parts=ScoreParts(priority=score, wait=0, sentiment=0, value=0, churn=0),
        computed_at=datetime.now(UTC),
        version=version,
    )


def _assignment(
    ticket_id: str,
    agent_id: str,
    *,
    assignment_id: str | None = None,
    version: int = 1,
    active: bool = True,
    status: AssignmentStatus = AssignmentStatus.PENDING,
    assigned_at: datetime = T0,
) -> AssignmentData:
    return AssignmentData(
        id=assignment_id or unique("asg_"),
        ticket_id=ticket_id,
        agent_id=agent_id,
        reason=AssignmentReason.MANUAL,
        status=status,
        assigned_at=assigned_at,
        is_active=active,
        version=version,
    )


async def _detail(world: World, actor: Actor, ticket_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/api/tickets/{ticket_id}", headers=actor.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_score_is_stored_without_a_ticket_change_and_stale_scores_are_ignored(
    world: World,
) -> None:
    # given a ticket
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    # when scores arrive out of order (version 3, then an older version 2)
    await world.publish("ticket.scored", _scored(ticket["id"], 8.4, version=3))
    await world.processed(await world.publish("ticket.scored", _scored(ticket["id"], 1.0, 2)))
    # then the newest score stands, and the ticket itself did not change
    detail = await _detail(world, senior, ticket["id"])
    assert detail["smart_score"] == 8.4
    assert detail["version"] == 1
    assert world.events("ticket.updated", id=ticket["id"]) == []


async def test_a_new_ticket_says_its_score_and_sla_are_pending_until_reported(
    world: World,
) -> None:
    # given a ticket nobody has scored or started a clock for yet
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    # then its detail, list item and creation answer say so, instead of a bare 0 and null
    listed = (
        await world.client.get(
            "/api/tickets", params={"customer_id": ticket["customer_id"]}, headers=senior.headers
        )
    ).json()["tickets"]
    for shown in (ticket, await _detail(world, senior, ticket["id"]), *listed):
        assert (shown["score_status"], shown["sla_status"]) == ("pending", "pending")
    assert ticket["smart_score"] == 0
    assert ticket["sla"] is None
    # when scoring and SLA report
    await world.publish("ticket.scored", _scored(ticket["id"], 3.5, version=1))
    await world.processed(
        await world.publish("sla.updated", _sla(ticket["id"], 1, SlaStatus.PENDING))
    )
    # then both are known
    detail = await _detail(world, senior, ticket["id"])
    assert (detail["score_status"], detail["sla_status"]) == ("scored", "tracked")
    assert detail["smart_score"] == 3.5
    assert detail["sla"] is not None


async def test_assignment_moves_the_ticket_to_the_new_agent(world: World) -> None:
    # given an unassigned ticket
    ticket = await world.create_ticket(world.integration)
    agent = world.agent()
    # when agents publish ticket.assigned for an agent
    await world.processed(
        await world.publish("ticket.assigned", _assignment(ticket["id"], agent.agent_id or ""))
    )
    # then that agent sees the ticket, and ticket.updated republishes the assignee
    detail = await _detail(world, agent, ticket["id"])
    assert detail["assigned_agent_id"] == agent.agent_id
    assert detail["version"] == 2
    event = await world.event("ticket.updated", id=ticket["id"], version=2)
    assert event["data"]["changes"] == {"assigned_agent_id": {"old": None, "new": agent.agent_id}}


async def test_transfer_moves_the_ticket_and_an_older_assignment_is_ignored(
    world: World,
) -> None:
    # given a ticket assigned to a first agent
    first, second = world.agent(), world.agent()
    ticket = await world.create_ticket(world.integration)
    old_assignment = unique("asg_")
    await world.publish(
        "ticket.assigned",
        _assignment(ticket["id"], first.agent_id or "", assignment_id=old_assignment),
    )
    # when it is transferred: the new assignment arrives, then the old one's closing update,
    # then a late, older event about the first assignment
    later = T0 + timedelta(minutes=5)
    await world.publish(
        "ticket.assigned", _assignment(ticket["id"], second.agent_id or "", assigned_at=later)
    )
    await world.publish(
        "assignment.updated",
        _assignment(
            ticket["id"],
            first.agent_id or "",
            assignment_id=old_assignment,
            version=2,
            active=False,
            status=AssignmentStatus.TRANSFERRED,
        ),
    )
    await world.processed(
        await world.publish(
            "assignment.updated",
            _assignment(
                ticket["id"],
                first.agent_id or "",
                assignment_id=old_assignment,
                version=1,
                status=AssignmentStatus.ACCEPTED,
            ),
        )
    )
    # then the second agent holds the ticket and the first no longer sees it
    detail = await _detail(world, second, ticket["id"])
    assert detail["assigned_agent_id"] == second.agent_id
    assert detail["version"] == 3
    gone = await world.client.get(f"/api/tickets/{ticket['id']}", headers=first.headers)
    world.problem(gone, 404)


async def test_completed_assignment_leaves_the_assignee(world: World) -> None:
    agent = world.agent()
    ticket = await world.create_ticket(world.integration)
    assignment = unique("asg_")
    await world.publish(
        "ticket.assigned",
        _assignment(ticket["id"], agent.agent_id or "", assignment_id=assignment),
    )
    completed = _assignment(
        ticket["id"],
        agent.agent_id or "",
        assignment_id=assignment,
        version=3,
        active=False,
        status=AssignmentStatus.COMPLETED,
    )
    await world.processed(await world.publish("assignment.updated", completed))
    detail = await _detail(world, agent, ticket["id"])
    assert detail["assigned_agent_id"] == agent.agent_id
    assert detail["version"] == 2


def _sla(ticket_id: str, version: int, status: SlaStatus) -> SlaTrackingData:
    return SlaTrackingData(
        ticket_id=ticket_id,
        priority=TicketPriority.NORMAL,
        first_response_status=status,
        first_response_deadline=T0 + timedelta(hours=8),
        resolution_status=SlaStatus.PENDING,
        resolution_deadline=T0 + timedelta(hours=48),
        is_paused=False,
        total_paused_seconds=60 * version,
        version=version,
    )


async def test_sla_summary_shows_on_the_ticket_and_ignores_older_versions(world: World) -> None:
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    await world.publish("sla.updated", _sla(ticket["id"], 4, SlaStatus.AT_RISK))
    await world.processed(
        await world.publish("sla.updated", _sla(ticket["id"], 3, SlaStatus.PENDING))
    )
    detail = await _detail(world, senior, ticket["id"])
    assert detail["sla"] == {
        "first_response_status": "at_risk",
        "first_response_deadline": "2030-01-01T17:00:00Z",
        "first_response_at": None,
        "resolution_status": "pending",
        "resolution_deadline": "2030-01-03T09:00:00Z",
        "resolved_at": None,
        "is_paused": False,
        "total_paused_seconds": 240,
    }
    assert detail["version"] == 1


def _intelligence(customer_id: str, ltv: float, churn: float, at: datetime) -> Any:
    return CustomerIntelligenceData(
        customer_id=customer_id,
        churn_risk=churn,
        churn_risk_level="high" if churn > 0.6 else "low",
        lifetime_value=ltv,
        fetched_at=at,
    )


async def test_customer_intelligence_updates_value_and_churn_unless_older(world: World) -> None:
    # given a customer's ticket
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    customer_id = ticket["customer_id"]
    # when fresh intelligence arrives, then an older fetch
    await world.publish(
        "customer.intelligence_updated", _intelligence(customer_id, 1250.0, 0.72, T0)
    )
    older = _intelligence(customer_id, 10.0, 0.1, T0 - timedelta(hours=1))
    await world.processed(await world.publish("customer.intelligence_updated", older))
    # then the customer carries the fresh numbers, on its page and on the ticket
    customer = (
        await world.client.get(f"/api/customers/{customer_id}", headers=senior.headers)
    ).json()
    assert (customer["lifetime_value"], customer["churn_risk"]) == (1250.0, 0.72)
    assert customer["churn_risk_level"] == "high"
    detail = await _detail(world, senior, ticket["id"])
    assert detail["customer"]["lifetime_value"] == 1250.0
    assert detail["customer"]["churn_risk"] == 0.72
    assert detail["version"] == 1


async def test_events_about_unknown_tickets_are_ignored(world: World) -> None:
    missing = unique("ticket_")
    for topic, data in [
        ("ticket.scored", _scored(missing, 3.0, 1)),
        ("ticket.assigned", _assignment(missing, unique("a-"))),
        ("sla.updated", _sla(missing, 1, SlaStatus.PENDING)),
        ("customer.intelligence_updated", _intelligence(unique("cust_"), 1.0, 0.1, T0)),
    ]:
        await world.processed(await world.publish(topic, data))
    dead = await world.db.fetchval("SELECT count(*) FROM tickets WHERE id = $1", missing)
    assert dead == 0


async def test_a_batch_with_several_scores_and_sla_versions_of_a_ticket_keeps_the_newest(
    world: World,
) -> None:
    # given a ticket
    senior = world.agent(Role.SENIOR_AGENT)
    ticket = await world.create_ticket(senior)
    # when one consumer batch carries three versions of its score and SLA, newest in the middle
    engine = create_engine(world.settings)
    try:
        units = UnitsOfWork(create_sessionmaker(engine), world.settings.service_name)
        async with units.begin() as unit:
            await projections.apply_scores(
                unit, [_scored(ticket["id"], s, v) for s, v in ((1.0, 2), (8.4, 3), (0.5, 1))]
            )
            await projections.apply_slas(
                unit,
                [
                    _sla(ticket["id"], 2, SlaStatus.PENDING),
                    _sla(ticket["id"], 5, SlaStatus.BREACHED),
                    _sla(ticket["id"], 4, SlaStatus.AT_RISK),
                ],
            )
    finally:
        await engine.dispose()
    # then the newest of each stands
    detail = await _detail(world, senior, ticket["id"])
    assert detail["smart_score"] == 8.4
    assert detail["sla"]["first_response_status"] == "breached"
    assert detail["sla"]["total_paused_seconds"] == 300


async def test_a_batch_of_intelligence_fetches_keeps_each_customers_newest(world: World) -> None:
    # given two customers' tickets, one customer already holding a fetch newer than the batch's
    senior = world.agent(Role.SENIOR_AGENT)
    first = (await world.create_ticket(senior))["customer_id"]
    second = (await world.create_ticket(senior))["customer_id"]
    await world.processed(
        await world.publish(
            "customer.intelligence_updated",
            _intelligence(second, 900.0, 0.3, T0 + timedelta(hours=2)),
        )
    )
    # when one consumer batch carries three fetches of the first (newest in the middle) and an
    # older one of the second
    engine = create_engine(world.settings)
    try:
        units = UnitsOfWork(create_sessionmaker(engine), world.settings.service_name)
        async with units.begin() as unit:
            await projections.apply_customer_intelligence(
                unit,
                [
                    _intelligence(first, 10.0, 0.1, T0 - timedelta(hours=1)),
                    _intelligence(first, 1250.0, 0.72, T0),
                    _intelligence(first, 20.0, 0.2, T0 - timedelta(hours=2)),
                    _intelligence(second, 5.0, 0.9, T0),
                ],
            )
    finally:
        await engine.dispose()
    # then each customer carries its newest fetch
    for customer_id, wanted in ((first, (1250.0, 0.72)), (second, (900.0, 0.3))):
        customer = (
            await world.client.get(f"/api/customers/{customer_id}", headers=senior.headers)
        ).json()
        assert (customer["lifetime_value"], customer["churn_risk"]) == wanted


# --- read-your-writes: the agent's view depends on ticket.assigned from the agents service ------


async def test_a_ticket_just_assigned_to_an_agent_is_shown_to_them_not_404(world: World) -> None:
    # given a ticket held by nobody, and a consumer that is through its first event
    ticket = await world.create_ticket(world.integration)
    await world.processed(await world.publish("ticket.scored", _scored(ticket["id"], 1.0, 1)))
    agent = world.agent()
    # when the agents service has just assigned it to an agent (201 there), and the agent opens
    # it at once, before the tickets service has consumed ticket.assigned
    started = time.monotonic()
    opened = asyncio.create_task(
        world.client.get(f"/api/tickets/{ticket['id']}", headers=agent.headers)
    )
    await asyncio.sleep(0.3)
    assert not opened.done()  # waiting, not a 404
    await world.publish("ticket.assigned", _assignment(ticket["id"], agent.agent_id or ""))
    response = await opened
    # then the agent sees it, as soon as the assignment is applied
    assert response.status_code == 200, response.text
    assert response.json()["assigned_agent_id"] == agent.agent_id
    assert time.monotonic() - started < world.settings.read_your_writes_wait_seconds


async def test_unknown_and_invisible_tickets_are_404_within_the_bound(world: World) -> None:
    # given a ticket held by nobody, and an id nobody created
    ticket = await world.create_ticket(world.integration)
    bound = world.settings.read_your_writes_wait_seconds
    stranger = world.agent()
    took = {}
    for case, ticket_id in (("unknown", ids.new_id("ticket")), ("invisible", ticket["id"])):
        # when an agent asks for them
        started = time.monotonic()
        response = await world.client.get(f"/api/tickets/{ticket_id}", headers=stranger.headers)
        took[case] = time.monotonic() - started
        # then both are 404 problems
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # and the unknown one at once (this service makes ticket ids), the other within the bound
    assert took["unknown"] < 1.0
    assert bound - 0.1 <= took["invisible"] <= bound + 1.5
