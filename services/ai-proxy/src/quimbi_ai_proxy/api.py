"""Routes under /api/ai: parse, authorize (agents only), read the ticket as the caller, answer.

Quimbi's failures become problem+json here: unavailable → 503 (with Retry-After while the
breaker is open), unknown customer → 404, anything else it refuses or garbles → 502.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from quimbi_common.auth import CurrentAgent, Principal
from quimbi_common.errors import NotFoundError, ProblemError, ServiceUnavailableError
from quimbi_common.openapi import problems
from quimbi_common.runtime import provided

from . import service
from .quimbi import QuimbiError, QuimbiRejectedError, QuimbiUnavailableError
from .schemas import (
    CustomerIntelligenceResponse,
    DraftResponse,
    RecommendationResponse,
    RegenerateDraftRequest,
    TicketContext,
)
from .service import AiProxy
from .settings import Length, Tone

router = APIRouter(
    prefix="/api/ai",
    tags=["ai"],
    responses=problems(
        **{
            "502": "Quimbi Intelligence refused the request or sent an unreadable answer",
            "503": "Quimbi Intelligence or the tickets service is unavailable",
        }
    ),
)
ResourceId = Annotated[str, Path(min_length=1, max_length=255)]


ProxyDep = Annotated[AiProxy, Depends(provided(AiProxy))]


@contextlib.contextmanager
def quimbi_problems() -> Iterator[None]:
    try:
        yield
    except QuimbiUnavailableError as exc:
        headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else None
        raise ServiceUnavailableError(
            "Quimbi Intelligence is unavailable; try again shortly", headers=headers
        ) from exc
    except QuimbiRejectedError as exc:
        if exc.status == 404:
            raise NotFoundError(f"Quimbi Intelligence does not know this: {exc}") from exc
        raise ProblemError(f"Quimbi Intelligence refused the request: {exc}", status=502) from exc
    except QuimbiError as exc:
        raise ProblemError(str(exc), status=502) from exc


async def _ticket(proxy: AiProxy, agent: Principal, ticket_id: str) -> TicketContext:
    """The ticket as this agent sees it: a ticket they may not see is a 404 from tickets."""
    return await proxy.tickets.read(ticket_id, f"Bearer {agent.token}")


@router.get("/tickets/{ticket_id}/draft-response", response_model=DraftResponse)
async def get_draft_response(
    ticket_id: ResourceId,
    agent: CurrentAgent,
    proxy: ProxyDep,
    tone: Annotated[Tone | None, Query()] = None,
    length: Annotated[Length | None, Query()] = None,
) -> DraftResponse:
    """An AI draft reply for the ticket (cached per ticket + tone + length until a new message)."""
    ticket = await _ticket(proxy, agent, ticket_id)
    with quimbi_problems():
        return await service.draft_response(
            proxy,
            ticket,
            tone=tone or proxy.settings.draft_default_tone,
            length=length or proxy.settings.draft_default_length,
        )


@router.post("/tickets/{ticket_id}/regenerate-draft", response_model=DraftResponse)
async def regenerate_draft(
    ticket_id: ResourceId, body: RegenerateDraftRequest, agent: CurrentAgent, proxy: ProxyDep
) -> DraftResponse:
    """A new draft with these options, replacing the cached one for this tone and length."""
    ticket = await _ticket(proxy, agent, ticket_id)
    with quimbi_problems():
        return await service.draft_response(
            proxy,
            ticket,
            tone=body.tone,
            length=body.length,
            regenerate=True,
            include_details=body.include_details,
        )


@router.get("/tickets/{ticket_id}/recommendation", response_model=RecommendationResponse)
async def get_recommendation(
    ticket_id: ResourceId, agent: CurrentAgent, proxy: ProxyDep
) -> RecommendationResponse:
    """Next best actions for the ticket, with the customer's churn risk and value."""
    ticket = await _ticket(proxy, agent, ticket_id)
    with quimbi_problems():
        return await service.recommendation(proxy, ticket)


@router.get("/customers/{customer_id}/intelligence", response_model=CustomerIntelligenceResponse)
async def get_customer_intelligence(
    customer_id: ResourceId, agent: CurrentAgent, proxy: ProxyDep
) -> CustomerIntelligenceResponse:
    """Archetype, segments, churn and LTV predictions, behaviour (cached 15 minutes). Only for a
    customer the caller may see (the rule of `GET /api/customers/{id}`): else 404."""
    await proxy.tickets.check_customer(customer_id, f"Bearer {agent.token}")
    with quimbi_problems():
        return await service.customer_intelligence(proxy, customer_id)
