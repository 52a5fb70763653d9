"""Use cases of attachments: upload (sniff, store, record), read, and the sweeper that removes
the files of deleted messages and tickets, and uploads never attached, from the storage."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common import ids
from quimbi_common.auth import Principal
from quimbi_common.clock import utcnow
from quimbi_common.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
    ServiceUnavailableError,
    UnprocessableError,
)
from quimbi_common.uow import UnitOfWork, UnitsOfWork

from .. import service as tickets
from ..models import Attachment, FileToDelete
from ..settings import Settings
from . import files, records
from .storage import CHUNK_BYTES, FileStorage, LocalStorage, S3Storage, StorageError

log = logging.getLogger(__name__)

SWEEP_BATCH = 100


def storage_from(settings: Settings) -> FileStorage:
    """The configured store: `ATTACHMENTS_STORAGE=local` (a directory) or `s3`."""
    if settings.attachments_storage == "s3":
        return S3Storage(
            settings.attachments_s3_bucket,
            endpoint=settings.attachments_s3_endpoint,
            region=settings.attachments_s3_region,
            access_key_id=settings.attachments_s3_access_key_id,
            secret_access_key=settings.attachments_s3_secret_access_key,
        )
    return LocalStorage(settings.attachments_dir)


class Readable(Protocol):
    """An uploaded file as the form parser spooled it (starlette's UploadFile)."""

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Upload:
    filename: str  # as the client sent it; cleaned here
    size: int  # bytes, as the form parser counted them
    source: Readable


def _unsupported(media_type: str, allowed: Sequence[str]) -> ProblemError:
    return ProblemError(
        f"Files of type {media_type} are not accepted (judged from the content, not the name)",
        status=415,
        content_type=media_type,
        allowed=list(allowed),
    )


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"Attachments are limited to {limit} bytes", max_bytes=limit)


def checked_name(raw: str) -> str:
    try:
        return files.safe_filename(raw)
    except files.BadFilename as exc:
        raise UnprocessableError(
            f"Bad filename: {exc}",
            errors=[{"loc": ["body", "file"], "msg": str(exc), "type": "value_error"}],
        ) from None


async def open_upload(
    units: UnitsOfWork,
    until_visible: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]],
    principal: Principal,
    ticket_id: str,
    key: str,
    due_in: float,
) -> None:
    """The ticket must be visible and not closed; the file is scheduled for deletion before a
    byte is stored, so an upload that never gets recorded (a crash, a failed commit) or is
    never attached is removed by the sweeper."""

    async def begin(unit: UnitOfWork) -> None:
        ticket = await tickets.load_ticket(unit.session, principal, ticket_id)
        if ticket.status == "closed":
            raise ConflictError("The ticket is closed; open a new ticket instead")
        await records.schedule_deletion(unit.session, [key], utcnow() + timedelta(seconds=due_in))

    await until_visible(lambda: units.run(begin))


async def upload(
    units: UnitsOfWork,
    storage: FileStorage,
    settings: Settings,
    principal: Principal,
    ticket_id: str,
    upload: Upload,
    until_visible: Callable[[Callable[[], Awaitable[None]]], Awaitable[None]],
) -> Attachment:
    """Store one file for the ticket, unattached until a message names it. Size (413) and
    type (415, sniffed from the bytes) are judged before anything is stored."""
    filename = checked_name(upload.filename)
    limit = settings.attachments_max_bytes
    if upload.size > limit:
        raise too_large(limit)
    head = await upload.source.read(files.SNIFF_BYTES)
    media_type = files.sniff(head)
    if media_type not in settings.attachments_allowed_types:
        raise _unsupported(media_type, settings.attachments_allowed_types)
    attachment_id = ids.new_id("att")
    key = f"tickets/{ticket_id}/{attachment_id}"
    await open_upload(
        units, until_visible, principal, ticket_id, key, settings.attachments_pending_seconds
    )
    digest = hashlib.sha256()
    size = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal size
        chunk = head
        while chunk:
            size += len(chunk)
            if size > limit:  # the parser's count was wrong: never store past the limit
                raise too_large(limit)
            digest.update(chunk)
            yield chunk
            chunk = await upload.source.read(CHUNK_BYTES)

    try:
        await storage.put(key, chunks())
    except StorageError as exc:
        log.warning("attachment upload failed: %s", exc)
        raise ServiceUnavailableError("The file storage is unavailable", retry_after=5) from exc

    async def record(unit: UnitOfWork) -> Attachment:
        attachment = Attachment(
            id=attachment_id,
            ticket_id=ticket_id,
            message_id=None,
            filename=filename,
            content_type=media_type,
            size_bytes=size,
            sha256=digest.hexdigest(),
            storage_key=key,
            uploaded_by_agent_id=principal.agent_id,
            created_at=utcnow(),
        )
        unit.session.add(attachment)
        await unit.session.flush()
        return attachment

    try:
        return await units.run(record)
    except IntegrityError:  # the ticket was deleted meanwhile; its file is swept when due
        raise NotFoundError(f"Ticket {ticket_id} not found") from None


def _readable(principal: Principal) -> sa.ColumnElement[bool]:
    """Attached files, and the caller's own uploads not attached yet."""
    return sa.or_(
        Attachment.message_id.is_not(None),
        Attachment.uploaded_by_agent_id.is_not_distinct_from(principal.agent_id),
    )


async def list_attachments(
    session: AsyncSession, principal: Principal, ticket_id: str
) -> list[Attachment]:
    await tickets.load_ticket(session, principal, ticket_id)
    return list(
        await session.scalars(
            sa.select(Attachment)
            .where(Attachment.ticket_id == ticket_id, _readable(principal))
            .order_by(Attachment.created_at, Attachment.id)
        )
    )


async def get_attachment(
    session: AsyncSession, principal: Principal, ticket_id: str, attachment_id: str
) -> Attachment:
    """An attachment of a ticket the caller may see (404 otherwise, as for the ticket)."""
    await tickets.load_ticket(session, principal, ticket_id)
    attachment = await session.scalar(
        sa.select(Attachment).where(
            Attachment.id == attachment_id,
            Attachment.ticket_id == ticket_id,
            _readable(principal),
        )
    )
    if attachment is None:
        raise NotFoundError(f"Attachment {attachment_id} not found")
    return attachment


class Sweeper:
    """Removes stored files whose deletion is due: at once after the commit that deleted their
    message or ticket (`delete_now`), and on a timer for whatever that missed (the store was
    down, the process died) and for uploads never attached. A file is removed before its row,
    so every failure is retried; deleting a missing file is not an error."""

    def __init__(self, units: UnitsOfWork, storage: FileStorage, settings: Settings) -> None:
        self.units = units
        self.storage = storage
        self.interval = settings.attachments_sweep_interval_seconds

    async def delete_now(self, keys: Sequence[str]) -> None:
        """After a commit: never raises (the answer is already decided; the timer retries)."""
        try:
            await self._delete_files(keys)
        except Exception:
            log.warning("deleting %d attachment files failed; the sweeper retries", len(keys))

    async def sweep(self) -> int:
        """One pass over the due deletions; returns the number of files removed."""

        async def due(unit: UnitOfWork) -> list[str]:
            keys = list(
                await unit.session.scalars(
                    sa.select(FileToDelete.storage_key)
                    .where(FileToDelete.due_at <= utcnow())
                    .order_by(FileToDelete.due_at)
                    .limit(SWEEP_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            if not keys:
                return []
            await unit.session.execute(  # expired uploads nobody attached
                sa.delete(Attachment).where(
                    Attachment.storage_key.in_(keys), Attachment.message_id.is_(None)
                )
            )
            kept = set(
                await unit.session.scalars(
                    sa.select(Attachment.storage_key).where(Attachment.storage_key.in_(keys))
                )
            )
            if kept:  # attached meanwhile: not garbage (attaching removes the row; be safe)
                await unit.session.execute(
                    sa.delete(FileToDelete).where(FileToDelete.storage_key.in_(kept))
                )
            return [k for k in keys if k not in kept]

        keys = await self.units.run(due)
        return await self._delete_files(keys)

    async def _delete_files(self, keys: Sequence[str]) -> int:
        done = []
        for key in keys:
            try:
                await self.storage.delete(key)
            except StorageError as exc:
                log.warning("attachment file not deleted yet: %s", exc)
                continue
            done.append(key)
        if done:

            async def forget(unit: UnitOfWork) -> None:
                await unit.session.execute(
                    sa.delete(FileToDelete).where(FileToDelete.storage_key.in_(done))
                )

            await self.units.run(forget)
        return len(done)

    async def run(self) -> None:
        """A Runtime background task: a sweep every ATTACHMENTS_SWEEP_INTERVAL_SECONDS."""
        while True:
            started = time.monotonic()
            try:
                while await self.sweep() == SWEEP_BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: the next pass retries
                log.exception("attachment sweep failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
