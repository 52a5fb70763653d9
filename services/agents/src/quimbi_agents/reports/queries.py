"""The report figures, computed by PostgreSQL over the projection (percentiles with
`percentile_cont`), grouped per agent or per team (the agent's department now). Each query
groups by one of two fixed key expressions; parameters are always bound."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .schemas import Figures

Grouping = Literal["agent", "team"]
_KEYS: dict[Grouping, str] = {"agent": "a.id", "team": "a.department"}

# A figure is credited to the agent its own column names (who answered, who resolved), else
# to the agent holding the ticket now: the active assignment `ta`, else the ticket's `tp`.

_DURATIONS = """
SELECT {key} AS k, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.s) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY x.s) AS p90
FROM ({rows}) x
JOIN agents a ON a.id = x.agent_id AND a.deleted_at IS NULL {department}
GROUP BY 1
"""

_RESOLUTIONS = """
SELECT r.resolved_by AS agent_id, extract(epoch FROM r.resolved_at - r.created_at)::float8 AS s
FROM report_tickets r
WHERE r.deleted_at IS NULL AND r.created_at IS NOT NULL
  AND r.resolved_at >= :start AND r.resolved_at < :end
"""

_FIRST_RESPONSES = """
SELECT coalesce(r.first_response_by, r.resolved_by, ta.agent_id, tp.assigned_agent_id)
         AS agent_id,
       extract(epoch FROM r.first_response_at - r.created_at)::float8 AS s
FROM report_tickets r
LEFT JOIN ticket_assignments ta ON ta.ticket_id = r.ticket_id AND ta.is_active
LEFT JOIN ticket_projection tp ON tp.id = r.ticket_id
WHERE r.deleted_at IS NULL AND r.created_at IS NOT NULL
  AND r.first_response_at >= r.created_at
  AND r.first_response_at >= :start AND r.first_response_at < :end
"""

# each metric counts when it was decided (met: when met; breached: at its deadline)
_SLA = """
SELECT {key} AS k, m.metric, m.status, count(*) AS n
FROM (
  SELECT 'first_response' AS metric, r.first_response_status AS status,
         coalesce(r.first_response_by, r.resolved_by, ta.agent_id, tp.assigned_agent_id)
           AS agent_id
  FROM report_tickets r
  LEFT JOIN ticket_assignments ta ON ta.ticket_id = r.ticket_id AND ta.is_active
  LEFT JOIN ticket_projection tp ON tp.id = r.ticket_id
  WHERE r.deleted_at IS NULL
    AND r.first_response_decided_at >= :start AND r.first_response_decided_at < :end
  UNION ALL
  SELECT 'resolution', r.resolution_status,
         coalesce(r.resolved_by, ta.agent_id, tp.assigned_agent_id)
  FROM report_tickets r
  LEFT JOIN ticket_assignments ta ON ta.ticket_id = r.ticket_id AND ta.is_active
  LEFT JOIN ticket_projection tp ON tp.id = r.ticket_id
  WHERE r.deleted_at IS NULL
    AND r.resolution_decided_at >= :start AND r.resolution_decided_at < :end
) m
JOIN agents a ON a.id = m.agent_id AND a.deleted_at IS NULL {department}
WHERE m.status IN ('met', 'breached')
GROUP BY 1, 2, 3
"""

_BACKLOG = """
SELECT {key} AS k, tp.priority, count(*) AS n
FROM ticket_projection tp
LEFT JOIN ticket_assignments ta ON ta.ticket_id = tp.id AND ta.is_active
JOIN agents a ON a.id = coalesce(ta.agent_id, tp.assigned_agent_id)
     AND a.deleted_at IS NULL {department}
WHERE tp.deleted_at IS NULL AND tp.status NOT IN ('resolved', 'closed')
GROUP BY 1, 2
"""

_CSAT = """
SELECT {key} AS k, tr.rating, count(*) AS n
FROM ticket_ratings tr
JOIN agents a ON a.id = tr.agent_id AND a.deleted_at IS NULL {department}
WHERE tr.rated_at >= :start AND tr.rated_at < :end
GROUP BY 1, 2
"""

_AGENTS = """
SELECT a.id, a.name, a.email, a.department FROM agents a
WHERE a.deleted_at IS NULL {department}
ORDER BY a.department NULLS LAST, a.name, a.id
"""

_TEAMS = """
SELECT a.department, count(*) AS agents FROM agents a
WHERE a.deleted_at IS NULL {department}
GROUP BY 1 ORDER BY 1 NULLS LAST
"""


@dataclass(frozen=True)
class Scope:
    start: datetime
    end: datetime
    department: str | None

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "department": self.department}

    def sql(self, template: str, grouping: Grouping, **parts: str) -> sa.TextClause:
        department = "AND a.department = :department" if self.department is not None else ""
        return sa.text(template.format(key=_KEYS[grouping], department=department, **parts))


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


async def figures(
    session: AsyncSession, scope: Scope, grouping: Grouping
) -> dict[str | None, Figures]:
    """Every figure per group key (agent id, or department), for the groups that have any."""
    out: dict[str | None, Figures] = defaultdict(Figures)
    params = scope.params()

    async def rows(template: str, **parts: str) -> list[sa.Row[Any]]:
        result = await session.execute(scope.sql(template, grouping, **parts), params)
        return list(result.all())

    for row in await rows(_DURATIONS, rows=_RESOLUTIONS):
        fig = out[row.k]
        fig.tickets_handled = row.n
        fig.resolution.count, fig.resolution.median_seconds, fig.resolution.p90_seconds = (
            row.n,
            _seconds(row.p50),
            _seconds(row.p90),
        )
    for row in await rows(_DURATIONS, rows=_FIRST_RESPONSES):
        fig = out[row.k]
        fig.first_response.count = row.n
        fig.first_response.median_seconds = _seconds(row.p50)
        fig.first_response.p90_seconds = _seconds(row.p90)
    for row in await rows(_SLA):
        metric = getattr(out[row.k].sla, row.metric)
        setattr(metric, row.status, row.n)
    for row in await rows(_BACKLOG):
        setattr(out[row.k].backlog, row.priority, row.n)
    for row in await rows(_CSAT):
        out[row.k].csat.distribution[str(row.rating)] = row.n
    for fig in out.values():
        _finish(fig)
    return out


def _finish(fig: Figures) -> None:
    """The derived figures: SLA attainment, backlog total, CSAT count and mean."""
    for metric in (fig.sla.first_response, fig.sla.resolution):
        decided = metric.met + metric.breached
        metric.attainment_percent = round(100 * metric.met / decided, 1) if decided else None
    b = fig.backlog
    b.total = b.low + b.normal + b.high + b.urgent
    c = fig.csat
    c.count = sum(c.distribution.values())
    total = sum(int(r) * n for r, n in c.distribution.items())
    c.mean = round(total / c.count, 2) if c.count else None


async def agent_rows(session: AsyncSession, scope: Scope) -> list[sa.Row[Any]]:
    result = await session.execute(scope.sql(_AGENTS, "agent"), scope.params())
    return list(result.all())


async def team_rows(session: AsyncSession, scope: Scope) -> list[sa.Row[Any]]:
    result = await session.execute(scope.sql(_TEAMS, "team"), scope.params())
    return list(result.all())
