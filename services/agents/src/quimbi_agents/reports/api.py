"""Report routes (managers and admins): per agent and per team over a period, as JSON or CSV
(`Accept: text/csv` or `format=csv`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import StringConstraints

from quimbi_common.auth import Manager
from quimbi_common.clock import utcnow
from quimbi_common.errors import UnprocessableError
from quimbi_common.inputs import NoNul
from quimbi_common.runtime import SessionDep

from . import export, queries
from .queries import Scope
from .schemas import AgentFigures, AgentReport, TeamFigures, TeamReport

router = APIRouter(prefix="/api/reports", tags=["reports"])

DEFAULT_DAYS = 7
MAX_DAYS = 366
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

From = Annotated[
    datetime | None,
    Query(alias="from", description="Start (inclusive; ISO 8601). Default: `to` minus 7 days"),
]
To = Annotated[datetime | None, Query(description="End (exclusive; ISO 8601). Default: now")]
Department = Annotated[
    str | None,
    Query(description="Only this department (team)"),
    StringConstraints(min_length=1, max_length=100),
    NoNul,
]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="`csv` for CSV (as `Accept: text/csv`); default JSON"),
]

_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "The report; CSV with `format=csv` or `Accept: text/csv`",
    }
}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def period(start: datetime | None, end: datetime | None, department: str | None) -> Scope:
    """The period asked for, checked: both ends between 2000 and 2100, start before end, at
    most 366 days; 7 days up to now by default."""
    end = _aware(end) if end is not None else utcnow()
    if not EARLIEST <= end <= LATEST:
        raise UnprocessableError("`to` must be between 2000-01-01 and 2100-01-01")
    start = _aware(start) if start is not None else end - timedelta(days=DEFAULT_DAYS)
    if not EARLIEST <= start <= LATEST:
        raise UnprocessableError("`from` must be between 2000-01-01 and 2100-01-01")
    if start >= end:
        raise UnprocessableError("`from` must be before `to`")
    if end - start > timedelta(days=MAX_DAYS):
        raise UnprocessableError(f"A report covers at most {MAX_DAYS} days")
    return Scope(start, end, department)


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _csv(body: str, name: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/agents",
    summary="Per-agent figures over a period (managers and admins)",
    response_model=AgentReport,
    responses=_CSV_RESPONSE,
)
async def agents_report(
    _: Manager,
    session: SessionDep,
    request: Request,
    from_: From = None,
    to: To = None,
    department: Department = None,
    format: Format = None,
) -> Any:
    scope = period(from_, to, department)
    figures = await queries.figures(session, scope, "agent")
    agents = [
        AgentFigures(
            agent_id=row.id,
            name=row.name,
            email=row.email,
            department=row.department,
            **figures[row.id].model_dump() if row.id in figures else {},
        )
        for row in await queries.agent_rows(session, scope)
    ]
    if _wants_csv(request, format):
        return _csv(export.agents_csv(agents), "agents-report")
    return AgentReport(
        from_=scope.start, to=scope.end, department=department, generated_at=utcnow(), agents=agents
    )


@router.get(
    "/teams",
    summary="Per-team (department) figures over a period (managers and admins)",
    response_model=TeamReport,
    responses=_CSV_RESPONSE,
)
async def teams_report(
    _: Manager,
    session: SessionDep,
    request: Request,
    from_: From = None,
    to: To = None,
    department: Department = None,
    format: Format = None,
) -> Any:
    scope = period(from_, to, department)
    figures = await queries.figures(session, scope, "team")
    teams = [
        TeamFigures(
            department=row.department,
            agents=row.agents,
            **figures[row.department].model_dump() if row.department in figures else {},
        )
        for row in await queries.team_rows(session, scope)
    ]
    if _wants_csv(request, format):
        return _csv(export.teams_csv(teams), "teams-report")
    return TeamReport(
        from_=scope.start, to=scope.end, department=department, generated_at=utcnow(), teams=teams
    )
