"""Attachment rows inside a message's or ticket's unit of work: attaching uploads to a new
message, and scheduling the files of what is being deleted (removed after the commit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quimbi_common.auth import Principal
from quimbi_common.errors import UnprocessableError

from ..models import Attachment, FileToDelete


async def claim(
    session: AsyncSession, principal: Principal, ticket_id: str, attachment_ids: Sequence[str]
) -> list[Attachment]:
    """The caller's own unattached uploads to this ticket, locked, their expiry cancelled (the
    message that names them keeps them). Any other id is a 422 naming it."""
    wanted = list(dict.fromkeys(attachment_ids))
    if not wanted:
        return []
    found = list(
        await session.scalars(
            sa.select(Attachment)
            .where(
                Attachment.id.in_(wanted),
                Attachment.ticket_id == ticket_id,
                Attachment.message_id.is_(None),
                Attachment.uploaded_by_agent_id.is_not_distinct_from(principal.agent_id),
            )
            .order_by(Attachment.created_at, Attachment.id)
            .with_for_update()
        )
    )
    missing = sorted(set(wanted) - {a.id for a in found})
    if missing:
        raise UnprocessableError(
            "Unknown attachments: " + ", ".join(missing),
            errors=[
                {
                    "loc": ["body", "attachment_ids"],
                    "msg": f"not an unattached upload of yours to this ticket: {missing[0]}",
                    "type": "value_error",
                }
            ],
        )
    await session.execute(
        sa.delete(FileToDelete).where(FileToDelete.storage_key.in_([a.storage_key for a in found]))
    )
    return found


async def schedule_deletion(session: AsyncSession, keys: Sequence[str], due: datetime) -> None:
    """Files to remove from the storage once `due` passes (with the change that orphans them)."""
    if not keys:
        return
    stmt = pg_insert(FileToDelete).values([{"storage_key": k, "due_at": due} for k in keys])
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[FileToDelete.storage_key], set_={"due_at": stmt.excluded.due_at}
        )
    )


async def ticket_file_keys(session: AsyncSession, ticket_id: str) -> list[str]:
    """Every stored file of a ticket, attached or not."""
    return list(
        await session.scalars(
            sa.select(Attachment.storage_key).where(Attachment.ticket_id == ticket_id)
        )
    )
