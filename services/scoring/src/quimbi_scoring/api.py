"""Routes: the score breakdown (the gateway sends /api/tickets/{id}/score-breakdown here)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from quimbi_common.auth import CurrentAgent
from quimbi_common.inputs import keyword_list_schema
from quimbi_common.runtime import RuntimeDep, SessionDep
from quimbi_common.topic_alerts import topic_alert_keywords

from . import service
from .schemas import ScoreBreakdown
from .settings import Settings

router = APIRouter(prefix="/api/tickets", tags=["scoring"])
# The caps are settings; the spec states their defaults (a match adds TOPIC_ALERT_BOOST).
_TOPIC_ALERTS_SCHEMA = keyword_list_schema(
    Settings.model_fields["topic_alerts_max_keywords"].default,
    Settings.model_fields["topic_alert_max_length"].default,
)


@router.get("/{ticket_id}/score-breakdown", response_model=ScoreBreakdown)
async def get_score_breakdown(
    ticket_id: str,
    agent: CurrentAgent,
    session: SessionDep,
    runtime: RuntimeDep,
    topic_alerts: Annotated[
        str | None,
        Query(max_length=4000, json_schema_extra=_TOPIC_ALERTS_SCHEMA),
    ] = None,
) -> ScoreBreakdown:
    """Every part of the ticket's smart score, the inputs and weights used, and the total."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    keywords = _topic_alerts(topic_alerts, settings)
    return await runtime.projections.until_found(
        ticket_id,
        lambda: service.score_breakdown(session, ticket_id, agent, keywords, settings),
        session,
    )


def _topic_alerts(raw: str | None, settings: Settings) -> list[str]:
    return topic_alert_keywords(
        raw, settings.topic_alerts_max_keywords, settings.topic_alert_max_length
    )
