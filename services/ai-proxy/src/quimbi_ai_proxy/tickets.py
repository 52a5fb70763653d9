"""Reading from the tickets service, as the caller: a ticket (with messages and customer), or
whether a customer is visible.

The caller's Authorization header goes along, so the tickets service decides visibility: a
ticket or customer the caller may not see (or that does not exist) is a 404 there, and so a
404 here. The tickets database is never read from here.
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

    async def check_customer(self, customer_id: str, authorization: str) -> None: ...

    async def aclose(self) -> None: ...


# A pooled keep-alive connection the service closed while this request went out on it: the
# read never reached a handler, or reached it and is safe to repeat (a GET).
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class HttpTicketReader:
    """`GET {TICKETS_URL}/api/tickets/{id}` and `/api/customers/{id}` over one pooled client.

    Idle connections are let go after 2 s, before uvicorn's 5 s keep-alive closes them from
    the other side; a read on a connection closed under it anyway is sent once more."""

    def __init__(self, settings: Settings) -> None:
        self._http = httpx.AsyncClient(
            base_url=settings.tickets_url,
            timeout=httpx.Timeout(settings.tickets_timeout),
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, what: str, path: str, authorization: str) -> httpx.Response:
        """The tickets service's answer to a 200-or-problem read, as this caller."""
        headers = {"Authorization": authorization}
        if request_id := correlation_id.get():
            headers[REQUEST_ID_HEADER] = request_id
        try:
            try:
                response = await self._http.get(path, headers=headers)
            except _DROPPED:
                response = await self._http.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"The tickets service is unavailable ({type(exc).__name__})"
            ) from exc
        if response.status_code in (403, 404):
            raise NotFoundError(f"{what} not found")
        if response.status_code == 401:
            raise UnauthorizedError("The tickets service did not accept the credentials")
        if response.status_code != 200:
            raise ServiceUnavailableError(
                f"The tickets service answered {response.status_code} for {what.lower()}"
            )
        return response

    async def read(self, ticket_id: str, authorization: str) -> TicketContext:
        response = await self._get(
            f"Ticket {ticket_id}", f"/api/tickets/{quote(ticket_id, safe='')}", authorization
        )
        try:
            return TicketContext.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProblemError("The tickets service sent an unreadable ticket", status=502) from exc

    async def check_customer(self, customer_id: str, authorization: str) -> None:
        """Returns when the caller may see the customer (tickets' `GET /api/customers/{id}`
        rule: senior agents and up any known customer, an agent those of their own tickets);
        else NotFoundError."""
        await self._get(
            f"Customer {customer_id}",
            f"/api/customers/{quote(customer_id, safe='')}",
            authorization,
        )
