"""The clock follows ticket and message events (ARCHITECTURE §6), through real Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from quimbi_common.enums import TicketPriority, TicketStatus
from quimbi_common.testing import eventually

pytestmark = pytest.mark.service


def parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def test_a_new_ticket_gets_deadlines_from_its_priority_policy(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    # given an urgent ticket created now
    ticket = await tickets.created(new_ticket(priority=TicketPriority.URGENT))
    # then its clock starts: 30 min to first response, 8 h to resolution
    data = await sla.updated(ticket.id)
    assert data["version"] == 1
    assert data["priority"] == "urgent"
    assert parse(data["first_response_deadline"]) == ticket.created_at + timedelta(minutes=30)
    assert parse(data["resolution_deadline"]) == ticket.created_at + timedelta(hours=8)
    assert (data["first_response_status"], data["resolution_status"]) == ("pending", "pending")
    body = (await client.get(f"/api/tickets/{ticket.id}/sla", headers=senior)).json()
    assert body["first_response"]["target_seconds"] == 1800
    assert 0 <= body["first_response"]["percent_used"] < 5
    assert 1700 < body["first_response"]["seconds_remaining"] <= 1800
    assert body["is_paused"] is False


async def test_the_first_agent_message_meets_the_first_response(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = await tickets.created(new_ticket(priority=TicketPriority.HIGH))
    await sla.updated(ticket.id)
    # when the customer writes, nothing is answered; when an agent writes, it is
    await tickets.message(ticket, from_agent=False)
    answered_at = datetime.now(UTC)
    await tickets.message(ticket, from_agent=True, at=answered_at)
    data = await sla.updated(ticket.id, version=2)
    assert data["first_response_status"] == "met"
    assert parse(data["first_response_at"]) == answered_at
    # and a later agent message changes nothing
    await tickets.message(ticket, from_agent=True)
    await tickets.updated(ticket, status=TicketStatus.IN_PROGRESS)
    await tickets.updated(ticket, priority=TicketPriority.HIGH, status=TicketStatus.RESOLVED)
    final = await sla.updated(ticket.id, version=3)
    assert parse(final["first_response_at"]) == answered_at
    assert final["resolution_status"] == "met"


async def test_an_answer_that_arrives_before_its_ticket_still_counts(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    # given the agent's message is consumed before ticket.created
    ticket = new_ticket(created_at=datetime.now(UTC) - timedelta(minutes=5))
    answered_at = datetime.now(UTC) - timedelta(minutes=1)
    await tickets.message(ticket, from_agent=True, at=answered_at)
    await tickets.created(ticket)
    data = await sla.updated(ticket.id)
    assert data["first_response_status"] == "met"
    assert parse(data["first_response_at"]) == answered_at


async def test_pending_status_pauses_sla_and_leaving_it_resumes(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = await tickets.created(new_ticket(created_at=datetime.now(UTC) - timedelta(hours=1)))
    first = await sla.updated(ticket.id)
    # when the ticket waits on the customer for ten minutes
    paused_at = datetime.now(UTC) - timedelta(minutes=10)
    await tickets.updated(ticket, at=paused_at, status=TicketStatus.PENDING)
    paused = await sla.updated(ticket.id, version=2)
    assert paused["is_paused"] is True
    await tickets.updated(ticket, status=TicketStatus.OPEN)
    resumed = await sla.updated(ticket.id, version=3)
    # then both deadlines moved out by the paused time
    assert resumed["is_paused"] is False
    assert 595 <= resumed["total_paused_seconds"] <= 620
    moved = parse(resumed["resolution_deadline"]) - parse(first["resolution_deadline"])
    assert timedelta(seconds=595) <= moved <= timedelta(seconds=620)


async def test_a_customer_message_resumes_a_paused_clock(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    await tickets.updated(ticket, status=TicketStatus.PENDING)
    assert (await sla.updated(ticket.id, version=2))["is_paused"] is True
    await tickets.message(ticket, from_agent=False)
    assert (await sla.updated(ticket.id, version=3))["is_paused"] is False


async def test_resolving_meets_the_resolution_and_reopening_clears_it(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    await tickets.updated(ticket, status=TicketStatus.RESOLVED)
    resolved = await sla.updated(ticket.id, version=2)
    assert resolved["resolution_status"] == "met"
    assert resolved["resolved_at"] is not None
    # a ticket resolved without an agent message settles the first-response clock too
    assert resolved["first_response_status"] == "met"
    await tickets.updated(ticket, status=TicketStatus.OPEN)
    reopened = await sla.updated(ticket.id, version=3)
    assert reopened["resolved_at"] is None
    assert reopened["resolution_status"] == "pending"


async def test_sla_decided_follows_outcomes_only(tickets: Any, sla: Any, new_ticket: Any) -> None:
    # given a new ticket (its clock starts pending: sla.updated, no outcome yet)
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    # when a customer writes (nothing decided), then an agent answers (first response met)
    await tickets.message(ticket, from_agent=False)
    await tickets.message(ticket, from_agent=True)
    [met] = await sla.wait("sla.decided", ticket.id, version=2)
    assert met["first_response_status"] == "met"
    # when it is resolved (resolution met), then reopened (undecided again)
    await tickets.updated(ticket, status=TicketStatus.RESOLVED)
    await sla.wait("sla.decided", ticket.id, version=3)
    await tickets.updated(ticket, status=TicketStatus.OPEN)
    reopened = (await sla.wait("sla.decided", ticket.id, version=4))[-1]
    assert reopened["resolution_status"] == "pending"
    # then sla.decided came with the three outcome changes only, beside their sla.updated
    assert [d["version"] for d in sla.all("sla.decided", ticket.id)] == [2, 3, 4]
    assert [d["version"] for d in sla.all("sla.updated", ticket.id)] == [1, 2, 3, 4]


async def test_resolving_after_the_deadline_breaches_the_resolution(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = new_ticket(priority=TicketPriority.URGENT)
    ticket.created_at = datetime.now(UTC) - timedelta(hours=9)
    await tickets.created(ticket)
    await sla.updated(ticket.id)
    await tickets.updated(ticket, status=TicketStatus.CLOSED)
    data = await sla.updated(ticket.id, version=2)
    assert data["resolution_status"] == "breached"


async def test_a_priority_change_recomputes_deadlines_from_creation(
    tickets: Any, sla: Any, new_ticket: Any
) -> None:
    ticket = await tickets.created(new_ticket(priority=TicketPriority.LOW))
    await sla.updated(ticket.id)
    await tickets.updated(ticket, priority=TicketPriority.HIGH)
    data = await sla.updated(ticket.id, version=2)
    assert data["priority"] == "high"
    assert parse(data["first_response_deadline"]) == ticket.created_at + timedelta(hours=2)
    assert parse(data["resolution_deadline"]) == ticket.created_at + timedelta(hours=24)


async def test_an_older_ticket_version_is_ignored(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    await tickets.updated(ticket, priority=TicketPriority.URGENT)  # version 2
    await sla.updated(ticket.id, version=2)
    # when a stale version 2 saying "low" arrives after version 3 saying "high"
    await tickets.updated(ticket, priority=TicketPriority.HIGH)  # version 3
    await sla.updated(ticket.id, version=3)
    ticket.version = 1
    await tickets.updated(ticket, priority=TicketPriority.LOW)  # version 2 again
    marker = await tickets.created(new_ticket())
    await sla.updated(marker.id)  # the stale event was consumed before this one
    body = (await client.get(f"/api/tickets/{ticket.id}/sla", headers=senior)).json()
    assert body["priority"] == "high"
    assert body["version"] == 3


async def test_a_deleted_tickets_sla_is_gone(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    await tickets.deleted(ticket)

    async def gone() -> None:
        response = await client.get(f"/api/tickets/{ticket.id}/sla", headers=senior)
        assert response.status_code == 404

    await eventually(gone, timeout=10)


async def test_an_update_that_overtakes_its_creation_starts_the_clock(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    # given ticket.updated (version 2, now high priority) is consumed before ticket.created
    ticket = new_ticket(priority=TicketPriority.LOW)
    await tickets.updated(ticket, priority=TicketPriority.HIGH)
    started = await sla.updated(ticket.id)
    assert started["priority"] == "high"
    assert parse(started["first_response_deadline"]) == ticket.created_at + timedelta(hours=2)
    # when the older ticket.created (version 1, low) arrives, then it changes nothing
    ticket.version, ticket.priority = 1, TicketPriority.LOW
    await tickets.created(ticket)
    marker = await tickets.created(new_ticket())
    await sla.updated(marker.id)
    body = (await client.get(f"/api/tickets/{ticket.id}/sla", headers=senior)).json()
    assert (body["priority"], body["version"]) == ("high", 1)


async def test_a_deletion_seen_before_the_creation_starts_no_clock(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    # given a ticket's deletion is consumed first (a marker deleted behind it on the same
    # single-partition topic shows when)
    marker = await tickets.created(new_ticket())
    await sla.updated(marker.id)
    ticket = new_ticket()
    await tickets.deleted(ticket)  # version 2
    await tickets.deleted(marker)

    async def marker_gone() -> None:
        response = await client.get(f"/api/tickets/{marker.id}/sla", headers=senior)
        assert response.status_code == 404

    await eventually(marker_gone, timeout=10)
    # when its creation (version 1) arrives, then no clock starts
    ticket.version = 1
    await tickets.created(ticket)
    later = await tickets.created(new_ticket())
    await sla.updated(later.id)
    response = await client.get(f"/api/tickets/{ticket.id}/sla", headers=senior)
    assert response.status_code == 404
    assert sla.all("sla.updated", ticket.id) == []
