"""GET /api/tickets/{id}/score-breakdown: the parts, the topic-alert boost, who may see it."""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.consistency import HEADER
from quimbi_common.enums import TicketPriority
from quimbi_common.testing import unique

pytestmark = pytest.mark.service


async def _scored_ticket(scoring: Any, new_ticket: Any, **fields: Any) -> Any:
    created = new_ticket(**fields)
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    return created


async def _get(scoring: Any, ticket_id: str, headers: dict[str, str], **params: str) -> Any:
    return await scoring.client.get(
        f"/api/tickets/{ticket_id}/score-breakdown", headers=headers, params=params
    )


async def test_breakdown_lists_every_part_with_inputs_and_weights(
    scoring: Any, new_ticket: Any
) -> None:
    # given an urgent ticket waiting 200 h for a customer worth 250 with churn risk 0.5
    created = await _scored_ticket(
        scoring,
        new_ticket,
        priority=TicketPriority.URGENT,
        hours_ago=200,
        lifetime_value=250.0,
        churn_risk=0.5,
    )
    # when a senior agent asks why it scores what it does
    response = await _get(scoring, created.id, scoring.headers("senior_agent"))
    # then every part is there: 4 + 3 + 0 + 0.5 + 1.5
    assert response.status_code == 200
    body = response.json()
    assert body["smart_score"] == body["total"] == 9.0
    assert body["matches_topic_alert"] is False
    assert {name: part["points"] for name, part in body["parts"].items()} == {
        "priority": 4.0,
        "wait": 3.0,
        "sentiment": 0.0,
        "value": 0.5,
        "churn": 1.5,
        "topic_alert": 0.0,
    }
    assert body["parts"]["wait"]["weight"] == 1.5
    assert body["parts"]["wait"]["max_points"] == 3.0
    assert body["parts"]["wait"]["inputs"]["hours_waiting"] == pytest.approx(200, abs=0.1)
    assert body["parts"]["value"]["inputs"] == {
        "lifetime_value": 250.0,
        "high_value_ltv": 1000.0,
        "status": "open",
    }
    assert body["parts"]["churn"]["weight"] == 3.0
    assert body["parts"]["sentiment"]["inputs"]["customer_sentiment"] == 0.5
    assert body["version"] == 1
    assert body["computed_at"]


async def test_a_topic_alert_in_the_subject_or_a_message_adds_the_boost(
    scoring: Any, new_ticket: Any, new_message: Any
) -> None:
    # given a ticket about payments with a message mentioning a refund
    created = await _scored_ticket(scoring, new_ticket, subject="Payment not processing")
    added = await scoring.send(
        "message.added", new_message(created.id, content="I want a REFUND today")
    )
    await scoring.handled(added)
    senior = scoring.headers("senior_agent")
    # when asked with keywords that appear in the subject, a message, or nowhere
    for keywords, matched in (
        ("payment", ["payment"]),
        ("Refund, outage", ["Refund"]),
        ("outage,delivery", []),
    ):
        body = (await _get(scoring, created.id, senior, topic_alerts=keywords)).json()
        # then the boost applies exactly when something matched
        assert body["matched_topic_alerts"] == matched
        assert body["matches_topic_alert"] is bool(matched)
        boost = 5.0 if matched else 0.0
        assert body["topic_alert_boost"] == body["parts"]["topic_alert"]["points"] == boost
        assert body["total"] == round(body["smart_score"] + boost, 2)


async def test_an_agent_sees_only_the_breakdown_of_tickets_assigned_to_them(
    scoring: Any, new_ticket: Any
) -> None:
    assignee = unique("agent-")
    created = await _scored_ticket(scoring, new_ticket, assigned_agent_id=assignee)
    mine = await _get(scoring, created.id, scoring.headers("agent", assignee))
    theirs = await _get(scoring, created.id, scoring.headers("agent", unique("agent-")))
    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert theirs.headers["content-type"] == "application/problem+json"


async def test_an_unknown_ticket_is_not_found(scoring: Any) -> None:
    response = await _get(scoring, unique("nope-"), scoring.headers("admin"))
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_the_breakdown_needs_an_agent(scoring: Any, new_ticket: Any) -> None:
    created = await _scored_ticket(scoring, new_ticket)
    anonymous = await _get(scoring, created.id, {})
    integration = await _get(
        scoring,
        created.id,
        {"X-API-Key": scoring.settings.api_key.get_secret_value()},
    )
    assert anonymous.status_code == 401
    assert integration.status_code == 403


async def test_too_many_topic_alerts_are_refused(scoring: Any, new_ticket: Any) -> None:
    created = await _scored_ticket(scoring, new_ticket)
    keywords = ",".join(f"kw{i}" for i in range(scoring.settings.topic_alerts_max_keywords + 1))
    response = await _get(scoring, created.id, scoring.headers(), topic_alerts=keywords)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "topic_alerts"]


async def test_a_transfer_is_seen_by_its_new_holder_before_tickets_republishes_it(
    scoring: Any, new_ticket: Any, new_assignment: Any
) -> None:
    # given a scored ticket its first holder (an agent) can see
    first, second = unique("agent-"), unique("agent-")
    created = await _scored_ticket(scoring, new_ticket, assigned_agent_id=first)
    # when agents gives it to the second (its event only: tickets republishes nothing)
    event_id = await scoring.send("ticket.assigned", new_assignment(created.id, second))
    token = {HEADER: f"ticket.assigned/{event_id}"}
    # then the new holder sees the breakdown at once with the assignment's token
    mine = await _get(scoring, created.id, {**scoring.headers("agent", second), **token})
    assert mine.status_code == 200, mine.text
    # and the former holder no longer does
    theirs = await _get(scoring, created.id, {**scoring.headers("agent", first), **token})
    assert theirs.status_code == 404, theirs.text
