"""Alembic, shared: every service's `migrations/env.py` calls `run_env`, and tests and the
launcher call `upgrade`; `script_heads` lets the launcher skip a database already at head.

Alembic and SQLAlchemy are imported where they are used: the launcher reads the heads
without them (importing them costs a warm start about a second of CPU)."""

from __future__ import annotations

import ast
import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


def _url() -> str:
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL (or sqlalchemy.url) to run migrations")
    return url


def run_env(target_metadata: sa.MetaData) -> None:
    """The whole body of a service's `env.py`."""
    import sqlalchemy as sa
    from alembic import context
    from sqlalchemy.ext.asyncio import create_async_engine

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
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


def create_infrastructure_tables() -> None:
    """For a service's first migration: the outbox and processed-events tables."""
    import sqlalchemy as sa
    from alembic import op

    from .outbox import infrastructure_tables

    for table in infrastructure_tables(sa.MetaData()):
        table.create(op.get_bind())


def drop_infrastructure_tables() -> None:
    from alembic import op

    op.drop_table("processed_events")
    op.drop_table("outbox")


def script_heads(migrations_dir: Path | str) -> frozenset[str]:
    """The head revisions of a service's migrations, read from `versions/*.py` as text: each
    file's `revision` and `down_revision`, the heads being the revisions nothing revises.
    Empty when a file does not say them plainly (the caller then runs Alembic itself)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted(Path(migrations_dir, "versions").glob("*.py")):
        values = _assignments(path.read_text(), ("revision", "down_revision"))
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str):
            return frozenset()
        revisions.add(revision)
        if isinstance(down, str):
            revised.add(down)
        elif isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
            revised.update(str(d) for d in down)
        elif down is not None:
            return frozenset()
    return frozenset(revisions - revised)


def _assignments(source: str, names: tuple[str, ...]) -> dict[str, object]:
    """Module-level `name = <literal>` (or `name: T = <literal>`) values."""
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                found[target.id] = ...
    return found
