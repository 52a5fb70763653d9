"""Routes: upload a file to a ticket, list a ticket's files, download one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from quimbi_common.auth import Caller, CurrentAgent
from quimbi_common.errors import (
    NotFoundError,
    ProblemError,
    ServiceUnavailableError,
    UnprocessableError,
)
from quimbi_common.openapi import problems
from quimbi_common.runtime import RuntimeDep, SessionDep, UnitsDep

from ..api import SettingsDep, SweeperDep
from ..schemas import AttachmentList, AttachmentRead
from ..settings import ALLOWED_ATTACHMENT_TYPES
from . import files, service
from .storage import StorageError

router = APIRouter(tags=["attachments"])


# What a multipart body adds around the file (boundaries, part headers) before we call it
# too large without reading it.
FORM_OVERHEAD_BYTES = 64 * 1024

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "One file. Its type is read from its bytes; the "
                            "part's Content-Type and the filename's extension are ignored",
                        }
                    },
                },
                "encoding": {"file": {"contentType": "application/octet-stream"}},
            }
        },
    }
}


def _read(attachment: Any) -> AttachmentRead:
    return AttachmentRead.model_validate(attachment, from_attributes=True)


def _no_file() -> UnprocessableError:
    return UnprocessableError(
        "A multipart/form-data body with one file in the part `file` is required",
        errors=[{"loc": ["body", "file"], "msg": "Field required", "type": "missing"}],
    )


@router.post(
    "/api/tickets/{ticket_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses=problems(
        **{
            "400": "Not a well-formed multipart body",
            "409": "The ticket is closed",
            "413": "The file is larger than ATTACHMENTS_MAX_BYTES",
            "415": "The file's content (sniffed, not its name) is not an accepted type",
        }
    ),
)
async def upload_attachment(
    ticket_id: str,
    request: Request,
    caller: Caller,
    units: UnitsDep,
    settings: SettingsDep,
    sweeper: SweeperDep,
    runtime: RuntimeDep,
) -> AttachmentRead:
    """Upload one file to a ticket (agents who see it; the integration key, for customers).
    It is unattached until a message names it in `attachment_ids` (by the same caller, within
    ATTACHMENTS_PENDING_SECONDS; otherwise it is deleted)."""
    limit = settings.attachments_max_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FORM_OVERHEAD_BYTES:
        raise service.too_large(limit)

    async def until_visible(attempt: Any) -> None:
        await runtime.projections.until_found(ticket_id, attempt, owner=True)

    try:
        async with request.form(max_files=1, max_fields=1) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile) or file.filename is None:
                raise _no_file()
            upload = service.Upload(filename=file.filename, size=file.size or 0, source=file)
            attachment = await service.upload(
                units, sweeper.storage, settings, caller, ticket_id, upload, until_visible
            )
    except MultiPartException as exc:
        raise ProblemError(f"Not a valid multipart body: {exc}", status=400) from None
    return _read(attachment)


@router.get("/api/tickets/{ticket_id}/attachments")
async def list_attachments(
    ticket_id: str, agent: CurrentAgent, session: SessionDep, runtime: RuntimeDep
) -> AttachmentList:
    """The ticket's files: those attached to its messages, and the caller's own not attached
    yet (`message_id` null), oldest first."""
    found = await runtime.projections.until_found(
        ticket_id,
        lambda: service.list_attachments(session, agent, ticket_id),
        session,
        owner=True,
    )
    return AttachmentList(ticket_id=ticket_id, attachments=[_read(a) for a in found])


@router.get(
    "/api/tickets/{ticket_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The file's bytes, as a download (`Content-Disposition: attachment`)",
            "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in [*ALLOWED_ATTACHMENT_TYPES, "application/octet-stream"]
            },
        }
    },
)
async def download_attachment(
    ticket_id: str,
    attachment_id: str,
    agent: CurrentAgent,
    session: SessionDep,
    sweeper: SweeperDep,
    runtime: RuntimeDep,
) -> StreamingResponse:
    """The file, to those who may see the ticket (404 otherwise). Always a download, with
    the sniffed type and `nosniff`, never rendered inline."""
    attachment = await runtime.projections.until_found(
        ticket_id,
        lambda: service.get_attachment(session, agent, ticket_id, attachment_id),
        session,
        owner=True,
    )
    await session.close()  # no connection held while the bytes stream
    try:
        stored = await sweeper.storage.get(attachment.storage_key)
    except FileNotFoundError:
        raise NotFoundError(f"The file of attachment {attachment_id} is missing") from None
    except StorageError as exc:
        raise ServiceUnavailableError("The file storage is unavailable", retry_after=5) from exc
    return StreamingResponse(
        stored.chunks,
        media_type=attachment.content_type,
        headers={
            "Content-Length": str(stored.size),
            "Content-Disposition": files.content_disposition(attachment.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
            "ETag": f'"{attachment.sha256}"',
        },
    )
