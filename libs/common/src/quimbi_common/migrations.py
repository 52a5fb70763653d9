"""Alembic, shared: every service's `migrations/env.py` calls `run_env`, and tests and the
launcher call `upgrade`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from .outbox import infrastructure_tables


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL (or sqlalchemy.url) to run migrations")
    return url


def run_env(target_metadata: sa.MetaData) -> None:
    """The whole body of a service's `env.py`."""
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: sa.Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(_url(), poolclass=sa.pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(run())


def upgrade(migrations_dir: Path | str, database_url: str, revision: str = "head") -> None:
    """Upgrade a database with a service's migrations (blocking: call it off the event loop)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


def create_infrastructure_tables() -> None:
    """For a service's first migration: the outbox and processed-events tables."""
    from alembic import op

    for table in infrastructure_tables(sa.MetaData()):
        table.create(op.get_bind())


def drop_infrastructure_tables() -> None:
    from alembic import op

    op.drop_table("processed_events")
    op.drop_table("outbox")
