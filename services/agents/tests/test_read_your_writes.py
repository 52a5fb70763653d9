"""Read-your-writes on the assignment routes: a ticket the service has not heard of yet is
waited for (woken by the consumer's commit), and an unknown one is still a 404 within the
documented bound (READ_YOUR_WRITES_WAIT_SECONDS, 2 s), at once when its id is old."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from quimbi_common import ids
from quimbi_common.enums import Role
from quimbi_common.testing import eventually

pytestmark = pytest.mark.service


async def test_an_assignment_for_a_ticket_whose_event_is_on_its_way_waits_for_it(
    h: Any, publish: Any
) -> None:
    # given a consumer that has joined its group (a first event is through)
    senior, agent = await h.agents_fast({"role": Role.SENIOR_AGENT}, {})
    warm_up = h.ticket()
    await publish("ticket.created", warm_up)

    async def consumed() -> None:
        history = f"/api/tickets/{warm_up.id}/assignments"
        response = await h.client.get(history, headers=senior["headers"])
        assert response.status_code == 200

    await eventually(consumed, timeout=30)
    # and a ticket just created by the tickets service, its ticket.created not yet consumed
    ticket = h.ticket().model_copy(update={"id": ids.new_id("ticket")})
    # when a senior assigns it at once, and the event arrives while the request waits
    started = time.monotonic()
    request = asyncio.create_task(
        h.client.post(
            f"/api/tickets/{ticket.id}/assign",
            headers=senior["headers"],
            json={"agent_id": agent["id"]},
        )
    )
    await asyncio.sleep(0.3)
    assert not request.done()  # it is waiting, not answering 404
    await publish("ticket.created", ticket)
    response = await request
    # then it is answered once the consumer has applied the event, within the bound
    assert response.status_code == 201, response.text
    assert response.json()["agent_id"] == agent["id"]
    assert time.monotonic() - started < h.settings.read_your_writes_wait_seconds


async def test_an_unknown_ticket_is_still_a_404_within_the_bound(h: Any) -> None:
    # given ticket ids nobody created: a new one, an old one, and one no service issues
    [senior] = await h.agents_fast({"role": Role.SENIOR_AGENT})
    bound = h.settings.read_your_writes_wait_seconds
    old_ms = int((time.time() - 60) * 1000)
    cases = {
        "new": ids.new_id("ticket"),
        "old": f"ticket_{ids.uuid7(now_ms=old_ms).hex}",
        "not an id": "no-such-ticket",
    }
    took = {}
    for case, ticket_id in cases.items():
        # when the history is asked for
        started = time.monotonic()
        response = await h.client.get(
            f"/api/tickets/{ticket_id}/assignments", headers=senior["headers"]
        )
        took[case] = time.monotonic() - started
        # then it is a 404 problem
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    # and only the new id waited, about the bound (the slack is a loaded machine's, not the
    # service's); the others did not wait for it
    assert bound * 0.9 <= took["new"] <= bound + 3.0
    assert took["old"] < bound * 0.9
    assert took["not an id"] < bound * 0.9
