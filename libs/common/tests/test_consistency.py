"""Consistency tokens name only what committed: an attempt rolled back (say, retried after a
deadlock) must not make a follow-up wait for events that will never exist."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from quimbi_common import consistency
from quimbi_common.db import create_engine, create_sessionmaker
from quimbi_common.settings import CommonSettings

pytestmark = pytest.mark.service


async def test_a_token_names_the_events_of_the_committed_attempt_only(
    settings: CommonSettings,
) -> None:
    engine = create_engine(settings)
    written: list[str] = []
    reset = consistency._written.set(written)
    aborted, kept = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        async with create_sessionmaker(engine)() as session:
            # given a first attempt that stores an event and is rolled back
            await session.execute(sa.text("SELECT 1"))
            consistency.note_written(session, ["ticket.assigned"], [aborted])
            await session.rollback()
            assert written == []
            # when the retry stores another and commits
            await session.execute(sa.text("SELECT 1"))
            consistency.note_written(session, ["ticket.assigned"], [kept])
            assert written == []  # not before the commit
            await session.commit()
        # then the token names the committed event only
        assert written == [f"ticket.assigned/{kept}"]
    finally:
        consistency._written.reset(reset)
        await engine.dispose()


def test_a_token_is_read_leniently_and_capped() -> None:
    event_id = uuid.uuid4()
    entries = consistency.parse(f" ticket.updated/{event_id} ,junk,ticket.updated/not-a-uuid")
    assert entries == [("ticket.updated", event_id)]
    many = ",".join(f"t/{uuid.uuid4()}" for _ in range(consistency.MAX_ENTRIES + 5))
    assert len(consistency.parse(many)) == consistency.MAX_ENTRIES
