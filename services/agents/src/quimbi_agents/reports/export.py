"""Reports as CSV (RFC 4180: comma-separated, CRLF line ends, quoted where needed) with a guard
against formula injection: a text cell that a spreadsheet would read as a formula (starting
with = + - @, or a tab or carriage return) is prefixed with an apostrophe (OWASP)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from .schemas import AgentFigures, Figures, TeamFigures

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

FIGURE_COLUMNS = (
    "tickets_handled",
    "first_response_count",
    "first_response_median_seconds",
    "first_response_p90_seconds",
    "resolution_count",
    "resolution_median_seconds",
    "resolution_p90_seconds",
    "sla_first_response_met",
    "sla_first_response_breached",
    "sla_first_response_attainment_percent",
    "sla_resolution_met",
    "sla_resolution_breached",
    "sla_resolution_attainment_percent",
    "backlog_low",
    "backlog_normal",
    "backlog_high",
    "backlog_urgent",
    "backlog_total",
    "csat_count",
    "csat_mean",
    "csat_1",
    "csat_2",
    "csat_3",
    "csat_4",
    "csat_5",
)
AGENT_COLUMNS = ("agent_id", "name", "email", "department", *FIGURE_COLUMNS)
TEAM_COLUMNS = ("department", "agents", *FIGURE_COLUMNS)


def safe_cell(value: Any) -> str:
    """A cell's text: empty for None, numbers as they are, text defused."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _figures(f: Figures) -> list[Any]:
    sla_fr, sla_res = f.sla.first_response, f.sla.resolution
    return [
        f.tickets_handled,
        f.first_response.count,
        f.first_response.median_seconds,
        f.first_response.p90_seconds,
        f.resolution.count,
        f.resolution.median_seconds,
        f.resolution.p90_seconds,
        sla_fr.met,
        sla_fr.breached,
        sla_fr.attainment_percent,
        sla_res.met,
        sla_res.breached,
        sla_res.attainment_percent,
        f.backlog.low,
        f.backlog.normal,
        f.backlog.high,
        f.backlog.urgent,
        f.backlog.total,
        f.csat.count,
        f.csat.mean,
        *(f.csat.distribution[str(r)] for r in range(1, 6)),
    ]


def _render(columns: Sequence[str], rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # QUOTE_MINIMAL: RFC 4180's quoting
    writer.writerow(columns)
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()


def agents_csv(agents: Iterable[AgentFigures]) -> str:
    return _render(
        AGENT_COLUMNS, ([a.agent_id, a.name, a.email, a.department, *_figures(a)] for a in agents)
    )


def teams_csv(teams: Iterable[TeamFigures]) -> str:
    return _render(TEAM_COLUMNS, ([t.department, t.agents, *_figures(t)] for t in teams))
