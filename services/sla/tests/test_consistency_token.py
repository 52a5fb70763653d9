"""Consistency tokens on the SLA routes (issue 14): a read that carries the token of a write
waits, woken by the consumer's commit, until the SLA service applied that write's events; a
read without one, or for events this service does not consume, pays nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from quimbi_common.consistency import HEADER
from quimbi_common.enums import Role, TicketPriority
from quimbi_common.events import Contract, TicketUpdatedData, build_event
from quimbi_common.testing import SigningKeys

pytestmark = pytest.mark.service


async def _send(tickets: Any, topic: str, data: Contract) -> str:
    """Publish as the tickets service would; the entry its write's token names."""
    key, event = build_event(topic, data, source="tickets")
    await tickets.producer.send_and_wait(
        tickets.settings.topic(topic), value=event.model_dump_json().encode(), key=key.encode()
    )
    return f"{topic}/{event.id}"


def _update(ticket: Any, **changes: Any) -> TicketUpdatedData:
    old = {name: getattr(ticket, name) for name in changes}
    for name, value in changes.items():
        setattr(ticket, name, value)
    ticket.version += 1
    delta = {name: {"old": old[name], "new": value} for name, value in changes.items()}
    return TicketUpdatedData(**ticket.data(), changes=delta)


async def test_a_read_with_the_token_of_a_priority_change_shows_the_new_deadlines(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    # given a ticket the SLA service tracks at low priority
    ticket = await tickets.created(new_ticket(priority=TicketPriority.LOW))
    await sla.updated(ticket.id)
    path = f"/api/tickets/{ticket.id}/sla"
    # and a priority change (high) whose event has not been published yet
    data = _update(ticket, priority=TicketPriority.HIGH)
    key, event = build_event("ticket.updated", data, source="tickets")
    token = f"ticket.updated/{event.id}"
    # when the SLA is read with the change's token before the event arrives
    waiting = asyncio.create_task(client.get(path, headers={**senior, HEADER: token}))
    # then a read without the token answers at once, still low (a known id pays nothing)
    started = time.monotonic()
    plain = await client.get(path, headers=senior)
    assert plain.status_code == 200
    assert plain.json()["priority"] == "low"
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.3)
    assert not waiting.done()  # the read with the token waits instead of answering stale
    await tickets.producer.send_and_wait(
        tickets.settings.topic("ticket.updated"),
        value=event.model_dump_json().encode(),
        key=key.encode(),
    )
    # and once the consumer applied it, the read with the token shows the new deadlines
    response = await waiting
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == "high"
    assert response.json()["first_response"]["target_seconds"] == 2 * 3600


async def test_a_token_for_an_event_never_applied_is_a_503_within_the_bound(
    tickets: Any,
    sla: Any,
    new_ticket: Any,
    client: httpx.AsyncClient,
    senior: dict[str, str],
    sla_settings: Any,
) -> None:
    # given a tracked ticket
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    path = f"/api/tickets/{ticket.id}/sla"
    bound = sla_settings.read_your_writes_wait_seconds
    # when it is read with the token of a ticket event that never arrives
    started = time.monotonic()
    response = await client.get(path, headers={**senior, HEADER: f"ticket.updated/{uuid.uuid4()}"})
    took = time.monotonic() - started
    # then it is a 503 problem with Retry-After after the bound, never a stale 200
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert bound - 0.1 <= took <= bound + 1.5
    # and tokens naming what this service does not consume, or garbage, cost nothing
    for token in (f"agent.created/{uuid.uuid4()}", "not a token", f"ticket.updated/{'x' * 40}"):
        started = time.monotonic()
        response = await client.get(path, headers={**senior, HEADER: token})
        assert response.status_code == 200, (token, response.text)
        assert time.monotonic() - started < 1.0


def _dropped() -> float:
    """ticket.updated events this process's consumer dropped as news for tickets alone."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "events_consumed"
        for sample in metric.samples
        if sample.name == "events_consumed_total"
        and sample.labels.get("topic") == "ticket.updated"
        and sample.labels.get("outcome") == "producer_only"
    )


async def test_an_update_of_fields_only_tickets_holds_is_dropped_and_the_next_one_applies(
    tickets: Any, sla: Any, new_ticket: Any, client: httpx.AsyncClient, senior: dict[str, str]
) -> None:
    """No write's token names such an update (the outbox leaves it out), so nothing waits
    for it: the consumer drops it unrecorded, and the stream moves on behind it."""
    # given a tracked ticket and an update of fields the SLA service does not hold
    ticket = await tickets.created(new_ticket(priority=TicketPriority.LOW))
    await sla.updated(ticket.id)
    dropped = _dropped()
    ticket.version += 1
    estimate = TicketUpdatedData(
        **ticket.data(),
        customer_sentiment=0.1,
        changes={"customer_sentiment": {"old": 0.5, "new": 0.1}},
    )
    await _send(tickets, "ticket.updated", estimate)
    # when a priority change follows it (same key: behind it) and is read with its token
    entry = await _send(tickets, "ticket.updated", _update(ticket, priority=TicketPriority.HIGH))
    response = await client.get(
        f"/api/tickets/{ticket.id}/sla", headers={**senior, HEADER: f"junk,{entry}"}
    )
    # then the change is shown, and the estimate was dropped, not applied
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == "high"
    assert _dropped() == dropped + 1


def _waits() -> float:
    """Token waits this process has finished, caught up or not (each records one)."""
    return sum(
        REGISTRY.get_sample_value("projection_wait_seconds_count", {"outcome": outcome}) or 0.0
        for outcome in ("caught_up", "behind")
    )


async def test_a_request_that_is_not_authenticated_never_waits_for_its_token(
    tickets: Any,
    sla: Any,
    new_ticket: Any,
    client: httpx.AsyncClient,
    sla_settings: Any,
) -> None:
    # given a tracked ticket and a token naming a ticket event that never arrives
    ticket = await tickets.created(new_ticket())
    await sla.updated(ticket.id)
    path = f"/api/tickets/{ticket.id}/sla"
    token = {HEADER: f"ticket.updated/{uuid.uuid4()}"}
    forged = SigningKeys().headers(Role.ADMIN)  # well-formed, signed by a key nobody trusts
    waits = _waits()
    for credentials in (forged, {"X-API-Key": "not-the-key"}, {}):
        # when it is sent with a forged, a wrong or no credential
        started = time.monotonic()
        response = await client.get(path, headers={**credentials, **token})
        took = time.monotonic() - started
        # then it is a 401 without waiting for the token (a wait lasts the whole bound)
        assert response.status_code == 401, (credentials, response.text)
        assert took < sla_settings.read_your_writes_wait_seconds
    assert _waits() == waits
