"""Hostile input (issue #13): a NUL in the path or the query is a 422, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from quimbi_common.testing import assert_problem

pytestmark = pytest.mark.service


@pytest.mark.parametrize(
    "url",
    ["/api/tickets/a%00b/score-breakdown", "/api/tickets/%00/score-breakdown?topic_alerts=x"],
)
async def test_a_nul_in_the_ticket_id_is_422(scoring: Any, url: str) -> None:
    response = await scoring.client.get(url, headers=scoring.headers("admin"))
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path"]


@pytest.mark.parametrize("topic_alerts", ["a%00", "refund,%00", "%00%00"])
async def test_a_nul_in_topic_alerts_is_422(
    scoring: Any, new_ticket: Any, topic_alerts: str
) -> None:
    # given a scored ticket
    created = new_ticket()
    await scoring.send("ticket.created", created)
    await scoring.wait_scored(created.id)
    # when its breakdown is asked with a NUL in a keyword
    response = await scoring.client.get(
        f"/api/tickets/{created.id}/score-breakdown?topic_alerts={topic_alerts}",
        headers=scoring.headers("admin"),
    )
    # then it is a 422 naming the query
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query"]
