"""Reports for managers: a known dataset of ticket, message, SLA and rating events through
Kafka into the shared app, then the figures (percentiles too), RBAC, CSV and bad periods."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from quimbi_agents.models import Agent, TicketAssignment
from quimbi_agents.reports import projection
from quimbi_agents.reports.models import ReportTicket
from quimbi_common.enums import Role
from quimbi_common.events import (
    EventType,
    SlaTrackingData,
    TicketDeletedData,
    TicketRatedData,
)
from quimbi_common.testing import SigningKeys, eventually, message_data, unique

pytestmark = pytest.mark.service

BASE = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
PERIOD = {"from": "2031-03-02T00:00:00Z", "to": "2031-03-09T00:00:00Z"}


@pytest.fixture
def manager(keys: SigningKeys) -> dict[str, str]:
    return keys.headers(Role.MANAGER)


def sla(ticket: Any, version: int, fr: str, res: str, fr_after: int, res_after: int) -> Any:
    created = ticket.created_at
    return SlaTrackingData(
        ticket_id=ticket.id,
        priority=ticket.priority,
        first_response_status=fr,  # type: ignore[arg-type]
        first_response_deadline=created + timedelta(hours=1),
        first_response_at=created + timedelta(seconds=fr_after) if fr == "met" else None,
        resolution_status=res,  # type: ignore[arg-type]
        resolution_deadline=created + timedelta(hours=2),
        resolved_at=created + timedelta(seconds=res_after) if res == "met" else None,
        version=version,
    )


async def report(h: Any, kind: str, department: str) -> dict[str, Any]:
    """The report as an admin sees it (managers and admins alike: the RBAC test below)."""
    params = {**PERIOD, "department": department}
    response = await h.client.get(f"/api/reports/{kind}", headers=h.admin, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_figures_per_agent_and_per_team_from_the_event_stream(h: Any, publish: Any) -> None:
    team = unique("team-")
    a, b = await h.agents_fast({"department": team}, {"department": team})
    (other,) = await h.agents_fast({"department": unique("other-")})
    first_responses = [60, 120, 180, 240, 300]
    resolutions = [600, 1200, 1800, 2400, 3000]
    tickets = []
    for i, (fr, res) in enumerate(zip(first_responses, resolutions, strict=True)):
        ticket = h.ticket(assigned_agent_id=a["id"], created_at=BASE + timedelta(hours=i))
        tickets.append(ticket)
        at = ticket.created_at
        await publish(EventType.TICKET_CREATED, ticket)
        await publish(EventType.MESSAGE_ADDED, message_data(ticket.id, at, from_agent=False))
        # a later agent message first: the earliest one is the first response, whatever order
        await publish(
            EventType.MESSAGE_ADDED,
            message_data(ticket.id, at + timedelta(hours=3), author=b["id"]),
        )
        await publish(
            EventType.MESSAGE_ADDED,
            message_data(ticket.id, at + timedelta(seconds=fr), author=a["id"]),
        )
        resolved = h.updated(ticket, status="resolved", updated_at=at + timedelta(seconds=res))
        await publish(EventType.TICKET_UPDATED, resolved)
        await publish(EventType.TICKET_UPDATED, resolved)  # the same resolution again
    # SLA: first response met 3, breached 1; resolution met 2, breached 2
    outcomes = [("met", "met"), ("met", "met"), ("met", "breached"), ("breached", "breached")]
    for ticket, (fr, res), fr_s, res_s in zip(
        tickets, outcomes, first_responses, resolutions, strict=False
    ):
        await publish(EventType.SLA_DECIDED, sla(ticket, 3, fr, res, fr_s, res_s))
        await publish(EventType.SLA_DECIDED, sla(ticket, 1, "pending", "pending", 0, 0))  # stale
    final = sla(tickets[3], 3, "breached", "breached", 0, 0)
    await publish(EventType.SLA_DECIDED, final)
    for ticket, stars in zip(tickets, [5, 4, 4], strict=False):
        await publish(
            EventType.TICKET_RATED,
            TicketRatedData(
                ticket_id=ticket.id,
                customer_id="c",
                rating=stars,
                agent_id=a["id"],
                rated_at=BASE + timedelta(days=1),
            ),
        )
    # backlog: two open tickets A holds now, and one deleted (not counted)
    for priority in ("high", "urgent", "low"):
        await publish(
            EventType.TICKET_CREATED, h.ticket(assigned_agent_id=a["id"], priority=priority)
        )
    gone = h.ticket(assigned_agent_id=a["id"], priority="low")
    await publish(EventType.TICKET_CREATED, gone)
    await publish(
        EventType.TICKET_DELETED,
        TicketDeletedData(id=gone.id, version=2, deleted_at=datetime.now(UTC)),
    )
    # B resolves one in the period and one outside it; the other team's agent one
    inside = h.ticket(assigned_agent_id=b["id"], created_at=BASE)
    outside = h.ticket(assigned_agent_id=b["id"], created_at=BASE - timedelta(days=30))
    theirs = h.ticket(assigned_agent_id=other["id"], created_at=BASE)
    for ticket, res in ((inside, 100), (outside, 100), (theirs, 50)):
        await publish(EventType.TICKET_CREATED, ticket)
        at = ticket.created_at
        await publish(EventType.MESSAGE_ADDED, message_data(ticket.id, at + timedelta(seconds=30)))
        await publish(
            EventType.TICKET_UPDATED,
            h.updated(ticket, status="resolved", updated_at=at + timedelta(seconds=res)),
        )

    expected_a = {
        "tickets_handled": 5,
        "first_response": {"count": 5, "median_seconds": 180.0, "p90_seconds": 276.0},
        "resolution": {"count": 5, "median_seconds": 1800.0, "p90_seconds": 2760.0},
        "sla": {
            "first_response": {"met": 3, "breached": 1, "attainment_percent": 75.0},
            "resolution": {"met": 2, "breached": 2, "attainment_percent": 50.0},
        },
        "backlog": {"low": 1, "normal": 0, "high": 1, "urgent": 1, "total": 3},
        "csat": {
            "count": 3,
            "mean": 4.33,
            "distribution": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1},
        },
    }
    expected_b = {
        "tickets_handled": 1,
        "first_response": {"count": 1, "median_seconds": 30.0, "p90_seconds": 30.0},
        "resolution": {"count": 1, "median_seconds": 100.0, "p90_seconds": 100.0},
        "sla": {
            "first_response": {"met": 0, "breached": 0, "attainment_percent": None},
            "resolution": {"met": 0, "breached": 0, "attainment_percent": None},
        },
        "backlog": {"low": 0, "normal": 0, "high": 0, "urgent": 0, "total": 0},
        "csat": {"count": 0, "mean": None, "distribution": dict.fromkeys("12345", 0)},
    }

    async def agents_settled() -> None:
        # every figure at once: events of different tickets are applied in no fixed order,
        # so the report is awaited until it shows them all (a wrong figure never settles)
        body = await report(h, "agents", team)
        rows = {row.pop("agent_id"): row for row in body["agents"]}
        assert set(rows) == {a["id"], b["id"]}
        for agent, expected in ((a, expected_a), (b, expected_b)):
            figures = {k: v for k, v in rows[agent["id"]].items() if k in expected}
            assert figures == expected

    await eventually(agents_settled, timeout=90, interval=0.5)

    body = await report(h, "teams", team)
    assert body["from"] == "2031-03-02T00:00:00Z"
    assert body["to"] == "2031-03-09T00:00:00Z"
    (row,) = body["teams"]
    assert (row["department"], row["agents"], row["tickets_handled"]) == (team, 2, 6)
    # over the team's six tickets, not a mean of the agents' figures
    assert row["first_response"] == {"count": 6, "median_seconds": 150.0, "p90_seconds": 270.0}
    assert row["resolution"] == {"count": 6, "median_seconds": 1500.0, "p90_seconds": 2700.0}
    assert row["sla"]["resolution"]["attainment_percent"] == 50.0
    assert row["backlog"]["total"] == 3
    assert row["csat"]["count"] == 3


@pytest.mark.parametrize("role", [Role.AGENT, Role.SENIOR_AGENT, Role.TEAM_LEAD])
@pytest.mark.parametrize("kind", ["agents", "teams"])
async def test_only_managers_and_admins_see_reports(
    client: httpx.AsyncClient, keys: SigningKeys, role: Role, kind: str
) -> None:
    response = await client.get(f"/api/reports/{kind}", headers=keys.headers(role))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    for allowed in (Role.MANAGER, Role.ADMIN):
        ok = await client.get(f"/api/reports/{kind}", headers=keys.headers(allowed))
        assert ok.status_code == 200, ok.text
    assert (await client.get(f"/api/reports/{kind}")).status_code == 401


async def test_csv_export_has_fixed_headers_and_defuses_formulas(
    h: Any, manager: dict[str, str]
) -> None:
    team = "@" + unique("team-")
    (agent,) = await h.agents_fast({"department": team})
    hostile = '=HYPERLINK("http://evil.example","x"), "quoted"'
    async with h.sessions() as session, session.begin():
        row = await session.get(Agent, agent["id"])
        row.name = hostile
    by_param = await h.client.get(
        "/api/reports/agents", headers=manager, params={"department": team, "format": "csv"}
    )
    by_accept = await h.client.get(
        "/api/reports/agents",
        headers={**manager, "Accept": "text/csv"},
        params={"department": team},
    )
    for response in (by_param, by_accept):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        assert response.text.endswith("\r\n")
        assert "\r\n" in response.text
        header, line = list(csv.reader(io.StringIO(response.text)))
        assert header[:6] == [
            "agent_id",
            "name",
            "email",
            "department",
            "tickets_handled",
            "first_response_count",
        ]
        assert "first_response_p90_seconds" in header
        assert "csat_5" in header
        cells = dict(zip(header, line, strict=True))
        assert cells["name"] == "'" + hostile
        assert cells["department"] == "'" + team
        assert cells["agent_id"] == agent["id"]
        assert cells["tickets_handled"] == "0"
        assert cells["csat_mean"] == ""
    teams = await h.client.get(
        "/api/reports/teams", headers=manager, params={"department": team, "format": "csv"}
    )
    header, line = list(csv.reader(io.StringIO(teams.text)))
    assert header[:3] == ["department", "agents", "tickets_handled"]
    assert line[:2] == ["'" + team, "1"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2031-03-09T00:00:00Z", "to": "2031-03-02T00:00:00Z"},  # backwards
        {"from": "2031-03-02T00:00:00Z", "to": "2031-03-02T00:00:00Z"},  # empty
        {"from": "2030-01-01T00:00:00Z", "to": "2031-03-02T00:00:00Z"},  # over 366 days
        {"from": "yesterday"},
        {"to": "1900-01-01T00:00:00Z"},
        {"to": "0001-01-01T00:00:00Z"},  # `from` would be before year 1
        {"from": "9999-12-31T00:00:00Z"},
        {"department": "a\u0000b"},
        {"department": ""},
        {"format": "xml"},
    ],
)
async def test_a_bad_period_or_filter_is_a_422(
    client: httpx.AsyncClient, manager: dict[str, str], params: Any
) -> None:
    for kind in ("agents", "teams"):
        response = await client.get(f"/api/reports/{kind}", headers=manager, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_default_period_is_the_last_seven_days(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    response = await client.get("/api/reports/teams", headers=manager)
    assert response.status_code == 200
    body = response.json()
    start = datetime.fromisoformat(body["from"])
    end = datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=7)
    assert abs((datetime.now(UTC) - end).total_seconds()) < 60


async def test_the_projection_takes_events_in_any_order_and_batch(h: Any) -> None:
    """The projection's own rules, applied as consumer batches would (no Kafka)."""
    (a,) = await h.agents_fast({})
    ticket = h.ticket(assigned_agent_id=a["id"], created_at=BASE)
    early, late = BASE + timedelta(seconds=90), BASE + timedelta(seconds=900)
    first = h.updated(ticket, status="resolved", updated_at=BASE + timedelta(hours=1))
    reopened = h.updated(first, status="open", updated_at=BASE + timedelta(hours=2))
    again = h.updated(reopened, status="closed", updated_at=BASE + timedelta(hours=3))
    batches: list[tuple[Any, list[Any]]] = [
        # messages before the ticket is known, the later one first, in one batch and after
        (projection.apply_messages, [message_data(ticket.id, late, author=a["id"])]),
        (
            projection.apply_messages,
            [message_data(ticket.id, late), message_data(ticket.id, early, author=a["id"])],
        ),
        (projection.apply_tickets, [again, ticket]),  # the second resolution before the first
        (projection.apply_tickets, [first, reopened]),
        (projection.apply_slas, [sla(ticket, 4, "met", "breached", 90, 0)]),
        (projection.apply_slas, [sla(ticket, 2, "pending", "pending", 0, 0)]),
    ]
    for apply, batch in batches:
        async with h.units.begin() as unit:
            await apply(unit.session, batch)
    async with h.sessions() as session:
        row = await session.get(ReportTicket, ticket.id)
    assert row is not None
    assert row.created_at == BASE
    assert (row.first_response_at, row.first_response_by) == (early, a["id"])
    assert (row.resolved_at, row.resolution_version) == (again.updated_at, again.version)
    assert row.resolved_by == a["id"]
    assert (row.sla_version, row.first_response_status, row.resolution_status) == (
        4,
        "met",
        "breached",
    )


async def test_a_ticket_and_its_messages_are_recorded_once_and_feed_both_projections(
    h: Any, publish: Any
) -> None:
    """Issue 15: the service's own handlers feed the report projection, so an event is one
    `processed_events` row here (the report's own handlers made it two)."""
    agent = (await h.agents_fast({}))[0]
    ticket = h.ticket(assigned_agent_id=agent["id"], created_at=BASE)
    # when a ticket, a customer message and the agent's reply arrive
    await publish(EventType.TICKET_CREATED, ticket)
    await publish(EventType.MESSAGE_ADDED, message_data(ticket.id, BASE, from_agent=False))
    reply_at = BASE + timedelta(minutes=5)
    await publish(EventType.MESSAGE_ADDED, message_data(ticket.id, reply_at, author=agent["id"]))

    async def applied() -> tuple[Any, list[Any]]:
        async with h.sessions() as session:
            row = await session.get(ReportTicket, ticket.id, populate_existing=True)
            assert row is not None
            assert row.first_response_at == reply_at
            assignment = await session.scalar(
                sa.select(TicketAssignment).where(TicketAssignment.ticket_id == ticket.id)
            )
            assert assignment is not None  # the service's own projection has it too
            everything = sa.text("SELECT consumer, event_id FROM processed_events")
            recorded = await session.execute(everything)
            return row, list(recorded)

    _, recorded = await eventually(applied, timeout=30)
    # then each event is one row: these three, and every other event this app consumed
    per_event: dict[Any, list[str]] = {}
    for consumer, event_id in recorded:
        per_event.setdefault(event_id, []).append(consumer)
    assert per_event
    assert {e: c for e, c in per_event.items() if len(c) > 1} == {}
