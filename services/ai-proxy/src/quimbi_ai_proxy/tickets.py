"""Reading a ticket (with messages and customer) from the tickets service, as the caller.

The caller's Authorization header goes along, so the tickets service decides visibility: a
ticket the caller may not see is a 404 there, and so a 404 here.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from quimbi_common.errors import (
    NotFoundError,
    ProblemError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from quimbi_common.observability import REQUEST_ID_HEADER, correlation_id

from .schemas import TicketContext
from .settings import Settings


class TicketReader(Protocol):
    async def read(self, ticket_id: str, authorization: str) -> TicketContext: ...

    async def aclose(self) -> None: ...


class HttpTicketReader:
    """`GET {TICKETS_URL}/api/tickets/{id}` over one pooled client."""

    def __init__(self, settings: Settings) -> None:
        self._http = httpx.AsyncClient(
            base_url=settings.tickets_url, timeout=httpx.Timeout(settings.tickets_timeout)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def read(self, ticket_id: str, authorization: str) -> TicketContext:
        headers = {"Authorization": authorization}
        if request_id := correlation_id.get():
            headers[REQUEST_ID_HEADER] = request_id
        try:
            response = await self._http.get(
                f"/api/tickets/{quote(ticket_id, safe='')}", headers=headers
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"The tickets service is unavailable ({type(exc).__name__})"
            ) from exc
        if response.status_code in (403, 404):
            raise NotFoundError(f"Ticket {ticket_id} not found")
        if response.status_code == 401:
            raise UnauthorizedError("The tickets service did not accept the credentials")
        if response.status_code != 200:
            raise ServiceUnavailableError(
                f"The tickets service answered {response.status_code} for ticket {ticket_id}"
            )
        try:
            return TicketContext.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProblemError("The tickets service sent an unreadable ticket", status=502) from exc
