"""The live stream's pure rules: what an event shows, who may see it, ids and framing."""

from __future__ import annotations

import pytest

from quimbi_tickets.live.items import control, frame, item_for, may_see, stream_key, with_assignee

pytestmark = pytest.mark.unit


def _ticket_event(topic: str, **data: object) -> dict[str, object]:
    ticket = {
        "id": "ticket_1",
        "customer_id": "cust_1",
        "subject": "Where is my parcel",
        "status": "open",
        "priority": "high",
        "assigned_agent_id": "agent_b",
        "version": 3,
        "customer": {"id": "cust_1", "name": "Casey", "email": "c@example.com"},
        **data,
    }
    return {"id": "ev-1", "time": "2026-11-30T12:00:00Z", "data": ticket}


def test_a_reassignment_is_shown_to_the_new_and_the_previous_assignee() -> None:
    moved = {"assigned_agent_id": {"old": "agent_a", "new": "agent_b"}}
    item = item_for("ticket.updated", _ticket_event("ticket.updated", changes=moved))
    assert item is not None
    assert (item.assignee, item.previous_assignee) == ("agent_b", "agent_a")
    assert item.payload["changed"] == ["assigned_agent_id"]
    assert item.payload["ticket"]["customer_name"] == "Casey"
    fields = item.fields()
    assert may_see("agent_a", False, fields["a"], fields["p"])
    assert may_see("agent_b", False, fields["a"], fields["p"])
    assert not may_see("agent_c", False, fields["a"], fields["p"])
    assert may_see("senior", True, fields["a"], fields["p"])


def test_an_unassigned_or_deleted_ticket_is_for_those_who_see_everything() -> None:
    deleted = item_for("ticket.deleted", {"id": "e", "data": {"id": "ticket_1", "version": 4}})
    assert deleted is not None
    assert deleted.fields()["a"] == ""
    assert not may_see("agent_a", False, "", "")
    assert not may_see(None, False, "", "")
    assert may_see("senior", True, "", "")


def test_scores_messages_and_sla_alerts_get_their_assignee_from_the_feed() -> None:
    scored = item_for(
        "ticket.scored",
        {"id": "e", "data": {"ticket_id": "ticket_1", "smart_score": 4.2, "parts": {"wait": 1}}},
    )
    said = item_for(
        "message.added",
        {"id": "e", "data": {"ticket_id": "ticket_1", "content": "x" * 500, "from_agent": False}},
    )
    alert = item_for(
        "sla.breached", {"id": "e", "data": {"ticket_id": "ticket_1", "metric": "resolution"}}
    )
    assert scored is not None
    assert said is not None
    assert alert is not None
    assert scored.assignee is None
    assert len(said.payload["message"]["preview"]) == 200
    assert alert.payload["sla"]["metric"] == "resolution"
    given = with_assignee(scored, "agent_a")
    assert (given.assignee, given.payload["assigned_agent_id"]) == ("agent_a", "agent_a")
    assert item_for("agent.created", {"id": "e", "data": {"id": "a"}}) is None
    assert item_for("ticket.scored", {"id": "e", "data": "not an object"}) is None


def test_stream_ids_compare_as_numbers_and_frames_are_sse() -> None:
    assert stream_key("1700000000000-10") > stream_key("1700000000000-9")
    assert stream_key("1700000000001-0") > stream_key("1700000000000-99")
    assert frame("1-0", "ticket.created", '{"a":1}') == (
        b'id: 1-0\nevent: ticket.created\ndata: {"a":1}\n\n'
    )
    assert control("end", {"reason": "revoked"}) == b'event: end\ndata: {"reason":"revoked"}\n\n'
